package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/msgate/msgate/policy/config"
)

// runCheck validates a config: exit 0 when valid, 2 with every problem
// listed (one per line, with its key) when not.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlags("check", stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "msgate check: unexpected argument %q (use -config FILE)\n", fs.Arg(0))
		return exitUsage
	}
	cfg, source, err := loadConfig(*path)
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			fmt.Fprintln(stderr, cerr.Error())
			fmt.Fprintf(stderr, "%s: %d problem(s)\n", source, len(cerr.Problems))
		} else {
			fmt.Fprintln(stderr, "msgate check:", err)
		}
		return exitUsage
	}
	// Building the daemon's parts catches what only they can check.
	if _, err := buildDetector(cfg); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", source, err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: valid (milter %s, %d rate rule(s), state %s)\n",
		source, cfg.Milter.Listen, len(cfg.Rate), cfg.State.Backend)
	return exitOK
}
