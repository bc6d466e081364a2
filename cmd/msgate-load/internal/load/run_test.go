package load

import (
	"context"
	"errors"
	"net"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/msgate/msgate/cmd/msgate-load/internal/nullmilter"
)

// serve runs a go-milter server on loopback for the test.
func serve(t *testing.T, srv *gomilter.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return "inet:" + ln.Addr().String()
}

func testConfig(milter string) Config {
	cfg := DefaultConfig()
	cfg.Milter = milter
	cfg.Sessions, cfg.Messages, cfg.Warmup = 4, 400, 40
	cfg.RcptsMin, cfg.RcptsMax = 2, 2
	cfg.Duration, cfg.Timeout = time.Minute, 10*time.Second
	return cfg
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestRunNull(t *testing.T) {
	for _, tc := range []struct {
		mode       nullmilter.Mode
		roundTrips float64
		skipped    string
	}{
		// MAIL, 2 RCPT, 5 headers, end of headers, 1 body chunk, end of message.
		{nullmilter.ModeFull, 11, "data"},
		// MAIL, 2 RCPT, end of message.
		{nullmilter.ModeEnvelope, 4, "helo data header end-of-header body"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			cfg := testConfig(serve(t, nullmilter.NewServer(tc.mode)))
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Completed != 400 || rep.Recipients != 800 || rep.Errors != 0 || rep.Stopped != "" {
				t.Errorf("completed %d, recipients %d, errors %d, stopped %q", rep.Completed, rep.Recipients, rep.Errors, rep.Stopped)
			}
			if rep.Outcomes["accept"] != 800 || len(rep.Outcomes) != 1 {
				t.Errorf("outcomes %v, want 800 accepts", rep.Outcomes)
			}
			if ms, other := sum(rep.OutcomesByClass[ClassMicrosoft]), sum(rep.OutcomesByClass[ClassOther]); ms+other != 800 || ms < 200 || other < 200 {
				t.Errorf("%d Microsoft and %d other recipients: want about half each", ms, other)
			}
			if rep.RoundTrips != tc.roundTrips {
				t.Errorf("%v round trips per message, want %v", rep.RoundTrips, tc.roundTrips)
			}
			if got := strings.Join(rep.Negotiated.Skipped, " "); got != tc.skipped {
				t.Errorf("stages skipped %q, want %q", got, tc.skipped)
			}
			if rep.Rate <= 0 || rep.Latency.P50 <= 0 || rep.Latency.P99 < rep.Latency.P50 || rep.Latency.Max < rep.Latency.P99 {
				t.Errorf("rate %v, latency %+v", rep.Rate, rep.Latency)
			}
		})
	}
}

// policyMilter refuses Microsoft recipients with a custom 451 and stamps
// the rest at end of message, as msgate past a limit would; it counts what
// it saw.
type policyMilter struct {
	gomilter.NoOpMilter
	mails, authenticated, withClientAddr *atomic.Int64
	failAfter                            int64 // close the connection at the MAIL after this many (0: never)
}

func (p policyMilter) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	if m.Macros["{client_addr}"] == addr.String() && m.Macros["{daemon_name}"] != "" {
		p.withClientAddr.Add(1)
	}
	return gomilter.RespContinue, nil
}

func (p policyMilter) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	n := p.mails.Add(1)
	if p.failAfter > 0 && n > p.failAfter {
		return nil, errors.New("test failure")
	}
	if m.Macros["{auth_authen}"] == from && m.Macros["i"] != "" {
		p.authenticated.Add(1)
	}
	return gomilter.RespContinue, nil
}

func (p policyMilter) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	if d := rcpt[strings.LastIndexByte(rcpt, '@')+1:]; d == "outlook.com" || d == "hotmail.com" || d == "live.com" || d == "msn.com" ||
		d == "hotmail.co.uk" || d == "outlook.fr" {
		return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), "451 4.7.1 Try again later"), nil
	}
	return gomilter.RespContinue, nil
}

func (p policyMilter) Headers(textproto.MIMEHeader, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (p policyMilter) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	if err := m.AddHeader("X-Msgate-Ref", "v1.test"); err != nil {
		return nil, err
	}
	return gomilter.RespContinue, nil
}

func newPolicyServer(failAfter int64) (*gomilter.Server, *policyMilter) {
	p := &policyMilter{mails: new(atomic.Int64), authenticated: new(atomic.Int64), withClientAddr: new(atomic.Int64), failAfter: failAfter}
	return &gomilter.Server{
		NewMilter: func() gomilter.Milter { return *p },
		Actions:   gomilter.OptAddHeader,
		Protocol:  nullmilter.ModeEnvelope.Protocol(),
	}, p
}

func TestRunOutcomes(t *testing.T) {
	srv, p := newPolicyServer(0)
	cfg := testConfig(serve(t, srv))
	cfg.AuthFraction = 1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ms, other := rep.OutcomesByClass[ClassMicrosoft], rep.OutcomesByClass[ClassOther]
	if len(ms) != 1 || ms["reply-4xx"] == 0 {
		t.Errorf("Microsoft recipients %v: want only reply-4xx", ms)
	}
	if len(other) != 1 || other["continue"] == 0 {
		t.Errorf("other recipients %v: want only continue", other)
	}
	if ms["reply-4xx"]+other["continue"] != rep.Recipients {
		t.Errorf("%v + %v != %d recipients", ms, other, rep.Recipients)
	}
	// A message whose recipients were all refused is aborted; every other
	// one reaches end of message and is stamped.
	if rep.Aborted == 0 || rep.Aborted+rep.Modifications.AddHeader != rep.Completed {
		t.Errorf("%d aborted + %d stamped != %d completed", rep.Aborted, rep.Modifications.AddHeader, rep.Completed)
	}
	if got := p.authenticated.Load(); got != 440 {
		t.Errorf("%d MAIL with {auth_authen} and i, want all 440 (warm-up included)", got)
	}
	if got := p.withClientAddr.Load(); got != 4 {
		t.Errorf("%d connects with {client_addr} and {daemon_name}, want 4", got)
	}
}

func TestRunUnauthenticated(t *testing.T) {
	srv, p := newPolicyServer(0)
	cfg := testConfig(serve(t, srv))
	cfg.AuthFraction = 0
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := p.authenticated.Load(); got != 0 {
		t.Errorf("%d MAIL with {auth_authen}, want none", got)
	}
}

// A milter that drops connections fails the run: a report with the errors
// and an error wrapping ErrMilter.
func TestRunMilterFails(t *testing.T) {
	srv, _ := newPolicyServer(100)
	cfg := testConfig(serve(t, srv))
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrMilter) {
		t.Fatalf("Run: %v, want ErrMilter", err)
	}
	if rep == nil || rep.Errors == 0 || rep.Stopped != "error" || len(rep.ErrorSamples) == 0 {
		t.Fatalf("report %+v: want errors and stopped=error", rep)
	}
	if rep.Completed >= cfg.Messages {
		t.Errorf("%d messages completed after the failure", rep.Completed)
	}
}

type slowMilter struct{ gomilter.NoOpMilter }

func (slowMilter) RcptTo(string, *gomilter.Modifier) (gomilter.Response, error) {
	time.Sleep(20 * time.Millisecond)
	return gomilter.RespContinue, nil
}

func TestRunDurationCap(t *testing.T) {
	cfg := testConfig(serve(t, &gomilter.Server{NewMilter: func() gomilter.Milter { return slowMilter{} }}))
	cfg.Sessions, cfg.Messages, cfg.Warmup = 2, 1_000_000, 0
	cfg.Duration = 300 * time.Millisecond
	start := time.Now()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != "duration" || rep.Completed == 0 || rep.Completed >= cfg.Messages || rep.Errors != 0 {
		t.Errorf("stopped %q, %d completed, %d errors: want a run cut short by the cap", rep.Stopped, rep.Completed, rep.Errors)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the run took %v with a 300ms cap", took)
	}
}

func TestRunNoMilter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rep, err := Run(context.Background(), testConfig("inet:"+addr))
	if err == nil || rep != nil || !strings.Contains(err.Error(), "4 of 4 failed") {
		t.Fatalf("Run = %v, %v: want an error and no report", rep, err)
	}
}

func TestRunUnixSocket(t *testing.T) {
	path := t.TempDir() + "/null.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := nullmilter.NewServer(nullmilter.ModeEnvelope)
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })

	cfg := testConfig("unix:" + path)
	cfg.Sessions, cfg.Messages = 2, 50
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 50 || rep.Errors != 0 {
		t.Errorf("completed %d, errors %d", rep.Completed, rep.Errors)
	}
}

// With Reconnect every message comes on a connection of its own, opened
// and negotiated as at the start: one milter session per message, plus the
// ones opened first, each with its connect stage.
func TestRunReconnect(t *testing.T) {
	srv, p := newPolicyServer(0)
	var opened atomic.Int64
	newMilter := srv.NewMilter
	srv.NewMilter = func() gomilter.Milter { opened.Add(1); return newMilter() }
	cfg := testConfig(serve(t, srv))
	cfg.Reconnect = true
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 400 || rep.Errors != 0 || !rep.Reconnect {
		t.Errorf("completed %d, errors %d, reconnect %v", rep.Completed, rep.Errors, rep.Reconnect)
	}
	want := int64(cfg.Sessions + cfg.Warmup + cfg.Messages)
	if n := opened.Load(); n != want {
		t.Errorf("%d milter sessions, want %d", n, want)
	}
	if n := p.withClientAddr.Load(); n != want {
		t.Errorf("%d connect stages with the client's macros, want %d", n, want)
	}
	if rep.RoundTrips < 4 {
		t.Errorf("%v round trips per message: the negotiation and connect are missing", rep.RoundTrips)
	}
}
