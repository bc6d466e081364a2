package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/policy/config"
)

// releaseTimeout bounds a whole release: each message runs postsuper, each
// within commandTimeout.
const releaseTimeout = 10 * time.Minute

// runRelease asks the daemon to release held mail, or with -dry-run to
// show what it would release.
func runRelease(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlags("release", stderr)
	dry := fs.Bool("dry-run", false, "print the plan and change nothing")
	asJSON := fs.Bool("json", false, "print one JSON line per held message with a Microsoft recipient, for machines")
	most := fs.Int("max", 0, "release at most this many messages (default release.max_per_run)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || *most < 0 {
		fmt.Fprintln(stderr, "usage: msgate release [-config FILE] [-dry-run] [-json] [-max N]")
		return exitUsage
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	network, address, err := config.ParseListen(cfg.Admin.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "admin.listen:", err)
		return exitUsage
	}
	c := admin.NewClient(network, address, releaseTimeout)
	rep, err := c.Release(admin.ReleaseRequest{DryRun: *dry, Max: *most})
	if err != nil {
		return clientFailed("release", err, stderr)
	}
	for _, b := range rep.Skipped {
		fmt.Fprintf(stderr, "msgate release: %v (skipped): %s\n", b, b.Text)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, s := range rep.Steps {
			enc.Encode(s)
		}
	} else {
		printRelease(stdout, rep)
	}
	if rep.Failed > 0 {
		fmt.Fprintf(stderr, "msgate release: %d message(s) could not be released; they stay held and their units were given back\n", rep.Failed)
		return exitFailure
	}
	return exitOK
}

func printRelease(w io.Writer, rep admin.ReleaseReport) {
	room := "no hard cap"
	if rep.Cap >= 0 {
		room = fmt.Sprintf("%d units", rep.Cap)
	}
	verb := "released"
	if rep.DryRun {
		verb = "would release"
		fmt.Fprintln(w, "Dry run: nothing was changed.")
	}
	fmt.Fprintf(w, "Hold queue: %d messages, %d with a Microsoft recipient; cap room %s.\n", rep.Held, len(rep.Steps), room)
	if rep.Paused {
		fmt.Fprintln(w, "Microsoft delivery is suspended: nothing leaves until it resumes.")
	}
	fmt.Fprintf(w, "%s %d, kept %d, failed %d.\n", verb, rep.Released, rep.Kept, rep.Failed)
	if len(rep.Steps) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nORDER\tQUEUE ID\tACCOUNT\tUNITS\tWAITED\tOUTCOME\tWHY")
	for _, s := range rep.Steps {
		order := "-"
		if s.Order > 0 {
			order = strconv.Itoa(s.Order)
		}
		account := s.Account
		if account == "" {
			account = "<>"
		}
		why := string(s.Reason)
		if s.Error != "" {
			why = s.Error
		}
		waited := rep.Time.Sub(s.Arrival).Truncate(time.Second)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", order, s.ID, account, s.Units, waited, s.Outcome, why)
	}
	tw.Flush()
}
