package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/config"
)

// adminDaemon runs the daemon with its admin API on loopback and writes a
// config file that the client commands can use to find it.
type adminDaemon struct {
	milterAddr string
	adminAddr  string
	configPath string
	d          *daemon
}

func startAdminDaemon(t *testing.T, edit func(*config.Config)) *adminDaemon {
	t.Helper()
	ns := startDNS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &adminDaemon{milterAddr: ln.Addr().String(), adminAddr: aln.Addr().String()}
	cfg := config.Default()
	cfg.Microsoft.Resolver = ns.Addr
	cfg.Milter.Listen = "inet:" + a.milterAddr
	cfg.Admin.Listen = "inet:" + a.adminAddr
	cfg.State.Path = filepath.Join(t.TempDir(), "state.db")
	if edit != nil {
		edit(cfg)
	}
	a.configPath = filepath.Join(t.TempDir(), "msgate.toml")
	writeConfig(t, a.configPath, cfg)
	loaded, err := config.Load(a.configPath)
	if err != nil {
		t.Fatal(err)
	}
	a.d, err = newDaemon(loaded, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a.d.source = a.configPath
	if l := loaded.Replies.Listen; l != "" {
		if a.d.feedLn, err = listen(l, 0o660); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.d.run(ctx, ln, aln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
		a.d.close()
	})
	return a
}

func writeConfig(t *testing.T, path string, cfg *config.Config) {
	t.Helper()
	var b strings.Builder
	if len(cfg.Rate) == 0 {
		b.WriteString("rate = []\n")
	}
	fmt.Fprintf(&b, "[milter]\nlisten = %q\n[admin]\nlisten = %q\n", cfg.Milter.Listen, cfg.Admin.Listen)
	fmt.Fprintf(&b, "[state]\nbackend = %q\npath = %q\nredis_url = %q\nredis_prefix = %q\n", cfg.State.Backend, cfg.State.Path, cfg.State.RedisURL, cfg.State.RedisPrefix)
	fmt.Fprintf(&b, "[microsoft]\nresolver = %q\n", cfg.Microsoft.Resolver)
	for _, r := range cfg.Rate {
		fmt.Fprintf(&b, "[[rate]]\nname = %q\nwindow = %q\nlimit = %d\naction = %q\n", r.Name, r.Window.String(), r.Limit, r.Action)
	}
	m := cfg.Mitigation
	fmt.Fprintf(&b, "[mitigation]\nenabled = %v\ndaily_cap = %d\nwindow = %q\naction = %q\n", m.Enabled, m.DailyCap, m.Window.String(), m.Action)
	if m.RampStart != "" {
		fmt.Fprintf(&b, "ramp_start = %q\n", m.RampStart)
		var caps []string
		for _, c := range m.Ramp {
			caps = append(caps, fmt.Sprint(c))
		}
		fmt.Fprintf(&b, "ramp = [%s]\n", strings.Join(caps, ", "))
	}
	if f := cfg.Feedback; f.Secret != "" {
		fmt.Fprintf(&b, "[feedback]\nsecret = %q\n", f.Secret)
	}
	if r := cfg.Replies; r.Listen != "" || r.LogFile != "" {
		fmt.Fprintf(&b, "[replies]\nlisten = %q\nlog_file = %q\n", r.Listen, r.LogFile)
	}
	if s := cfg.SNDS; s.Key != "" {
		ips, _ := json.Marshal(append([]string{}, s.IPs...))
		fmt.Fprintf(&b, "[snds]\nkey = %q\nbase_url = %q\ninterval = %q\nips = %s\n", s.Key, s.BaseURL, s.Interval.String(), ips)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (a *adminDaemon) cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	full := append([]string{args[0], "-config", a.configPath}, args[1:]...)
	if args[0] == "account" {
		full = append([]string{"account", args[1], "-config", a.configPath}, args[2:]...)
	}
	code := run(full, &stdout, &stderr)
	return stdout.String() + stderr.String(), code
}

func (a *adminDaemon) status(t *testing.T) admin.Status {
	t.Helper()
	out, code := a.cli(t, "status", "-json")
	if code != 0 {
		t.Fatalf("status -json: exit %d: %s", code, out)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json printed %q: %v", out, err)
	}
	return st
}

// scrapeMetrics reads a daemon's /metrics from its admin address.
func scrapeMetrics(t testing.TB, adminAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sendMany runs sessions concurrently, each sending messages with one
// Microsoft recipient, and counts accepted and deferred units.
func sendMany(t *testing.T, addr string, sessions, perSession int) (accepted, deferred int64) {
	t.Helper()
	var acc, def atomic.Int64
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			c, err := milter.Dial("tcp", addr, 10*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			if _, err := c.Connect("client.test", "192.0.2.9", 45000); err != nil {
				return
			}
			for j := range perSession {
				rs, err := c.Send(milter.Message{From: fmt.Sprintf("user%d@example.org", (i*perSession+j)%50),
					Rcpts: []string{fmt.Sprintf("r%d@outlook.com", j)}})
				if err != nil {
					return
				}
				for _, r := range rs {
					switch {
					case r.Stage != "rcpt":
					case isDefer(r):
						def.Add(1)
					case !r.Refused():
						acc.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	return acc.Load(), def.Load()
}

func capConfig(n int64) func(*config.Config) {
	return func(c *config.Config) {
		c.Rate = nil
		c.Mitigation.Enabled, c.Mitigation.DailyCap = true, n
	}
}

func TestCapExactUnderConcurrencyAndStatus(t *testing.T) {
	a := startAdminDaemon(t, capConfig(100))
	acc, def := sendMany(t, a.milterAddr, 32, 10)
	if acc != 100 || def != 220 {
		t.Fatalf("accepted %d, deferred %d of 320; want exactly 100 accepted", acc, def)
	}
	st := a.status(t)
	if !st.Cap.Enabled || st.Cap.Used != 100 || st.Cap.Limit != 100 || st.Cap.Reserved != 0 {
		t.Fatalf("status cap = %+v, want used 100 of 100", st.Cap)
	}
	out, code := a.cli(t, "status")
	if code != 0 || !strings.Contains(out, "100 of 100 used") {
		t.Errorf("status (table): exit %d\n%s", code, out)
	}
}

func TestAccountFlagThroughCLI(t *testing.T) {
	a := startAdminDaemon(t, nil)
	c := dial(t, a.milterAddr)
	if out, code := a.cli(t, "account", "flag", "-note", "phished", "mallory@example.org"); code != 0 {
		t.Fatalf("flag: %d %s", code, out)
	}
	got := rcptReplies(t, c, milter.Message{From: "mallory@example.org", Rcpts: []string{"a@outlook.com", "b@example.net"}})
	if r := got["a@outlook.com"]; !isDefer(r) || !strings.Contains(r.Text, "complained") {
		t.Errorf("flagged account's Microsoft recipient: %v", r)
	}
	if r := got["b@example.net"]; r.Refused() {
		t.Errorf("flagged account's other recipient refused: %v", r)
	}
	if r := rcptReplies(t, c, milter.Message{From: "bob@example.org", Rcpts: []string{"a@outlook.com"}})["a@outlook.com"]; r.Refused() {
		t.Errorf("bob refused: %v", r)
	}
	out, code := a.cli(t, "account", "show", "mallory@example.org")
	if code != 0 || !strings.Contains(out, "phished") || !strings.Contains(out, "Flagged: defer") {
		t.Errorf("show: %d\n%s", code, out)
	}
	st := a.status(t)
	if len(st.Flagged) != 1 || st.Flagged[0].Account != "mallory@example.org" {
		t.Errorf("status flagged = %+v", st.Flagged)
	}
	if out, code := a.cli(t, "account", "unflag", "mallory@example.org"); code != 0 {
		t.Fatalf("unflag: %d %s", code, out)
	}
	if r := rcptReplies(t, c, milter.Message{From: "mallory@example.org", Rcpts: []string{"c@outlook.com"}})["c@outlook.com"]; r.Refused() {
		t.Errorf("unflagged account still refused: %v", r)
	}
	if out, code := a.cli(t, "account", "unflag", "mallory@example.org"); code == 0 || !strings.Contains(out, "not flagged") {
		t.Errorf("second unflag: %d %s", code, out)
	}
	if out, code := a.cli(t, "account", "flag", "-action", "bounce", "x"); code == 0 || !strings.Contains(out, "defer or reject") {
		t.Errorf("bad action: %d %s", code, out)
	}
}

func TestStatusTopAccounts(t *testing.T) {
	a := startAdminDaemon(t, nil)
	c := dial(t, a.milterAddr)
	for i, n := range map[string]int{"heavy@example.org": 5, "light@example.org": 1} {
		for range n {
			rcptReplies(t, c, milter.Message{From: i, Rcpts: []string{"x@outlook.com"}})
		}
	}
	st := a.status(t)
	if len(st.TopAccounts) != 2 || st.TopAccounts[0].Account != "heavy@example.org" {
		t.Fatalf("top accounts = %+v", st.TopAccounts)
	}
	for _, r := range st.TopAccounts[0].Rules {
		if r.Used != 5 {
			t.Errorf("heavy's %s use = %d, want 5", r.Name, r.Used)
		}
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	a := startAdminDaemon(t, capConfig(10))
	c := dial(t, a.milterAddr)
	rcptReplies(t, c, milter.Message{From: "a@example.org", Rcpts: []string{"x@outlook.com", "y@example.net"}})
	get := func(path string) string {
		resp, err := http.Get("http://" + a.adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		return string(b)
	}
	if body := get("/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz = %q", body)
	}
	m := get("/metrics")
	for _, want := range []string{
		`msgate_decisions_total{action="accept",reason="within-limits",stage="recipient",would_have_acted="false"} 1`,
		`msgate_decisions_total{action="accept",reason="not-microsoft",stage="recipient",would_have_acted="false"} 1`,
		"msgate_cap_used 1", "msgate_cap_limit 10",
		"msgate_decision_duration_seconds_bucket",
		"msgate_detect_lookups_total 1",
		// The one Microsoft unit was committed alone: one sync of the log.
		"msgate_state_sync_duration_seconds_count 1",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(m, "example.org") || strings.Contains(m, "outlook.com") {
		t.Errorf("/metrics carries an address or domain")
	}
}

func TestStatusWhenDaemonIsDown(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "msgate.toml")
	os.WriteFile(path, []byte(fmt.Sprintf("[admin]\nlisten = \"unix:%s/nobody.sock\"\n", dir)), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", "-config", path}, &stdout, &stderr); code != exitTempFail {
		t.Fatalf("exit %d, want %d: %s", code, exitTempFail, stderr.String())
	}
	if !strings.Contains(stderr.String(), "not reachable") {
		t.Errorf("message: %q", stderr.String())
	}
}
