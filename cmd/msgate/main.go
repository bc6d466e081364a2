// Command msgate is the outbound policy milter that keeps a mail server's IP
// off Microsoft's block list. main wires flags, config and the logger; each
// subcommand lives in its own file.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes (sysexits.h where it has one): Postfix's pipe(8) retries on 75.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitTempFail = 75
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the milter", runServe},
		{"check", "validate a config file and list every problem", runCheck},
		{"status", "show what the running daemon knows: cap use, busiest accounts, flags", runStatus},
		{"account", "show, flag or unflag one account (account show|flag|unflag ACCOUNT)", runAccount},
		{"fbl", "hand complaint reports (files, or stdin) to the daemon; one JSON line each", runFbl},
		{"release", "release held Microsoft mail, paced by the cap and the accounts' rules (-dry-run first)", runRelease},
		{"try", "drive a running milter as an MTA would and print each reply", runTry},
		{"version", "print the version", runVersion},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "msgate: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: msgate COMMAND [-config FILE] [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nWithout -config, /etc/msgate/msgate.toml is read when it exists; otherwise built-in defaults apply.")
}

func runVersion(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, "msgate", version)
	return exitOK
}
