package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// bench.sh runs whole in a short form, without rspamd (installing it is
// the script's business, not the suite's): every server it starts answers,
// every run completes, and the table, the ratios and the state log's sync
// shares come out. No figure is judged.
func TestBenchScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds msgate and runs the benchmark script")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "bench.sh")
	cmd.Env = append(os.Environ(), "BENCH_QUICK=1", "BENCH_RSPAMD=0", "BENCH_MESSAGES=400", "BENCH_OUT="+out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench.sh: %v\n%s", err, b)
	}
	table, err := os.ReadFile(filepath.Join(out, "table.md"))
	if err != nil {
		t.Fatalf("no table: %v\n%s", err, b)
	}
	for _, want := range []string{
		"| go-milter null, envelope only | ",
		"| msgate serve, embedded state, stamping | ",
		"| msgate serve, memory state (not durable) | ",
		"| msgate serve, embedded state, stamping / go-milter null, envelope only | ",
		"| msgate serve, embedded state, stamping / msgate serve, memory state (not durable) | ",
	} {
		if !strings.Contains(string(table), want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(string(table), "error") || strings.Contains(string(table), "cut short") {
		t.Errorf("a run had errors:\n%s", table)
	}
	syncs, err := os.ReadFile(filepath.Join(out, "syncs.md"))
	if err != nil {
		t.Fatalf("no sync shares: %v\n%s", err, b)
	}
	// 400 messages and 40 of warm-up, 75% with a Microsoft recipient: a
	// few hundred syncs, one per such message.
	m := regexp.MustCompile(`msgate 1x1 run 1: (\d+) log fdatasyncs, [0-9.]+% over 0.5 ms, [0-9.]+% over 1 ms`).FindSubmatch(syncs)
	if m == nil {
		t.Fatalf("sync shares: %q", syncs)
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 200 || n > 440 {
		t.Errorf("%d syncs for 440 messages at one session, 75%% of them with a Microsoft recipient", n)
	}
}

// ab.sh runs whole in a short form, HEAD against the work tree on the
// memory backend: both versions build, start and answer, and the pairs and
// their medians come out. No figure is judged.
func TestABScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds msgate twice and runs the comparison script")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if err := exec.Command("git", "rev-parse", "HEAD").Run(); err != nil {
		t.Skip("not in a git checkout")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "ab.sh", "HEAD")
	cmd.Env = append(os.Environ(), "AB_PAIRS=2", "AB_MESSAGES=300", "AB_BACKEND=memory", "AB_OUT="+out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ab.sh: %v\n%s", err, b)
	}
	pairs, err := os.ReadFile(filepath.Join(out, "pairs.txt"))
	if err != nil || strings.Count(string(pairs), "\n") != 2 {
		t.Fatalf("pairs %q %v\n%s", pairs, err, b)
	}
	summary, err := os.ReadFile(filepath.Join(out, "summary.txt"))
	if err != nil || !regexp.MustCompile(`^median B/A: msg/s [0-9.]+ \(pairs [0-9.]+-[0-9.]+\), CPU a message \(msgate and Redis\) [0-9.]+\n$`).Match(summary) {
		t.Errorf("summary %q %v\n%s", summary, err, b)
	}
}
