// Command msgate-load measures milters under load: it drives any milter as
// a busy Postfix would (see internal/load), and serves the references that
// msgate's benchmarks compare against (a null milter on go-milter, a DNS
// server for MX lookups on loopback). cmd/msgate-load/bench.sh runs the
// whole comparison. main wires the subcommands; each lives in its own file.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	exitOK      = 0
	exitFailure = 1 // the milter failed, or a server could not run
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"load", "drive a milter with load and report what it measured (the default)", runLoad},
		{"null", "serve the null milter: go-milter accepting everything (-mode full|envelope)", runNull},
		{"dns", "answer MX questions on loopback for the milters under load", runDNS},
		{"table", "summarise -json reports of repeated runs: medians and ratios", runTable},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && !isHelp(args[0]) {
		return runLoad(args, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	if args[0] == "help" || isHelp(args[0]) {
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "msgate-load: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func isHelp(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: msgate-load [load] -milter inet:HOST:PORT [flags]")
	fmt.Fprintln(w, "       msgate-load COMMAND [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nmsgate-load COMMAND -h lists a command's flags.")
}
