package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/signal"
	"strings"
	"syscall"

	"github.com/msgate/msgate/cmd/msgate-load/internal/mxdns"
)

func runDNS(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("msgate-load dns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5353", "UDP address to answer on (loopback only)")
	m365 := fs.String("m365", "", "comma-separated domains to place at Microsoft 365 (MX under mail.protection.outlook.com)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || !ip.IsLoopback() {
		fmt.Fprintf(stderr, "msgate-load dns: -listen %q: want a loopback IP:PORT\n", *listen)
		return exitUsage
	}
	var domains []string
	for _, d := range strings.Split(*m365, ",") {
		if d = strings.TrimSpace(d); d != "" {
			domains = append(domains, d)
		}
	}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "msgate-load dns:", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "answering MX questions on %s (Microsoft 365: %s)\n", *listen, strings.Join(domains, " "))
	if err := mxdns.New(domains).Serve(ctx, pc); err != nil {
		fmt.Fprintln(stderr, "msgate-load dns:", err)
		return exitFailure
	}
	return exitOK
}
