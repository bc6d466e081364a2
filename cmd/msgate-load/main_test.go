package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msgate/msgate/cmd/msgate-load/internal/load"
	"github.com/msgate/msgate/cmd/msgate-load/internal/nullmilter"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func nullMilter(t *testing.T, mode nullmilter.Mode) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := nullmilter.NewServer(mode)
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return "inet:" + ln.Addr().String()
}

func TestUsage(t *testing.T) {
	if code, out, _ := runCmd("help"); code != exitOK || !strings.Contains(out, "null") {
		t.Errorf("help: %d %q", code, out)
	}
	for _, args := range [][]string{
		{"frobnicate"},
		{"-sessions", "0"},
		{"-milter", "inet:192.0.2.1:25"},
		{"-milter", "inet:127.0.0.1:1", "extra"},
		{"null", "-mode", "body"},
		{"null", "-listen", "nowhere"},
		{"dns", "-listen", "192.0.2.1:53"},
		{"table"},
	} {
		if code, _, _ := runCmd(args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func TestLoadJSON(t *testing.T) {
	code, out, errOut := runCmd("-milter", nullMilter(t, nullmilter.ModeEnvelope), "-sessions", "2", "-messages", "200",
		"-warmup", "10", "-rcpts", "1-3", "-json", "-tag", "server=null-envelope", "-tag", "scenario=2x1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Completed != 200 || rep.Tags["server"] != "null-envelope" || rep.Rcpts != "1-3" {
		t.Errorf("report %+v", rep)
	}

	// The table command summarises such reports.
	dir := t.TempDir()
	path := filepath.Join(dir, "run.json")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	code, table, errOut := runCmd("table", "-o", filepath.Join(dir, "summary.json"), path)
	if code != exitOK || !strings.Contains(table, "| null-envelope |") {
		t.Fatalf("table: exit %d %s\n%s", code, errOut, table)
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.json")); err != nil {
		t.Error(err)
	}
}

func TestLoadText(t *testing.T) {
	code, out, errOut := runCmd("-milter", nullMilter(t, nullmilter.ModeFull), "-sessions", "1", "-messages", "50", "-warmup", "0")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"stages sent: connect helo mail rcpt header end-of-header body end-of-message", "50 messages", "p99", "errors: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestLoadNoMilter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if code, _, errOut := runCmd("-milter", "inet:"+addr, "-sessions", "1"); code != exitFailure || !strings.Contains(errOut, "opening sessions") {
		t.Errorf("exit %d %q, want %d", code, errOut, exitFailure)
	}
}
