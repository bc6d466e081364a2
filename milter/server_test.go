package milter_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/detect"
	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/memory"
)

// fakeDetector classifies by a fixed table; "dnsfail.test" fails.
type fakeDetector struct{}

var _ policy.Detector = fakeDetector{}

var errDNS = errors.New("detect: MX lookup failed: timeout")

func (fakeDetector) Detect(_ context.Context, domain string, _ time.Time) (detect.Result, error) {
	switch domain {
	case "outlook.com", "hotmail.fr":
		return detect.Result{Microsoft: true, Group: detect.GroupConsumer}, nil
	case "contoso.test":
		return detect.Result{Microsoft: true, Group: detect.GroupM365}, nil
	case "dnsfail.test":
		return detect.Result{}, errDNS
	}
	return detect.Result{}, nil
}

type fixture struct {
	t     *testing.T
	srv   *milter.Server
	store *memory.Store
	addr  string
	now   time.Time
}

func start(t *testing.T, cfg policy.Config) *fixture {
	t.Helper()
	f := &fixture{t: t, store: memory.New(), now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	eng := policy.NewEngine(cfg, fakeDetector{}, f.store)
	f.srv = milter.NewServer(milter.Options{
		Policy:      eng,
		Now:         func() time.Time { return f.now },
		IdleTimeout: time.Minute,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, milter.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return f
}

func (f *fixture) dial(port uint16) *milter.Client {
	f.t.Helper()
	c, err := milter.Dial("tcp", f.addr, 5*time.Second)
	if err != nil {
		f.t.Fatalf("Dial: %v", err)
	}
	if _, err := c.Connect("client.test", "192.0.2.10", port); err != nil {
		f.t.Fatalf("Connect: %v", err)
	}
	return c
}

func (f *fixture) send(c *milter.Client, m milter.Message) []milter.Reply {
	f.t.Helper()
	r, err := c.Send(m)
	if err != nil {
		f.t.Fatalf("Send: %v", err)
	}
	return r
}

func (f *fixture) usage(key string, window time.Duration) state.Usage {
	f.t.Helper()
	u, err := f.store.Usage(context.Background(), key, window, f.now)
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

// waitIdle waits until the server has no connection left, so that the
// units of dropped sessions have been given back.
func (f *fixture) waitIdle() {
	f.t.Helper()
	for i := 0; f.srv.Active() > 0; i++ {
		if i > 1000 {
			f.t.Fatalf("%d milter connections still open", f.srv.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hourly(limit int64) policy.Config {
	return policy.Config{Rules: []policy.Rule{{Name: "hourly", Window: time.Hour, Limit: limit, Action: policy.RuleDefer}}}
}

func rcptReplies(rs []milter.Reply) map[string]milter.Reply {
	m := map[string]milter.Reply{}
	for _, r := range rs {
		if r.Stage == "rcpt" {
			m[r.Rcpt] = r
		}
	}
	return m
}

func TestLimitDefersOnlyMicrosoftExcess(t *testing.T) {
	f := start(t, hourly(2))
	c := f.dial(40000)
	defer c.Close()
	rs := f.send(c, milter.Message{Login: "alice", From: "alice@example.org",
		Rcpts: []string{"a@outlook.com", "b@example.net", "c@contoso.test", "d@hotmail.fr", "e@example.net"}})
	got := rcptReplies(rs)
	for _, ok := range []string{"a@outlook.com", "b@example.net", "c@contoso.test", "e@example.net"} {
		if got[ok].Refused() {
			t.Errorf("%s refused: %v", ok, got[ok])
		}
	}
	over := got["d@hotmail.fr"]
	if over.Action != "reply" || over.Code != 451 || !strings.HasPrefix(over.Text, "4.7.1 ") ||
		!strings.Contains(over.Text, "too much mail to Microsoft") {
		t.Errorf("limit+1 Microsoft recipient got %v, want 451 4.7.1 with a plain reason", over)
	}
	if eom := rs[len(rs)-1]; eom.Stage != "end-of-message" || eom.Refused() {
		t.Errorf("end of message: %v, want accepted", eom)
	}
	if u := f.usage("rate/hourly/alice", time.Hour); u != (state.Usage{Committed: 2}) {
		t.Errorf("alice's usage = %+v, want 2 committed", u)
	}
	// Another account is untouched.
	rs = f.send(c, milter.Message{Login: "bob", From: "bob@example.org", Rcpts: []string{"x@outlook.com"}})
	if r := rcptReplies(rs)["x@outlook.com"]; r.Refused() {
		t.Errorf("bob refused because of alice: %v", r)
	}
}

func TestAccountFallsBackToSenderAndIgnoresNullSender(t *testing.T) {
	f := start(t, hourly(1))
	c := f.dial(40000)
	defer c.Close()
	f.send(c, milter.Message{From: "Carol@Example.ORG", Rcpts: []string{"a@outlook.com"}})
	if u := f.usage("rate/hourly/carol@example.org", time.Hour); u.Committed != 1 {
		t.Errorf("sender account usage = %+v, want 1 committed (lower-cased sender)", u)
	}
	for range 3 {
		rs := f.send(c, milter.Message{From: "", Rcpts: []string{"a@outlook.com"}})
		if r := rcptReplies(rs)["a@outlook.com"]; r.Refused() {
			t.Fatalf("bounce (null sender) refused: %v", r)
		}
	}
}

func TestAbortGivesUnitsBack(t *testing.T) {
	f := start(t, hourly(2))
	c := f.dial(40000)
	defer c.Close()
	f.send(c, milter.Message{Login: "alice", Rcpts: []string{"a@outlook.com", "b@outlook.com"}, AbortAfterRcpt: true})
	// The abort is handled before the next command is answered.
	rs := f.send(c, milter.Message{Login: "alice", Rcpts: []string{"c@outlook.com", "d@outlook.com"}})
	for _, r := range rcptReplies(rs) {
		if r.Refused() {
			t.Errorf("after an aborted transaction %v: its units were not given back", r)
		}
	}
	if u := f.usage("rate/hourly/alice", time.Hour); u != (state.Usage{Committed: 2}) {
		t.Errorf("usage = %+v, want exactly the 2 delivered units", u)
	}
}

func TestNewMailWithoutEndGivesUnitsBack(t *testing.T) {
	f := start(t, hourly(1))
	raw := dialRaw(t, f.addr)
	raw.mailRcpt(t, "alice", "a@outlook.com")
	// The MTA starts a new transaction without ending the first one.
	if act := raw.mailRcpt(t, "alice", "b@outlook.com"); act != 'c' {
		t.Fatalf("second transaction's recipient answered %q: the first one's unit was not given back", act)
	}
	if act := raw.endOfMessage(t); act != 'c' {
		t.Fatalf("end of message answered %q", act)
	}
	if u := f.usage("rate/hourly/alice", time.Hour); u != (state.Usage{Committed: 1}) {
		t.Fatalf("usage = %+v, want 1 committed", u)
	}
}

func TestDroppedSessionGivesUnitsBack(t *testing.T) {
	f := start(t, hourly(1))
	raw := dialRaw(t, f.addr)
	if act := raw.mailRcpt(t, "alice", "a@outlook.com"); act != 'c' {
		t.Fatalf("rcpt answered %q", act)
	}
	if u := f.usage("rate/hourly/alice", time.Hour); u != (state.Usage{Reserved: 1}) {
		t.Fatalf("usage during the transaction = %+v, want 1 reserved", u)
	}
	raw.conn.Close()
	f.waitIdle()
	if u := f.usage("rate/hourly/alice", time.Hour); u != (state.Usage{}) {
		t.Fatalf("usage after the session dropped = %+v, want nothing held", u)
	}
}

func TestSessionKeepsConnectDataAcrossMessages(t *testing.T) {
	f := start(t, hourly(100))
	c := f.dial(0) // non-SMTP: port 0
	defer c.Close()
	for i := range 3 {
		rs := f.send(c, milter.Message{From: "daemon@example.org", Rcpts: []string{"a@outlook.com"}})
		if eom := rs[len(rs)-1]; eom.Refused() {
			t.Fatalf("message %d: %v", i, eom)
		}
	}
	if u := f.usage("rate/hourly/daemon@example.org", time.Hour); u.Committed != 3 {
		t.Errorf("usage = %+v, want 3", u)
	}
}

func TestNonSMTPDefersWholeMessage(t *testing.T) {
	f := start(t, hourly(1))
	c := f.dial(0)
	defer c.Close()
	f.send(c, milter.Message{From: "cron@example.org", Rcpts: []string{"a@outlook.com"}})
	rs := f.send(c, milter.Message{From: "cron@example.org", Rcpts: []string{"b@example.net", "c@outlook.com"}})
	for _, r := range rcptReplies(rs) {
		if r.Refused() {
			t.Errorf("non-SMTP recipient refused at RCPT (Postfix refuses that): %v", r)
		}
	}
	eom := rs[len(rs)-1]
	if eom.Stage != "end-of-message" || eom.Code != 451 || !strings.HasPrefix(eom.Text, "4.7.1") {
		t.Fatalf("end of message: %v, want the whole message deferred with 451 4.7.1", eom)
	}
	if u := f.usage("rate/hourly/cron@example.org", time.Hour); u != (state.Usage{Committed: 1}) {
		t.Errorf("usage = %+v, want only the first message's unit", u)
	}
}

func TestDNSFailureAction(t *testing.T) {
	for _, tt := range []struct {
		deferOn bool
		refused bool
	}{{false, false}, {true, true}} {
		cfg := hourly(10)
		cfg.DeferOnDNSFailure = tt.deferOn
		f := start(t, cfg)
		c := f.dial(40000)
		rs := f.send(c, milter.Message{Login: "alice", Rcpts: []string{"a@dnsfail.test", "b@example.net"}})
		got := rcptReplies(rs)
		if r := got["a@dnsfail.test"]; r.Refused() != tt.refused {
			t.Errorf("defer on DNS failure=%v: %v", tt.deferOn, r)
		}
		if r := got["b@example.net"]; r.Refused() {
			t.Errorf("other recipient refused: %v", r)
		}
		c.Close()
	}
}

func TestConcurrentSessionsNeverExceedLimit(t *testing.T) {
	const sessions, limit = 64, 50
	f := start(t, hourly(limit))
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			c := f.dial(uint16(40000 + i))
			defer c.Close()
			rs := f.send(c, milter.Message{Login: "shared", Rcpts: []string{"a@outlook.com"}})
			if r := rcptReplies(rs)["a@outlook.com"]; !r.Refused() {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if got := accepted.Load(); got != limit {
		t.Fatalf("%d sessions got through, want exactly %d", got, limit)
	}
	if u := f.usage("rate/hourly/shared", time.Hour); u != (state.Usage{Committed: limit}) {
		t.Errorf("usage = %+v", u)
	}
}

func TestMalformedPacketsChangeNothing(t *testing.T) {
	f := start(t, hourly(1))
	for _, junk := range [][]byte{
		{0, 0, 0, 0},                  // zero length
		{0xff, 0xff, 0xff, 0xff, 'O'}, // too long
		{0, 0, 0, 2, 'Z', 0},          // unknown command
		{0, 0, 0, 1, 'C'},             // connect without data
		{0, 0, 0, 1, 'D'},             // macro without data
		{0, 0, 0, 5, 'R', 'a', '@'},   // truncated
	} {
		conn, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(junk)
		// A truncated packet is followed by the peer going away.
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		for {
			if _, err := conn.Read(buf); err != nil {
				break
			}
		}
		conn.Close()
	}
	f.waitIdle()
	c := f.dial(40000)
	defer c.Close()
	rs := f.send(c, milter.Message{Login: "alice", Rcpts: []string{"a@outlook.com"}})
	if r := rcptReplies(rs)["a@outlook.com"]; r.Refused() {
		t.Fatalf("server state disturbed by junk: %v", r)
	}
}

func TestShutdownClosesIdleSessionsAndFinishesMessages(t *testing.T) {
	f := start(t, hourly(10))
	idle := f.dial(40000)
	defer idle.Close()
	f.send(idle, milter.Message{Login: "alice", Rcpts: []string{"a@outlook.com"}})

	raw := dialRaw(t, f.addr)
	raw.mailRcpt(t, "bob", "b@outlook.com") // bob is inside a message

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- f.srv.Shutdown(ctx)
	}()
	// bob's message can still end, and gets an answer.
	if act := raw.endOfMessage(t); act != 'c' {
		t.Fatalf("end of message during shutdown answered %q, want continue", act)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if u := f.usage("rate/hourly/bob", time.Hour); u.Committed != 1 {
		t.Errorf("bob's finished message not counted: %+v", u)
	}
}

func TestShutdownDeadlineReleasesUnits(t *testing.T) {
	f := start(t, hourly(10))
	raw := dialRaw(t, f.addr)
	raw.mailRcpt(t, "bob", "b@outlook.com")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := f.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if u := f.usage("rate/hourly/bob", time.Hour); u != (state.Usage{}) {
		t.Errorf("units of a session closed at the deadline still held: %+v", u)
	}
}

// serveWithIdleTimeout starts a server with an idle timeout (and an hourly
// limit of 100) and returns its address.
func serveWithIdleTimeout(t *testing.T, idle time.Duration) string {
	t.Helper()
	srv := milter.NewServer(milter.Options{
		Policy:      policy.NewEngine(hourly(100), fakeDetector{}, memory.New()),
		IdleTimeout: idle,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// The idle timeout drops sessions that are idle between messages, never
// one inside a message: the MTA is silent while its client uploads DATA.
func TestIdleTimeoutOnlyBetweenMessages(t *testing.T) {
	raw := dialRaw(t, serveWithIdleTimeout(t, 100*time.Millisecond))
	raw.mailRcpt(t, "alice", "a@outlook.com")
	time.Sleep(300 * time.Millisecond) // longer than the idle timeout
	if act := raw.endOfMessage(t); act != 'c' {
		t.Fatalf("end of message after a pause inside the message: %q", act)
	}
	// Between messages the idle timeout applies.
	raw.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("an idle session between messages was not closed")
	}
}

// A session that keeps talking between messages, each pause shorter than
// the idle timeout, is never dropped: a read deadline that stands for a
// while (to spare a timer update per packet) must still follow the last
// packet.
func TestIdleTimeoutFollowsTheLastPacket(t *testing.T) {
	raw := dialRaw(t, serveWithIdleTimeout(t, 300*time.Millisecond))
	// Between messages: HELO after HELO, each two thirds of the timeout
	// after the last, for four times the timeout.
	for i := range 6 {
		time.Sleep(200 * time.Millisecond)
		raw.write(t, 'H', []byte("client.test\x00"))
		if code, _ := raw.read(t); code != 'c' {
			t.Fatalf("HELO %d answered %q", i, code)
		}
	}
	if code := raw.mailRcpt(t, "alice", "a@outlook.com"); code != 'c' {
		t.Fatalf("RCPT answered %q", code)
	}
	if code := raw.endOfMessage(t); code != 'c' {
		t.Fatalf("end of message answered %q", code)
	}
}
