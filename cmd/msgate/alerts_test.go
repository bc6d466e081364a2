package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/cmd/msgate/internal/alert"
	"github.com/msgate/msgate/cmd/msgate/internal/socketmap"
	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/config"
)

// alertReceiver is a loopback HTTP endpoint that keeps the alerts posted
// to it.
type alertReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	events []alert.Event
	auth   []string
}

func startAlertReceiver(t testing.TB) *alertReceiver {
	r := &alertReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var ev alert.Event
		if err := json.NewDecoder(req.Body).Decode(&ev); err != nil || req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad alert", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *alertReceiver) got() []alert.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitFor waits until the receiver holds at least n alerts named event.
func (r *alertReceiver) waitFor(t *testing.T, event string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := 0
		for _, ev := range r.got() {
			if ev.Event == event {
				c++
			}
		}
		if c >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s alerts after 10s, want %d; got %+v", c, event, n, r.got())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alertDaemon runs the daemon with its admin API on loopback; stop shuts it
// down as SIGTERM does, the drain of the alerts included.
type alertDaemon struct {
	milterAddr, adminAddr string
	d                     *daemon
	stop                  func()
}

func startAlertDaemon(t testing.TB, log *zap.Logger, edit func(*config.Config)) *alertDaemon {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Microsoft.Resolver = "127.0.0.1:9" // never asked: only consumer domains
	cfg.State.Backend = config.BackendMemory
	cfg.State.Path = filepath.Join(t.TempDir(), "state.db")
	cfg.Rate = nil
	edit(cfg)
	if p := cfg.Validate(); len(p) > 0 {
		t.Fatalf("test config invalid: %v", p)
	}
	d, err := newDaemon(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Replies.Listen; l != "" {
		if d.feedLn, err = listen(l, 0o660); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx, ln, aln) }()
	var once sync.Once
	a := &alertDaemon{milterAddr: ln.Addr().String(), adminAddr: aln.Addr().String(), d: d}
	a.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon: %v", err)
			}
			d.close()
		})
	}
	t.Cleanup(a.stop)
	return a
}

func (a *alertDaemon) admin() *admin.Client {
	return admin.NewClient("tcp", a.adminAddr, 10*time.Second)
}

func (a *alertDaemon) metrics(t testing.TB) string { return scrapeMetrics(t, a.adminAddr) }

// metric reads one sample of /metrics text, 0 when it is not there.
func metric(text, sample string) float64 {
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

const blockKey = "5.7.1 host hotmail-com.olc.protection.outlook.com[52.101.8.42] said: 550 5.7.1 Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). (in reply to end of DATA command)"

// Each event reaches the receiver once: a flag set twice is one flagged
// alert, the cap pushed past 80% and 100% by milter messages is one alert
// each, five block replies are one blocked alert; nothing more comes after
// the drain at shutdown.
func TestAlertsFireOncePerEvent(t *testing.T) {
	rcv := startAlertReceiver(t)
	feed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := startAlertDaemon(t, zaptest.NewLogger(t), func(c *config.Config) {
		c.Mitigation.Enabled, c.Mitigation.DailyCap = true, 10
		c.Replies.Listen = "inet:" + feed
		c.Alerts.URL = rcv.URL + "/hook"
		c.Alerts.Headers = []string{"Authorization: Bearer test-token"}
	})
	cl := a.admin()
	for range 2 {
		if err := cl.Flag("mallory@example.org", "defer", "phished"); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Unflag("mallory@example.org"); err != nil {
		t.Fatal(err)
	}
	c := dial(t, a.milterAddr)
	accepted := 0
	for i := range 15 {
		r := rcptReplies(t, c, milter.Message{From: "alice@example.org", Rcpts: []string{fmt.Sprintf("r%d@outlook.com", i)}})
		if !r[fmt.Sprintf("r%d@outlook.com", i)].Refused() {
			accepted++
		}
	}
	if accepted != 10 {
		t.Fatalf("%d of 15 accepted under a cap of 10", accepted)
	}
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := socketmap.Lookup(ctx, "tcp", feed, "dsn", blockKey); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	for _, want := range []string{alert.Flagged, alert.Unflagged, alert.CapWarning, alert.CapReached, alert.Blocked} {
		rcv.waitFor(t, want, 1)
	}
	m := a.metrics(t)
	a.stop()

	got := rcv.got()
	var names []string
	for _, ev := range got {
		names = append(names, ev.Event)
		if ev.Time.IsZero() || ev.Time.Location() != time.UTC {
			t.Errorf("%s alert's time %v", ev.Event, ev.Time)
		}
	}
	sort.Strings(names)
	if want := []string{"blocked", "cap_reached", "cap_warning", "flagged", "unflagged"}; !slices.Equal(names, want) {
		t.Fatalf("alerts %q, want each of %q once", names, want)
	}
	for _, ev := range got {
		switch ev.Event {
		case alert.Flagged:
			if ev.Account != "mallory@example.org" || ev.Action != "defer" || ev.Reason != "manual" || ev.Note != "phished" {
				t.Errorf("flagged alert %+v", ev)
			}
		case alert.CapWarning:
			if ev.Percent != 80 || ev.Cap != 10 || ev.Used < 8 || ev.Used > 10 || ev.Window != "1d" {
				t.Errorf("cap warning %+v", ev)
			}
		case alert.CapReached:
			if ev.Percent != 100 || ev.Cap != 10 || ev.Used != 10 {
				t.Errorf("cap reached %+v", ev)
			}
		case alert.Blocked:
			if ev.Class != "block" || ev.Rule != "block_list" || !strings.Contains(ev.Reply, "S3150") || ev.Until.IsZero() {
				t.Errorf("blocked alert %+v", ev)
			}
		}
	}
	for _, h := range rcv.auth {
		if h != "Bearer test-token" {
			t.Errorf("Authorization %q", h)
		}
	}
	for _, want := range []string{
		`msgate_alerts_sent_total{event="flagged"} 1`, `msgate_alerts_sent_total{event="cap_reached"} 1`,
		`msgate_alerts_failed_total{event="flagged"} 0`, `msgate_alerts_dropped_total{event="flagged"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// The command target gets the same JSON on its standard input.
func TestAlertsCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "alerts.jsonl")
	a := startAlertDaemon(t, zaptest.NewLogger(t), func(c *config.Config) {
		c.Alerts.Command = []string{"/bin/sh", "-c", "cat >> " + out}
	})
	if err := a.admin().Flag("mallory@example.org", "reject", ""); err != nil {
		t.Fatal(err)
	}
	a.stop()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var ev alert.Event
	if err := json.Unmarshal(b, &ev); err != nil || ev.Event != alert.Flagged || ev.Action != "reject" || strings.Count(string(b), "\n") != 1 {
		t.Errorf("command read %q (%v)", b, err)
	}
}

// A receiver that is gone (a closed port) or that never answers holds up
// no decision: every milter message and every flag gets its answer, and
// the alerts queued behind the dead receiver are retried, dropped when the
// queue is full, and counted.
func TestAlertsDeadReceiver(t *testing.T) {
	// A flag that waited on its alert would take at least one attempt's
	// timeout (hung) or the backoffs between attempts (closed port): the
	// 20 flags would take 20 of them at the least.
	const wait = 100 * time.Millisecond
	for _, kind := range []string{"closed-port", "hung"} {
		t.Run(kind, func(t *testing.T) {
			url := deadReceiver(t, kind)
			a := startAlertDaemon(t, zap.NewNop(), func(c *config.Config) {
				c.Mitigation.Enabled, c.Mitigation.DailyCap = true, 10
				c.Alerts.URL = url
				c.Alerts.Timeout, c.Alerts.Backoff = config.Duration(wait), config.Duration(wait)
				c.Alerts.Retries, c.Alerts.QueueSize = 2, 2
			})
			cl := a.admin()
			start := time.Now()
			for i := range 20 {
				if err := cl.Flag(fmt.Sprintf("user%d@example.org", i), "defer", ""); err != nil {
					t.Fatal(err)
				}
			}
			flags := time.Since(start)
			if flags >= 20*wait {
				t.Errorf("20 flags took %v: they waited on their alerts", flags)
			}
			c := dial(t, a.milterAddr)
			start = time.Now()
			answered := 0
			for i := range 30 {
				r := rcptReplies(t, c, milter.Message{From: "alice@example.org", Rcpts: []string{fmt.Sprintf("r%d@outlook.com", i)}})
				if _, ok := r[fmt.Sprintf("r%d@outlook.com", i)]; ok {
					answered++
				}
			}
			msgs := time.Since(start)
			if answered != 30 {
				t.Fatalf("%d of 30 recipients answered", answered)
			}
			// The worker gets to its retries in its own time: wait for
			// them to be counted.
			var m string
			var dropped, retried float64
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				m = a.metrics(t)
				dropped, retried = metric(m, `msgate_alerts_dropped_total{event="flagged"}`), metric(m, `msgate_alerts_retried_total{event="flagged"}`)
				if dropped > 0 && retried > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("dropped %v, retried %v flagged alerts after 10s; want both counted", dropped, retried)
				}
			}
			if s := metric(m, `msgate_alerts_sent_total{event="flagged"}`); s != 0 {
				t.Errorf("%v alerts sent to a dead receiver", s)
			}
			t.Logf("%s receiver: 20 flags in %v, 30 messages in %v; alerts dropped %v, retried %v",
				kind, flags.Round(time.Microsecond), msgs.Round(time.Microsecond), dropped, retried)
		})
	}
}

// Waking the cap watch is all a decision does for alerts: no allocation,
// no store read, and no wait when a wake is already pending.
func TestAlertsObserveCostsNothing(t *testing.T) {
	a := &alerter{poke: make(chan struct{}, 1)}
	a.on.Store(true)
	accepted := policy.Decision{Reason: policy.ReasonMessageAccepted}
	capped := policy.Decision{Reason: policy.ReasonDailyCap}
	allocs := make(chan float64, 1)
	go func() {
		allocs <- testing.AllocsPerRun(1000, func() {
			a.observe("end-of-message", accepted)
			a.observe("rcpt", capped)
		})
	}()
	select {
	case n := <-allocs:
		if n != 0 {
			t.Errorf("observe allocates %v times per decision", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("observe waits when a wake is already pending")
	}
	select {
	case <-a.poke:
	default:
		t.Error("a committed message did not wake the cap watch")
	}
	a.observe("rcpt", policy.Decision{Reason: policy.ReasonMessageAccepted})
	a.on.Store(false)
	a.observe("end-of-message", accepted)
	select {
	case <-a.poke:
		t.Error("the cap watch was woken by a recipient accepted, or with alerts off")
	default:
	}
}

// deadReceiver is the URL of a port nobody listens on, or of a server that
// takes the request and never answers.
func deadReceiver(t testing.TB, kind string) string {
	if kind == "closed-port" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr + "/hook"
	}
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); srv.Close() })
	return srv.URL + "/hook"
}

// BenchmarkAlertDecisions measures milter decisions (one session, one
// Microsoft recipient per message, the cap on) while a flag and an unflag
// of another account make two alerts per iteration, with a live receiver,
// a closed port and a receiver that never answers. Compare ns/op across
// the three in one run.
func BenchmarkAlertDecisions(b *testing.B) {
	for _, kind := range []string{"live", "closed-port", "hung"} {
		b.Run(kind, func(b *testing.B) {
			url := ""
			if kind == "live" {
				url = startAlertReceiver(b).URL
			} else {
				url = deadReceiver(b, kind)
			}
			a := startAlertDaemon(b, zap.NewNop(), func(c *config.Config) {
				c.Mitigation.Enabled, c.Mitigation.DailyCap = true, 1<<40
				c.Alerts.URL = url
			})
			cl := a.admin()
			c, err := milter.Dial("tcp", a.milterAddr, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Connect("client.test", "192.0.2.7", 45000); err != nil {
				b.Fatal(err)
			}
			var alertTime time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				t0 := time.Now()
				if err := cl.Flag("mallory@example.org", "defer", ""); err != nil {
					b.Fatal(err)
				}
				if err := cl.Unflag("mallory@example.org"); err != nil {
					b.Fatal(err)
				}
				alertTime += time.Since(t0)
				b.StartTimer()
				rs, err := c.Send(milter.Message{From: "alice@example.org", Rcpts: []string{fmt.Sprintf("r%d@outlook.com", i)}})
				if err != nil || len(rs) == 0 {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			m := a.metrics(b)
			b.ReportMetric(metric(m, `msgate_alerts_dropped_total{event="flagged"}`)+metric(m, `msgate_alerts_dropped_total{event="unflagged"}`), "dropped")
			b.ReportMetric(float64(alertTime.Nanoseconds())/float64(b.N), "flag+unflag-ns/op")
		})
	}
}

// An SNDS import that lists the server's IP alerts once (snds_status
// blocked, and blocked for Microsoft delivery); the same import again
// alerts nothing new.
func TestAlertsSNDS(t *testing.T) {
	rcv := startAlertReceiver(t)
	fake := startFakeSNDS(t)
	fake.serve("data-mixed.csv", "status-blocked.csv")
	a := startAlertDaemon(t, zaptest.NewLogger(t), func(c *config.Config) {
		sndsConfig(fake)(c)
		c.Alerts.URL = rcv.URL
	})
	rcv.waitFor(t, alert.SNDSStatus, 1)
	rcv.waitFor(t, alert.Blocked, 1)
	if err := a.d.snds.importOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.stop()
	statuses := map[string]int{}
	blocked := 0
	for _, ev := range rcv.got() {
		switch ev.Event {
		case alert.SNDSStatus:
			statuses[ev.Status]++
			if ev.Status == "blocked" && !strings.Contains(ev.Reason, "Blocked due to user complaints") {
				t.Errorf("snds blocked alert %+v", ev)
			}
		case alert.Blocked:
			blocked++
			if ev.Rule != "snds" || ev.Class != "block" {
				t.Errorf("blocked alert %+v", ev)
			}
		}
	}
	if statuses["blocked"] != 1 || blocked != 1 {
		t.Errorf("snds statuses %v and %d blocked alerts, want one blocked of each", statuses, blocked)
	}
	for s := range statuses {
		if !slices.Contains([]string{"blocked", "unblocked", "red", "complaints"}, s) {
			t.Errorf("snds status %q", s)
		}
	}
}

// A complaint that flags an account alerts once; a second complaint that
// leaves the flag as it was, and the same report again, alert nothing.
func TestAlertsComplaintFlag(t *testing.T) {
	rcv := startAlertReceiver(t)
	a := startAlertDaemon(t, zaptest.NewLogger(t), func(c *config.Config) {
		withFeedback(c)
		c.Alerts.URL = rcv.URL
	})
	c := dial(t, a.milterAddr)
	rs, err := c.Send(milter.Message{Login: "alice", From: "alice@example.org", Rcpts: []string{"jo@outlook.com"}, QueueID: "4AliceQ1"})
	if err != nil {
		t.Fatal(err)
	}
	eom := rs[len(rs)-1]
	if len(eom.AddedHeaders) != 1 {
		t.Fatalf("end of message added %v, want the stamp", eom.AddedHeaders)
	}
	original := "From: alice@example.org\nSubject: hi\nX-Msgate-Ref: " + eom.AddedHeaders[0][1] + "\n\nbody\n"
	for _, guid := range []string{"g1", "g1", "g2"} {
		if _, err := a.admin().Report(jmrpAround(guid, original)); err != nil {
			t.Fatal(err)
		}
	}
	rcv.waitFor(t, alert.Flagged, 1)
	a.stop()
	got := rcv.got()
	if len(got) != 1 || got[0].Account != "alice" || got[0].Reason != "complaints" || got[0].Complaints != 1 ||
		got[0].Within != "3d" || got[0].Action != "defer" {
		t.Errorf("alerts %+v, want one flagged by 1 complaint within 3d", got)
	}
}

// A reload that changes [alerts] sends what comes next to the new
// receiver only.
func TestAlertsReload(t *testing.T) {
	before, after := startAlertReceiver(t), startAlertReceiver(t)
	a := startAlertDaemon(t, zaptest.NewLogger(t), func(c *config.Config) { c.Alerts.URL = before.URL })
	if err := a.admin().Flag("mallory", "defer", ""); err != nil {
		t.Fatal(err)
	}
	before.waitFor(t, alert.Flagged, 1)
	cfg := *a.d.cfg.Load()
	cfg.Alerts.URL = after.URL
	if err := a.d.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := a.admin().Unflag("mallory"); err != nil {
		t.Fatal(err)
	}
	after.waitFor(t, alert.Unflagged, 1)
	a.stop()
	if n, m := len(before.got()), len(after.got()); n != 1 || m != 1 {
		t.Errorf("%d alerts before the reload's receiver, %d after; want 1 and 1", n, m)
	}
}
