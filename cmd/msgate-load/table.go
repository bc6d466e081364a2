package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/msgate/msgate/cmd/msgate-load/internal/benchtable"
	"github.com/msgate/msgate/cmd/msgate-load/internal/load"
)

func runTable(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("msgate-load table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "also write the summary as JSON to this file")
	subject := fs.String("subject", "msgate", "server whose ratios to the references are computed")
	refs := fs.String("refs", "null-full,null-envelope,rspamd", "comma-separated reference servers")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: msgate-load table [-o FILE] [-subject SERVER] [-refs A,B] REPORT.json...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	var reports []*load.Report
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(stderr, "msgate-load table:", err)
			return exitFailure
		}
		var r load.Report
		if err := json.Unmarshal(b, &r); err != nil {
			fmt.Fprintf(stderr, "msgate-load table: %s: %v\n", path, err)
			return exitFailure
		}
		reports = append(reports, &r)
	}
	s, err := benchtable.Summarize(reports, *subject, strings.Split(*refs, ","))
	if err != nil {
		fmt.Fprintln(stderr, "msgate-load table:", err)
		return exitFailure
	}
	s.WriteMarkdown(stdout)
	if *out != "" {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(stderr, "msgate-load table:", err)
			return exitFailure
		}
	}
	return exitOK
}
