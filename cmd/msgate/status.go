package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/policy/config"
)

// adminClient finds the daemon through the config's [admin] listen.
func adminClient(path string, stderr io.Writer) (*admin.Client, int) {
	cfg, _, err := loadConfig(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, exitUsage
	}
	network, address, err := config.ParseListen(cfg.Admin.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "admin.listen:", err)
		return nil, exitUsage
	}
	return admin.NewClient(network, address, 10*time.Second), exitOK
}

// clientFailed prints a client error; an unreachable daemon is a temporary
// failure.
func clientFailed(cmd string, err error, stderr io.Writer) int {
	fmt.Fprintf(stderr, "msgate %s: %v\n", cmd, err)
	if errors.Is(err, admin.ErrUnreachable) {
		fmt.Fprintln(stderr, "  is msgate serve running, with the same config (-config)?")
		return exitTempFail
	}
	return exitFailure
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlags("status", stderr)
	asJSON := fs.Bool("json", false, "print JSON for machines")
	top := fs.Int("top", 10, "how many of the busiest accounts to list")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	c, code := adminClient(*path, stderr)
	if c == nil {
		return code
	}
	st, err := c.Status(*top)
	if err != nil {
		return clientFailed("status", err, stderr)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return exitOK
	}
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	if st.Cap.Enabled {
		ramp := ""
		if st.Cap.RampDay > 0 {
			ramp = fmt.Sprintf(", ramp day %d", st.Cap.RampDay)
		}
		if st.Cap.CalendarDay > 0 {
			ramp += fmt.Sprintf(" (calendar day %d: SNDS GREEN days only)", st.Cap.CalendarDay)
		}
		fmt.Fprintf(w, "Microsoft cap:\t%d of %d used in the last %s (%d in flight), action %s%s\n",
			st.Cap.Used, st.Cap.Limit, st.Cap.Window, st.Cap.Reserved, st.Cap.Action, ramp)
		if st.Cap.Configured != 0 {
			fmt.Fprintf(w, "\tlowered from %d (x%.3g): %s\n", st.Cap.Configured, st.Cap.Factor, st.Cap.Why)
		}
	} else {
		fmt.Fprintf(w, "Microsoft cap:\toff ([mitigation] enabled = false)\n")
	}
	dl := st.Delivery
	switch {
	case !dl.Feed && dl.State == "normal":
		fmt.Fprintf(w, "Microsoft delivery:\tnot observed (set [replies] listen or log_file)\n")
	case dl.State == "normal":
		fmt.Fprintf(w, "Microsoft delivery:\tnormal\n")
	default:
		fmt.Fprintf(w, "Microsoft delivery:\t%s since %s until %s (rule %s; %d held, queue paused: %v)\n\tlast reply: %s\n",
			dl.State, dl.Since.Format(time.RFC3339), dl.Until.Format(time.RFC3339), dl.Rule, dl.Held, dl.Paused, dl.Reply)
	}
	printSNDS(w, st.SNDS)
	fmt.Fprintf(w, "Milter sessions:\t%d\n", st.Sessions)
	var rules []string
	for _, r := range st.Rules {
		rules = append(rules, fmt.Sprintf("%s %d/%s %s", r.Name, r.Limit, r.Window, r.Action))
	}
	fmt.Fprintf(w, "Rate rules:\t%s\n", strings.Join(rules, "; "))
	w.Flush()
	fmt.Fprintln(stdout)
	if len(st.TopAccounts) == 0 {
		fmt.Fprintln(stdout, "No account has sent to Microsoft in the rules' windows.")
	} else {
		fmt.Fprintln(stdout, "Busiest accounts (units used / limit per rule):")
		w = tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprint(w, "ACCOUNT")
		for _, r := range st.Rules {
			fmt.Fprintf(w, "\t%s", strings.ToUpper(r.Name))
		}
		fmt.Fprintln(w)
		for _, a := range st.TopAccounts {
			fmt.Fprint(w, a.Account)
			for _, r := range st.Rules {
				fmt.Fprintf(w, "\t%s", usageOf(a, r))
			}
			fmt.Fprintln(w)
		}
		w.Flush()
	}
	fmt.Fprintln(stdout)
	if len(st.Flagged) == 0 {
		fmt.Fprintln(stdout, "No flagged accounts.")
		return exitOK
	}
	fmt.Fprintln(stdout, "Flagged accounts:")
	w = tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACCOUNT\tACTION\tREASON\tSINCE\tNOTE")
	for _, f := range st.Flagged {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", f.Account, f.Action, reasonText(f), f.Since.Format(time.RFC3339), f.Note)
	}
	w.Flush()
	return exitOK
}

func reasonText(f admin.Flagged) string {
	if f.Reason == "complaints" {
		return fmt.Sprintf("%d complaint(s) in %s", f.Complaints, f.Within)
	}
	return f.Reason
}

func usageOf(a admin.AccountStatus, r admin.RuleStatus) string {
	for _, u := range a.Rules {
		if u.Name == r.Name {
			return fmt.Sprintf("%d/%d", u.Used+u.Reserved, u.Limit)
		}
	}
	return fmt.Sprintf("0/%d", r.Limit)
}

func runAccount(args []string, stdout, stderr io.Writer) int {
	usage := func() int {
		fmt.Fprintln(stderr, "usage: msgate account show ACCOUNT")
		fmt.Fprintln(stderr, "       msgate account flag [-action defer|reject] [-note TEXT] ACCOUNT")
		fmt.Fprintln(stderr, "       msgate account unflag ACCOUNT")
		fmt.Fprintln(stderr, "(-config FILE goes after the verb, before ACCOUNT)")
		return exitUsage
	}
	if len(args) == 0 {
		return usage()
	}
	verb := args[0]
	fs, path := newFlags("account "+verb, stderr)
	action := fs.String("action", "defer", "flag: what the account's Microsoft recipients get (defer or reject)")
	note := fs.String("note", "", "flag: a note for other admins")
	asJSON := fs.Bool("json", false, "show: print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		return usage()
	}
	name := fs.Arg(0)
	c, code := adminClient(*path, stderr)
	if c == nil {
		return code
	}
	switch verb {
	case "show":
		a, err := c.Account(name)
		if err != nil {
			return clientFailed("account show", err, stderr)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(a)
			return exitOK
		}
		fmt.Fprintf(stdout, "Account: %s\n", a.Account)
		switch {
		case a.Flag != nil:
			fmt.Fprintf(stdout, "Flagged: %s since %s (%s) %s\n", a.Flag.Action, a.Flag.Since.Format(time.RFC3339), reasonText(*a.Flag), a.Flag.Note)
		default:
			fmt.Fprintln(stdout, "Flagged: no")
		}
		for _, c := range a.Complaints {
			fmt.Fprintf(stdout, "Complaint: %s (report %.12s)\n", c.At.Format(time.RFC3339), c.ReportID)
		}
		if a.Exempt {
			fmt.Fprintln(stdout, "Exempt from rate rules (still counted against the cap)")
		}
		w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "RULE\tUSED\tLIMIT\tWINDOW\tACTION")
		for _, r := range a.Rules {
			fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\n", r.Name, r.Used+r.Reserved, r.Limit, r.Window, r.Action)
		}
		w.Flush()
	case "flag":
		if err := c.Flag(name, *action, *note); err != nil {
			return clientFailed("account flag", err, stderr)
		}
		fmt.Fprintf(stdout, "%s flagged: its Microsoft recipients get %s\n", name, *action)
	case "unflag":
		if err := c.Unflag(name); err != nil {
			return clientFailed("account unflag", err, stderr)
		}
		fmt.Fprintf(stdout, "%s unflagged\n", name)
	default:
		return usage()
	}
	return exitOK
}

// printSNDS writes the last SNDS import's lines of msgate status.
func printSNDS(w io.Writer, s admin.SNDSStatus) {
	switch {
	case !s.Enabled:
		fmt.Fprintf(w, "SNDS:\toff (set [snds] key)\n")
		return
	case s.Imported.IsZero():
		fmt.Fprintf(w, "SNDS:\tno import yet\n")
	default:
		fmt.Fprintf(w, "SNDS:\timported %s: %d green, %d yellow, %d red; worst complaint rate %s (%s); %d over %v%%\n",
			s.Imported.Format(time.RFC3339), s.Green, s.Yellow, s.Red, orNone(s.WorstComplaintRate), orNone(s.WorstIP), s.OverThreshold, s.ComplaintThreshold)
	}
	if s.Blocked {
		fmt.Fprintf(w, "\tBLOCKED since %s: %s\n", s.BlockedSince.Format(time.RFC3339), s.Reason)
	}
	for _, ip := range s.IPs {
		switch {
		case ip.InData:
			fmt.Fprintf(w, "\t%s: %s, complaint rate %s, blocked: %v\n", ip.IP, ip.Filter, ip.ComplaintRate, ip.Blocked)
		default:
			fmt.Fprintf(w, "\t%s: no data, blocked: %v\n", ip.IP, ip.Blocked)
		}
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "\tlast fetch %s failed (%d failures so far): %s\n", s.LastAttempt.Format(time.RFC3339), s.ImportErrors, s.LastError)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
