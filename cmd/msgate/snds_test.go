package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/replies"
	"github.com/msgate/msgate/policy/snds"
)

const goodDataRow = "192.0.2.25,11/30/2026 12:00 AM,11/30/2026 11:59 PM,412,410,405,GREEN,< 0.1%,11/30/2026 12:00 AM,11/30/2026 11:59 PM,0,mail.example.net,alice@example.net,\r\n"

const sndsKey = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"

// fakeSNDS serves the two exports from loopback, as SNDS's automated
// access does: a wrong key gets an HTML page.
type fakeSNDS struct {
	srv *httptest.Server
	mu  sync.Mutex
	// page -> sample file in testdata/snds ("" answers 500)
	files map[string]string
}

func startFakeSNDS(t *testing.T) *fakeSNDS {
	t.Helper()
	f := &fakeSNDS{files: map[string]string{"data.aspx": "data-mixed.csv", "ipStatus.aspx": "status-empty.csv"}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := strings.TrimPrefix(r.URL.Path, "/snds/")
		if r.URL.Query().Get("key") != sndsKey {
			io.WriteString(w, "<html><body>Access denied</body></html>")
			return
		}
		f.mu.Lock()
		name, ok := f.files[page]
		f.mu.Unlock()
		if !ok || name == "" {
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		}
		if name == "big" {
			w.Write(bytes.Repeat([]byte(goodDataRow), maxSNDSBody/len(goodDataRow)+1))
			return
		}
		b, err := os.ReadFile(filepath.Join("../../testdata/snds", name))
		if err != nil {
			t.Error(err)
		}
		w.Write(b)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSNDS) serve(data, status string) {
	f.mu.Lock()
	f.files["data.aspx"], f.files["ipStatus.aspx"] = data, status
	f.mu.Unlock()
}

func (f *fakeSNDS) base() string { return f.srv.URL + "/snds/" }

func sndsConfig(f *fakeSNDS) func(*config.Config) {
	return func(c *config.Config) {
		c.SNDS.Key, c.SNDS.BaseURL, c.SNDS.Interval = sndsKey, f.base(), config.Duration(time.Hour)
	}
}

// The daemon imports SNDS at start and shows it in status and /metrics; a
// listed IP blocks Microsoft delivery (the paused 451 through the milter);
// a malformed or failed fetch changes nothing and is logged; an import
// that no longer lists the IP resumes delivery.
func TestSNDSImportBlocksDelivery(t *testing.T) {
	fake := startFakeSNDS(t)
	a := startAdminDaemon(t, sndsConfig(fake))
	deadline := time.Now().Add(10 * time.Second)
	for a.status(t).SNDS.Imported.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no SNDS import 10s after start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := a.status(t)
	if s := st.SNDS; !s.Enabled || s.Blocked || s.Green != 1 || s.Yellow != 1 || s.Red != 1 || s.WorstComplaintRate != "2.1%" ||
		s.WorstIP != "192.0.2.27" || s.OverThreshold != 2 || s.LastError != "" {
		t.Fatalf("status after the first import: %+v", s)
	}
	if st.Delivery.State != "normal" {
		t.Fatalf("delivery without a block: %+v", st.Delivery)
	}
	out, code := a.cli(t, "status")
	if code != 0 || !strings.Contains(out, "1 green, 1 yellow, 1 red; worst complaint rate 2.1% (192.0.2.27); 2 over 0.3%") {
		t.Errorf("status (exit %d) shows:\n%s", code, out)
	}
	send := func() milter.Reply {
		t.Helper()
		c := dial(t, a.milterAddr)
		return rcptReplies(t, c, milter.Message{From: "a@example.org", Rcpts: []string{"x@outlook.com"}})["x@outlook.com"]
	}
	if r := send(); r.Action != "continue" {
		t.Fatalf("Microsoft RCPT without a block = %+v", r)
	}

	core, logs := observer.New(zap.InfoLevel)
	a.d.snds.log = zap.New(core) // the fetcher sleeps an interval: the test drives the imports
	ctx := context.Background()
	fake.serve("data-mixed.csv", "status-blocked.csv")
	if err := a.d.snds.importOnce(ctx); err != nil {
		t.Fatal(err)
	}
	st = a.status(t)
	if !st.SNDS.Blocked || st.SNDS.BlockedRanges != 1 || !strings.Contains(st.SNDS.Reason, "192.0.2.0-192.0.2.255: Blocked due to user complaints") {
		t.Fatalf("SNDS status when listed: %+v", st.SNDS)
	}
	if d := st.Delivery; d.State != "blocked" || d.Rule != snds.RuleName || !d.Until.After(time.Now().Add(time.Hour)) {
		t.Fatalf("delivery when SNDS lists the IP: %+v", d)
	}
	if r := send(); !isDefer(r) || !strings.Contains(r.Text, "paused") {
		t.Fatalf("Microsoft RCPT while SNDS lists the IP = %+v", r)
	}
	m := metricsText(t, a.adminAddr)
	for _, want := range []string{"msgate_snds_blocked 1", "msgate_snds_blocked_ranges 1", `msgate_snds_rows{filter_result="red"} 1`,
		"msgate_snds_worst_complaint_rate_percent 2.1", `msgate_snds_imports_total{result="ok"} 2`, "msgate_microsoft_delivery_state 2"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	imported := st.SNDS.Imported

	// Each of these would lift the block if it were read as an export.
	for i, c := range []struct {
		name, data, status, logged string
	}{
		{"truncated data", "data-truncated.csv.bad", "status-empty.csv", "12 columns, want 14"},
		{"HTML status", "data-mixed.csv", "status-html.csv.bad", "HTML page"},
		{"HTTP 500", "data-mixed.csv", "", "HTTP status 500"},
		{"too large", "big", "status-empty.csv", "larger than 8388608 bytes"},
	} {
		fake.serve(c.data, c.status)
		logs.TakeAll()
		if err := a.d.snds.importOnce(ctx); err == nil {
			t.Fatalf("%s: imported", c.name)
		}
		st := a.status(t)
		if !st.SNDS.Blocked || !st.SNDS.Imported.Equal(imported) || st.SNDS.ImportErrors != i+1 || !strings.Contains(st.SNDS.LastError, c.logged) {
			t.Errorf("%s changed the import: %+v", c.name, st.SNDS)
		}
		if st.Delivery.State != "blocked" {
			t.Errorf("%s lifted the block: %+v", c.name, st.Delivery)
		}
		lines := logs.FilterMessage("SNDS import failed; the last import stays in force").All()
		if len(lines) != 1 || !strings.Contains(lines[0].ContextMap()["error"].(string), c.logged) {
			t.Errorf("%s logged %+v", c.name, logs.All())
		}
	}
	if m := metricsText(t, a.adminAddr); !strings.Contains(m, `msgate_snds_imports_total{result="failed"} 4`) {
		t.Error("/metrics does not count the failed imports")
	}

	fake.serve("data-mixed.csv", "status-empty.csv")
	if err := a.d.snds.importOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.status(t); st.SNDS.Blocked || st.Delivery.State != "normal" || st.SNDS.LastError != "" {
		t.Fatalf("after an import without the block: SNDS %+v, delivery %+v", st.SNDS, st.Delivery)
	}
	if r := send(); r.Action != "continue" {
		t.Fatalf("Microsoft RCPT after the block is lifted = %+v", r)
	}
}

// restarter returns start, which closes the daemon it started last and
// starts another on cfg, as a restart would; the last is closed when the
// test ends.
func restarter(t *testing.T, cfg *config.Config) func() *daemon {
	var last *daemon
	t.Cleanup(func() {
		if last != nil {
			last.close()
		}
	})
	return func() *daemon {
		t.Helper()
		if last != nil {
			last.close()
		}
		d, err := newDaemon(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		last = d
		return d
	}
}

func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The last good import survives a restart, and the block with it; the
// alert hook gets each change; a failed fetch's error never holds the key.
func TestSNDSStateFileAndEvents(t *testing.T) {
	fake := startFakeSNDS(t)
	cfg := config.Default()
	cfg.State.Path = filepath.Join(t.TempDir(), "state.db")
	sndsConfig(fake)(cfg)
	cfg.SNDS.IPs = []string{"192.0.2.27", "198.51.100.99"}
	start := restarter(t, cfg)
	var events []snds.Event
	d := start()
	d.snds.OnEvent = func(e snds.Event) { events = append(events, e) }
	fake.serve("data-mixed.csv", "status-blocked.csv")
	ctx := context.Background()
	if err := d.snds.importOnce(ctx); err != nil {
		t.Fatal(err)
	}
	want := []snds.EventKind{snds.EventBlocked, snds.EventRed, snds.EventComplaints}
	if len(events) != len(want) {
		t.Fatalf("events %+v, want %v", events, want)
	}
	for i, e := range events {
		if e.Kind != want[i] {
			t.Errorf("event %d = %s, want %s", i, e.Kind, want[i])
		}
	}
	s := d.snds.status()
	if len(s.IPs) != 2 || s.IPs[0].Filter != "RED" || !s.IPs[0].Blocked || s.IPs[1].InData || s.Green+s.Yellow != 0 || s.Red != 1 {
		t.Fatalf("watched IPs: %+v", s)
	}

	d = start()
	if st := d.feed.status(); st.State != "blocked" || st.Rule != snds.RuleName {
		t.Fatalf("delivery after a restart: %+v", st)
	}
	if s2 := d.snds.status(); !s2.Imported.Equal(s.Imported) || !s2.Blocked || !s2.BlockedSince.Equal(s.BlockedSince) {
		t.Fatalf("SNDS after a restart: %+v, was %+v", s2, s)
	}

	events = nil
	d.snds.OnEvent = func(e snds.Event) { events = append(events, e) }
	fake.srv.Close()
	err := d.snds.importOnce(ctx)
	if err == nil || strings.Contains(err.Error(), sndsKey) {
		t.Fatalf("fetch from a closed server: %v", err)
	}
	if len(events) != 1 || events[0].Kind != snds.EventImportFailed || strings.Contains(events[0].Reason, sndsKey) {
		t.Fatalf("events of a failed fetch: %+v", events)
	}
	if st := d.feed.status(); st.State != "blocked" {
		t.Fatalf("a failed fetch lifted the block: %+v", st)
	}

	if err := os.WriteFile(cfg.SNDSStateFile(), []byte(`{"import": {"at": "20`), 0o644); err != nil {
		t.Fatal(err)
	}
	d = start()
	if s := d.snds.status(); !s.Imported.IsZero() || s.Blocked {
		t.Fatalf("from a damaged file: %+v", s)
	}
	if _, err := os.Stat(cfg.SNDSStateFile() + ".damaged"); err != nil {
		t.Errorf("the damaged file was not kept: %v", err)
	}
}

// Without a key there is no SNDS feed, and status says it is off.
func TestSNDSOff(t *testing.T) {
	a := startAdminDaemon(t, nil)
	if a.d.snds != nil || a.status(t).SNDS.Enabled {
		t.Fatal("SNDS on without a key")
	}
	if out, _ := a.cli(t, "status"); !regexp.MustCompile(`(?m)^SNDS:\s+off \(`).MatchString(out) {
		t.Errorf("status shows:\n%s", out)
	}
}

// With snds.ramp_green_only the mitigation ramp advances one day per
// GREEN day SNDS reported since ramp_start, and keeps that across a
// restart; status shows both days.
func TestSNDSRampGreenOnly(t *testing.T) {
	fake := startFakeSNDS(t)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC) // calendar day 3
	cfg := config.Default()
	cfg.State.Path = filepath.Join(t.TempDir(), "state.db")
	sndsConfig(fake)(cfg)
	cfg.SNDS.RampGreenOnly = true
	cfg.Mitigation.Enabled, cfg.Mitigation.RampStart, cfg.Mitigation.Ramp = true, "2026-11-30", []int64{10, 20, 30, 40}
	restart := restarter(t, cfg)
	start := func() *daemon {
		t.Helper()
		d := restart()
		d.now = func() time.Time { return now }
		d.api.Now = d.now
		d.snds.publish(now)
		return d
	}
	check := func(d *daemon, day int, limit int64) {
		t.Helper()
		if got, l := d.engine.RampDay(now), d.engine.CapLimit(now); got != day || l != limit {
			t.Fatalf("ramp day %d, cap %d; want %d, %d", got, l, day, limit)
		}
	}
	d := start()
	check(d, 1, 10)
	ctx := context.Background()
	fake.serve("data-mixed.csv", "status-empty.csv") // 11/30: one row RED
	if err := d.snds.importOnce(ctx); err != nil {
		t.Fatal(err)
	}
	check(d, 1, 10)
	fake.serve("data-bom-lf.csv", "status-empty.csv") // 12/1: GREEN
	if err := d.snds.importOnce(ctx); err != nil {
		t.Fatal(err)
	}
	check(d, 2, 20)
	srv := httptest.NewServer(d.api.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st admin.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Cap.RampDay != 2 || st.Cap.CalendarDay != 3 || st.Cap.Limit != 20 || st.Cap.Configured != 0 {
		t.Errorf("status: %+v, %v", st.Cap, err)
	}
	d = start()
	check(d, 2, 20)
	cfg.SNDS.RampGreenOnly = false
	d = start()
	check(d, 3, 30)
}

// While SNDS blocks, the end of a suspension by replies does not resume
// delivery; lifting the SNDS block does, once.
func TestSNDSBlockOutlastsReplies(t *testing.T) {
	cfg := config.Default()
	cfg.State.Path = filepath.Join(t.TempDir(), "state.db")
	d, err := newDaemon(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	now := time.Now()
	d.now = func() time.Time { return now }
	f := d.feed
	for range 5 {
		f.lookup("dsn", "5.7.1 host x[1.2.3.4] said: 550 5.7.1 ... on our block list (S3150)")
	}
	f.setSNDS(snds.Block{Since: now, Until: now.Add(5 * time.Hour), Reason: "listed"}, 0, now)
	kinds := func() []replies.EventKind {
		f.mu.Lock()
		defer f.mu.Unlock()
		var k []replies.EventKind
		for _, e := range f.events {
			k = append(k, e.Kind)
		}
		f.events = nil
		return k
	}
	if k := kinds(); len(k) != 2 || k[0] != replies.EventBlocked || k[1] != replies.EventBlocked {
		t.Fatalf("events of the replies' block and SNDS's: %v", k)
	}
	now = now.Add(3 * time.Hour) // the replies' 2 h are over
	f.mu.Lock()
	f.took(f.tr.Tick(now), now)
	f.mu.Unlock()
	if k := kinds(); len(k) != 0 {
		t.Fatalf("events when the replies' suspension ends under an SNDS block: %v", k)
	}
	if st := f.status(); st.State != "blocked" || st.Rule != snds.RuleName {
		t.Fatalf("delivery under an SNDS block: %+v", st)
	}
	f.setSNDS(snds.Block{}, 0, now)
	if k := kinds(); len(k) != 1 || k[0] != replies.EventResumed {
		t.Fatalf("events when SNDS lifts the block: %v", k)
	}
	if st := f.status(); st.State != "normal" || d.engine.Delivery().Paused(now) {
		t.Fatalf("delivery after SNDS lifts the block: %+v", st)
	}
}
