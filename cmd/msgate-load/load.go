package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/msgate/msgate/cmd/msgate-load/internal/load"
)

func runLoad(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("msgate-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := load.DefaultConfig()
	cfg.Flags(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "msgate-load: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "msgate-load:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := load.Run(ctx, cfg)
	if rep != nil {
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(rep)
		} else {
			rep.WriteText(stdout)
		}
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, load.ErrMilter) || rep == nil:
		fmt.Fprintln(stderr, "msgate-load:", err)
		return exitFailure
	}
	return exitOK
}
