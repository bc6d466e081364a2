package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"syscall"

	"github.com/msgate/msgate/cmd/msgate-load/internal/nullmilter"
	"github.com/msgate/msgate/policy/config"
)

func runNull(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("msgate-load null", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "inet:127.0.0.1:8899", "socket to serve: inet:HOST:PORT, inet6:[HOST]:PORT or unix:/PATH")
	modeFlag := fs.String("mode", string(nullmilter.ModeFull), `"full" (every stage negotiated) or "envelope" (what msgate negotiates)`)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	mode, err := nullmilter.ParseMode(*modeFlag)
	if err != nil {
		fmt.Fprintln(stderr, "msgate-load null: -mode:", err)
		return exitUsage
	}
	network, address, err := config.ParseListen(*listen)
	if err != nil {
		fmt.Fprintln(stderr, "msgate-load null: -listen:", err)
		return exitUsage
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		fmt.Fprintln(stderr, "msgate-load null:", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "null milter (%s) serving on %s\n", mode, *listen)
	if err := nullmilter.Serve(ctx, ln, mode); err != nil {
		fmt.Fprintln(stderr, "msgate-load null:", err)
		return exitFailure
	}
	return exitOK
}
