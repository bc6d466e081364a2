package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/config"
)

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// runTry connects to a running milter like an MTA and prints each stage's
// reply: the quickest way to see msgate work without Postfix.
func runTry(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlags("try", stderr)
	var rcpts listFlag
	from := fs.String("from", "", "envelope sender (empty = the null sender <>)")
	fs.Var(&rcpts, "rcpt", "recipient; repeat the flag or separate with commas")
	auth := fs.String("auth", "", "SASL login, as Postfix passes it in {auth_authen}")
	addr := fs.String("milter", "", "milter socket in Postfix notation (default: the config's [milter] listen)")
	client := fs.String("client", "127.0.0.1", "SMTP client IP to present")
	count := fs.Int("n", 1, "send the message this many times over one connection")
	nonSMTP := fs.Bool("sendmail", false, "present the mail as Postfix's sendmail command does (port 0)")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout for each milter exchange")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if len(rcpts) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "msgate try: need at least one -rcpt (flags only, no arguments)")
		fs.Usage()
		return exitUsage
	}
	if *count < 1 {
		fmt.Fprintln(stderr, "msgate try: -n must be at least 1")
		return exitUsage
	}
	listen := *addr
	if listen == "" {
		cfg, source, err := loadConfig(*path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		listen = cfg.Milter.Listen
		_ = source
	}
	network, address, err := config.ParseListen(listen)
	if err != nil {
		fmt.Fprintf(stderr, "msgate try: -milter: %v\n", err)
		return exitUsage
	}
	c, err := milter.Dial(network, address, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "msgate try: cannot reach the milter at %s: %v (is msgate serve running?)\n", listen, err)
		return exitTempFail
	}
	defer c.Close()
	port := uint16(50000)
	if *nonSMTP {
		port = 0
	}
	r, err := c.Connect("try.msgate.invalid", *client, port)
	if err != nil {
		fmt.Fprintf(stderr, "msgate try: connect: %v\n", err)
		return exitTempFail
	}
	fmt.Fprintln(stdout, r)
	for i := 1; i <= *count; i++ {
		if *count > 1 {
			fmt.Fprintf(stdout, "message %d:\n", i)
		}
		replies, err := c.Send(milter.Message{
			Login: *auth, From: *from, Rcpts: rcpts,
			QueueID: fmt.Sprintf("TRY%06d", i),
			Headers: [][2]string{{"Subject", "msgate try"}},
		})
		for _, r := range replies {
			fmt.Fprintln(stdout, "  "+r.String())
		}
		if err != nil {
			fmt.Fprintf(stderr, "msgate try: %v\n", err)
			return exitTempFail
		}
	}
	return exitOK
}

var _ flag.Value = (*listFlag)(nil)
