package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/cmd/msgate/internal/spool"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/feedback"
	"github.com/msgate/msgate/policy/feedback/report"
)

// OutcomeSpooled is fbl's outcome for a report left in the spool for the
// daemon, which was not reachable.
const OutcomeSpooled = "spooled"

// runFbl hands complaint reports to the daemon, one per file (stdin when
// none), printing one JSON line per report. Nothing is lost: when the
// daemon cannot take a report it goes to the spool, and only a spool that
// cannot be written makes the exit status 75, so that Postfix's pipe(8)
// retries rather than bounces. Unparseable input exits 0: the daemon keeps
// it for the admin, and a bounce would go back to Microsoft.
func runFbl(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlags("fbl", stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitTempFail // a broken config must not bounce the report
	}
	network, address, _ := config.ParseListen(cfg.Admin.Listen)
	c := admin.NewClient(network, address, 30*time.Second)
	inputs := fs.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	code := exitOK
	enc := json.NewEncoder(stdout)
	for _, in := range inputs {
		raw, err := readInput(in)
		if err != nil {
			fmt.Fprintf(stderr, "msgate fbl: %v\n", err)
			code = max(code, exitUsage)
			continue
		}
		res, err := c.Report(raw)
		if err != nil {
			res, err = spoolReport(cfg, raw, err)
			if err != nil {
				fmt.Fprintf(stderr, "msgate fbl: %s: the daemon did not take the report and the spool could not be written: %v\n", in, err)
				code = exitTempFail
				continue
			}
		}
		enc.Encode(res)
	}
	return code
}

func readInput(name string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return io.ReadAll(io.LimitReader(r, admin.MaxReport))
}

// spoolReport leaves the report for the daemon and describes it as far as
// it can be read here.
func spoolReport(cfg *config.Config, raw []byte, why error) (feedback.Result, error) {
	res := feedback.Result{Format: string(report.FormatUnknown), AttributedBy: feedback.AttributedByNone, Outcome: OutcomeSpooled}
	if rep, err := report.Parse(bytes.NewReader(raw)); err == nil {
		res.Format, res.FeedbackType, res.ReportID = string(rep.Format), rep.FeedbackType, rep.ID
	} else if !errors.Is(err, report.ErrNotReport) {
		res.Detail = err.Error()
	}
	path, err := spool.Write(cfg.SpoolDir(), spool.Incoming, raw, time.Now())
	if err != nil {
		return res, err
	}
	res.Detail = fmt.Sprintf("the daemon did not take the report (%v); left in %s", why, path)
	return res, nil
}
