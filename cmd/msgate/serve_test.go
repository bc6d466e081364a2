package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/config"
)

// startDaemon runs msgate serve's daemon on a loopback port with a config
// built from the defaults, and stops it when the test ends.
func startDaemon(t *testing.T, dnsAddr string, edit func(*config.Config)) string {
	t.Helper()
	cfg := config.Default()
	cfg.Microsoft.Resolver = dnsAddr
	cfg.Microsoft.DNSTimeout = config.Duration(300 * time.Millisecond)
	cfg.State.Path = filepath.Join(t.TempDir(), "state.db")
	if edit != nil {
		edit(cfg)
	}
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("test config invalid: %v", problems)
	}
	d, err := newDaemon(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
		d.close()
	})
	return ln.Addr().String()
}

func limit(n int64, action string) func(*config.Config) {
	return func(c *config.Config) {
		c.Rate = []config.Rate{{Name: "hourly", Window: config.Duration(time.Hour), Limit: n, Action: action}}
	}
}

func dial(t *testing.T, addr string) *milter.Client {
	t.Helper()
	// The client's own timeout is far above dns_timeout: a reply that never
	// comes fails the test instead of hanging it.
	c, err := milter.Dial("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect("client.test", "192.0.2.7", 45000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rcptReplies(t *testing.T, c *milter.Client, m milter.Message) map[string]milter.Reply {
	t.Helper()
	rs, err := c.Send(m)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]milter.Reply{}
	for _, r := range rs {
		if r.Stage == "rcpt" {
			out[r.Rcpt] = r
		} else if r.Stage == "end-of-message" && r.Refused() {
			t.Fatalf("message refused at end: %v", r)
		}
	}
	return out
}

func isDefer(r milter.Reply) bool {
	return r.Action == "reply" && r.Code == 451 && strings.HasPrefix(r.Text, "4.7.1 ")
}

func TestServeCountsConsumerAndMXDetectedDomains(t *testing.T) {
	ns := startDNS(t)
	ns.setMX("contoso.test", "contoso-test.mail.protection.outlook.com")
	ns.setMX("example.net", "mx1.example.net")
	addr := startDaemon(t, ns.Addr, limit(2, "defer"))
	c := dial(t, addr)

	got := rcptReplies(t, c, milter.Message{Login: "alice", From: "alice@example.org",
		Rcpts: []string{"a@outlook.com", "b@example.net", "c@contoso.test"}})
	for rcpt, r := range got {
		if r.Refused() {
			t.Errorf("%s refused under the limit: %v", rcpt, r)
		}
	}
	// Both Microsoft recipients were counted: the next one is the third.
	got = rcptReplies(t, c, milter.Message{Login: "alice", From: "alice@example.org",
		Rcpts: []string{"d@contoso.test", "e@example.net"}})
	if r := got["d@contoso.test"]; !isDefer(r) || !strings.Contains(r.Text, "Microsoft") {
		t.Errorf("limit+1 recipient (MX at Microsoft 365) got %v, want 451 4.7.1 with a reason", r)
	}
	if r := got["e@example.net"]; r.Refused() {
		t.Errorf("non-Microsoft recipient in the same message refused: %v", r)
	}
}

func TestServeAbortGivesUnitsBack(t *testing.T) {
	ns := startDNS(t)
	addr := startDaemon(t, ns.Addr, limit(1, "defer"))
	c := dial(t, addr)
	rcptReplies(t, c, milter.Message{Login: "alice", Rcpts: []string{"a@outlook.com"}, AbortAfterRcpt: true})
	if r := rcptReplies(t, c, milter.Message{Login: "alice", Rcpts: []string{"b@outlook.com"}})["b@outlook.com"]; r.Refused() {
		t.Fatalf("unit of the aborted transaction still counted: %v", r)
	}
	if r := rcptReplies(t, c, milter.Message{Login: "alice", Rcpts: []string{"c@outlook.com"}})["c@outlook.com"]; !isDefer(r) {
		t.Fatalf("limit not enforced after abort: %v", r)
	}
}

func TestServe64SessionsAgainstLimit50(t *testing.T) {
	ns := startDNS(t)
	addr := startDaemon(t, ns.Addr, limit(50, "defer"))
	var accepted, deferred atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			c, err := milter.Dial("tcp", addr, 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Connect("client.test", "192.0.2.7", 45000)
			rs, err := c.Send(milter.Message{Login: "mallory", Rcpts: []string{"x@hotmail.com"}})
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range rs {
				if r.Stage != "rcpt" {
					continue
				}
				if isDefer(r) {
					deferred.Add(1)
				} else if !r.Refused() {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if a, d := accepted.Load(), deferred.Load(); a != 50 || d != 14 {
		t.Fatalf("accepted %d, deferred %d; want exactly 50 and 14", a, d)
	}
}

func TestServeDNSTimeoutAppliesOnDNSFailure(t *testing.T) {
	for _, action := range []string{"accept", "defer"} {
		t.Run(action, func(t *testing.T) {
			ns := startDNS(t)
			ns.setHang("slow.test")
			addr := startDaemon(t, ns.Addr, func(c *config.Config) { c.Microsoft.OnDNSFailure = action })
			c := dial(t, addr)
			r := rcptReplies(t, c, milter.Message{Login: "alice", Rcpts: []string{"a@slow.test"}})["a@slow.test"]
			switch action {
			case "accept":
				if r.Refused() {
					t.Errorf("on_dns_failure=accept: %v", r)
				}
			case "defer":
				if !isDefer(r) || strings.Contains(r.Text, "timeout") {
					t.Errorf("on_dns_failure=defer: %v, want 451 4.7.1 without internals", r)
				}
			}
		})
	}
}
