package policy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/detect"
	"github.com/msgate/msgate/policy/feedback/stamp"
	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/memory"
)

type fakeDetector struct{}

func (fakeDetector) Detect(_ context.Context, domain string, _ time.Time) (detect.Result, error) {
	switch domain {
	case "outlook.com", "hotmail.com":
		return detect.Result{Microsoft: true, Group: detect.GroupConsumer}, nil
	case "broken.test":
		return detect.Result{}, detect.ErrLookup
	}
	return detect.Result{}, nil
}

// failingStore fails every call, as a dead backend does.
type failingStore struct{}

var _ state.Store = failingStore{}

var errDown = errors.Join(state.ErrUnavailable, errors.New("disk gone"))

func (failingStore) Reserve(context.Context, []state.Counter, time.Time) (state.Outcome, error) {
	return state.Outcome{}, errDown
}
func (failingStore) ReserveSpare(context.Context, []state.Counter, int, int, time.Time) (state.Outcome, error) {
	return state.Outcome{}, errDown
}
func (failingStore) Commit(context.Context, state.Reservation, time.Time) error      { return errDown }
func (failingStore) CommitAll(context.Context, []state.Reservation, time.Time) error { return errDown }
func (failingStore) Release(context.Context, state.Reservation) error                { return errDown }
func (failingStore) Usage(context.Context, string, time.Duration, time.Time) (state.Usage, error) {
	return state.Usage{}, errDown
}
func (failingStore) Scan(context.Context, string, time.Time) ([]state.KeyUsage, error) {
	return nil, errDown
}
func (failingStore) Expire(context.Context, time.Time) error         { return errDown }
func (failingStore) SetFlag(context.Context, state.Flag) error       { return errDown }
func (failingStore) ClearFlag(context.Context, string) (bool, error) { return false, errDown }
func (failingStore) GetFlag(context.Context, string) (state.Flag, bool, error) {
	return state.Flag{}, false, errDown
}
func (failingStore) ListFlags(context.Context) ([]state.Flag, error) { return nil, errDown }
func (failingStore) Account(context.Context, string, time.Time) (state.Flag, bool, []state.Complaint, error) {
	return state.Flag{}, false, nil, errDown
}
func (failingStore) AddComplaint(context.Context, state.Complaint) (bool, error) {
	return false, errDown
}
func (failingStore) ComplaintsSince(context.Context, string, time.Time) ([]state.Complaint, error) {
	return nil, errDown
}
func (failingStore) ComplainedSince(context.Context, time.Time) ([]state.Complaint, error) {
	return nil, errDown
}
func (failingStore) ForgetComplaints(context.Context, time.Time) error         { return errDown }
func (failingStore) Remember(context.Context, string, string, time.Time) error { return errDown }
func (failingStore) Attribute(context.Context, string) (string, time.Time, bool, error) {
	return "", time.Time{}, false, errDown
}
func (failingStore) ForgetAttributions(context.Context, time.Time) error { return errDown }
func (failingStore) Close() error                                        { return nil }

// commitFailingStore admits but cannot make units durable.
type commitFailingStore struct{ *memory.Store }

func (commitFailingStore) CommitAll(context.Context, []state.Reservation, time.Time) error {
	return errDown
}

var (
	t0  = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	ctx = context.Background()
)

func hourly(n int64) policy.Rule {
	return policy.Rule{Name: "hourly", Window: time.Hour, Limit: n, Action: policy.RuleDefer}
}

func capOf(n int64, a policy.CapAction) policy.Cap {
	return policy.Cap{Enabled: true, Daily: n, Window: 24 * time.Hour, Action: a}
}

// send runs one SMTP transaction and returns the RCPT decisions and the end
// of message decision.
func send(e *policy.Engine, login string, rcpts ...string) ([]policy.Decision, policy.Decision) {
	tx := e.Begin(policy.Envelope{SASLLogin: login, Sender: login + "@example.org", ClientIP: "192.0.2.1"})
	var ds []policy.Decision
	for _, r := range rcpts {
		ds = append(ds, e.Recipient(ctx, tx, r, t0))
	}
	return ds, e.EndOfMessage(ctx, tx, t0)
}

func usage(t *testing.T, s state.Store, key string, window time.Duration) int64 {
	t.Helper()
	u, err := s.Usage(ctx, key, window, t0)
	if err != nil {
		t.Fatal(err)
	}
	return u.Committed + u.Reserved
}

func TestCapRefusalConsumesNoAccountBudget(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(10)}, Cap: capOf(2, policy.CapDefer)}, fakeDetector{}, s)
	ds, _ := send(e, "alice", "a@outlook.com", "b@outlook.com", "c@outlook.com")
	if ds[2].Verdict != policy.Defer || ds[2].Reason != policy.ReasonDailyCap || ds[2].Reply != policy.ReplyCapDefer {
		t.Fatalf("third unit: %+v, want deferred by the cap", ds[2])
	}
	if got := usage(t, s, "rate/hourly/alice", time.Hour); got != 2 {
		t.Errorf("alice's budget used %d, want 2: the unit the cap refused must not count", got)
	}
}

func TestAccountRefusalConsumesNoCap(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(1)}, Cap: capOf(100, policy.CapDefer)}, fakeDetector{}, s)
	ds, _ := send(e, "alice", "a@outlook.com", "b@outlook.com")
	if ds[1].Reason != policy.ReasonRateLimit || ds[1].Rule != "hourly" {
		t.Fatalf("second unit: %+v, want refused by the hourly rule", ds[1])
	}
	if got := usage(t, s, "cap", 24*time.Hour); got != 1 {
		t.Errorf("cap used %d, want 1", got)
	}
}

func TestStrictestActionWins(t *testing.T) {
	s := memory.New()
	rules := []policy.Rule{hourly(1), {Name: "strict", Window: time.Hour, Limit: 1, Action: policy.RuleReject}}
	e := policy.NewEngine(policy.Config{Rules: rules}, fakeDetector{}, s)
	ds, _ := send(e, "alice", "a@outlook.com", "b@outlook.com")
	if ds[1].Verdict != policy.Reject || ds[1].Rule != "strict" || ds[1].Reply.Code != 550 {
		t.Fatalf("got %+v, want the reject rule to decide", ds[1])
	}
}

func TestExemptCountsOnlyAgainstCap(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(1)}, Exempt: []string{"Backup"}, Cap: capOf(3, policy.CapDefer)}, fakeDetector{}, s)
	ds, _ := send(e, "backup", "a@outlook.com", "b@outlook.com", "c@outlook.com", "d@outlook.com")
	for i, d := range ds[:3] {
		if d.Verdict != policy.Accept || d.Reason != policy.ReasonExempt {
			t.Errorf("unit %d: %+v, want accepted as exempt", i, d)
		}
	}
	if ds[3].Reason != policy.ReasonDailyCap {
		t.Errorf("exempt account went past the server cap: %+v", ds[3])
	}
}

func TestCapHoldHoldsWholeMessageUncounted(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Cap: capOf(1, policy.CapHold)}, fakeDetector{}, s)
	send(e, "alice", "a@outlook.com")
	ds, eom := send(e, "alice", "b@example.net", "c@outlook.com")
	for _, d := range ds {
		if d.Verdict != policy.Accept {
			t.Errorf("recipient refused under hold: %+v", d)
		}
	}
	if eom.Verdict != policy.Hold || eom.Reply.Text == "" {
		t.Fatalf("end of message: %+v, want hold with a reason", eom)
	}
	if got := usage(t, s, "cap", 24*time.Hour); got != 1 {
		t.Errorf("cap used %d, want 1: held mail is not counted", got)
	}
}

func TestMonitorPassesAndSaysSo(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Cap: capOf(1, policy.CapMonitor),
		Rules: []policy.Rule{{Name: "watch", Window: time.Hour, Limit: 1, Action: policy.RuleMonitor}}}, fakeDetector{}, s)
	ds, eom := send(e, "alice", "a@outlook.com", "b@outlook.com")
	if ds[0].Monitor {
		t.Errorf("first unit flagged as over: %+v", ds[0])
	}
	if ds[1].Verdict != policy.Accept || !ds[1].Monitor {
		t.Errorf("second unit: %+v, want accepted and flagged would-have-acted", ds[1])
	}
	if eom.Verdict != policy.Accept {
		t.Errorf("end of message: %+v", eom)
	}
}

func TestNullSenderAndNonMicrosoftCountNothing(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(1)}, Cap: capOf(1, policy.CapReject)}, fakeDetector{}, s)
	tx := e.Begin(policy.Envelope{NullSender: true, ClientIP: "192.0.2.1"})
	for range 3 {
		if d := e.Recipient(ctx, tx, "a@outlook.com", t0); d.Verdict != policy.Accept || d.Reason != policy.ReasonNullSender {
			t.Fatalf("bounce: %+v", d)
		}
	}
	e.EndOfMessage(ctx, tx, t0)
	ds, _ := send(e, "alice", "x@example.net", "y@example.net")
	for _, d := range ds {
		if d.Verdict != policy.Accept || d.Microsoft {
			t.Errorf("non-Microsoft recipient: %+v", d)
		}
	}
	if got := usage(t, s, "cap", 24*time.Hour); got != 0 {
		t.Errorf("cap used %d, want 0", got)
	}
}

func TestDuplicateRecipientCountsOnce(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(1)}}, fakeDetector{}, s)
	ds, _ := send(e, "alice", "a@outlook.com", "A@Outlook.com")
	if ds[1].Verdict != policy.Accept || ds[1].Reason != policy.ReasonDuplicate {
		t.Fatalf("duplicate: %+v", ds[1])
	}
}

// Past the short list a transaction keeps, duplicates are still found.
func TestDuplicatesAmongManyRecipients(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(100)}}, fakeDetector{}, s)
	var rcpts []string
	for i := range 40 {
		rcpts = append(rcpts, fmt.Sprintf("r%d@outlook.com", i))
	}
	for i := range 40 {
		rcpts = append(rcpts, fmt.Sprintf("R%d@OUTLOOK.com", i))
	}
	ds, _ := send(e, "alice", rcpts...)
	for i, d := range ds {
		if dup := d.Reason == policy.ReasonDuplicate; dup != (i >= 40) {
			t.Errorf("recipient %d %s: %s", i, rcpts[i], d.Reason)
		}
	}
	if got := usage(t, s, "rate/hourly/alice", time.Hour); got != 40 {
		t.Errorf("alice used %d, want 40", got)
	}
}

func TestStateFailure(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(10)}, AcceptOnStateFailure: failOpen}, fakeDetector{}, failingStore{})
		ds, _ := send(e, "alice", "a@outlook.com")
		d := ds[0]
		if d.Reason != policy.ReasonStateFailure || !errors.Is(d.Err, state.ErrUnavailable) {
			t.Errorf("fail open %v: %+v", failOpen, d)
		}
		if want := map[bool]policy.Verdict{false: policy.Defer, true: policy.Accept}[failOpen]; d.Verdict != want {
			t.Errorf("fail open %v: verdict %v, want %v", failOpen, d.Verdict, want)
		}
		if d.Reply.Code != 0 && d.Reply != policy.ReplyStateDefer {
			t.Errorf("reply leaks internals: %v", d.Reply)
		}
	}
}

func TestCommitFailureDefersMessage(t *testing.T) {
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(10)}}, fakeDetector{}, commitFailingStore{memory.New()})
	_, eom := send(e, "alice", "a@outlook.com")
	if eom.Verdict != policy.Defer || eom.Reason != policy.ReasonStateFailure {
		t.Fatalf("end of message with a failed commit: %+v, want deferred", eom)
	}
}

func TestDNSFailure(t *testing.T) {
	for _, deferOn := range []bool{false, true} {
		e := policy.NewEngine(policy.Config{DeferOnDNSFailure: deferOn}, fakeDetector{}, memory.New())
		ds, _ := send(e, "alice", "a@broken.test")
		want := map[bool]policy.Verdict{false: policy.Accept, true: policy.Defer}[deferOn]
		if ds[0].Verdict != want || ds[0].Reason != policy.ReasonDNSFailure {
			t.Errorf("defer=%v: %+v", deferOn, ds[0])
		}
	}
}

func TestNonSMTPRefusalIsPostponed(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(1)}}, fakeDetector{}, s)
	tx := e.Begin(policy.Envelope{Sender: "cron@example.org", NonSMTP: true})
	d1 := e.Recipient(ctx, tx, "a@outlook.com", t0)
	d2 := e.Recipient(ctx, tx, "b@outlook.com", t0)
	if d1.Verdict != policy.Accept || d2.Verdict != policy.Accept || !d2.Postponed {
		t.Fatalf("RCPT decisions %+v %+v: non-SMTP recipients must not be refused one by one", d1, d2)
	}
	eom := e.EndOfMessage(ctx, tx, t0)
	if eom.Verdict != policy.Defer || eom.Reply != policy.ReplyRateDefer {
		t.Fatalf("end of message: %+v, want the whole message deferred", eom)
	}
	if got := usage(t, s, "rate/hourly/cron@example.org", time.Hour); got != 0 {
		t.Errorf("units of the deferred message still held: %d", got)
	}
}

func TestReloadKeepsCounts(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(2)}}, fakeDetector{}, s)
	send(e, "alice", "a@outlook.com", "b@outlook.com")
	e.Reload(policy.Config{Rules: []policy.Rule{hourly(3)}}, fakeDetector{})
	ds, _ := send(e, "alice", "c@outlook.com", "d@outlook.com")
	if ds[0].Verdict != policy.Accept || ds[1].Verdict != policy.Defer {
		t.Fatalf("after raising the limit to 3: %+v %+v, want one more accepted then deferred", ds[0], ds[1])
	}
}

func TestFlaggedAccount(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(100)}}, fakeDetector{}, s)
	s.SetFlag(ctx, state.Flag{Account: "alice", Action: "defer", Reason: "manual", Since: t0})
	s.SetFlag(ctx, state.Flag{Account: "mallory", Action: "reject", Reason: "complaints", Since: t0})
	ds, _ := send(e, "alice", "a@outlook.com", "b@example.net")
	if ds[0].Verdict != policy.Defer || ds[0].Reason != policy.ReasonFlagged || ds[0].Reply != policy.ReplyFlaggedDefer {
		t.Errorf("flagged alice: %+v", ds[0])
	}
	if ds[1].Verdict != policy.Accept {
		t.Errorf("flagged alice's non-Microsoft recipient: %+v", ds[1])
	}
	if ds, _ := send(e, "mallory", "a@outlook.com"); ds[0].Verdict != policy.Reject {
		t.Errorf("mallory flagged reject: %+v", ds[0])
	}
	if ds, _ := send(e, "bob", "a@outlook.com"); ds[0].Verdict != policy.Accept {
		t.Errorf("bob untouched: %+v", ds[0])
	}
}

// The ramp with an injected clock: each day's cap applies on its day.
func TestRampDays(t *testing.T) {
	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	s := memory.New()
	e := policy.NewEngine(policy.Config{Cap: policy.Cap{Enabled: true, Daily: 1000, Window: 24 * time.Hour,
		Action: policy.CapDefer, RampStart: start, Ramp: []int64{3, 6, 12}}}, fakeDetector{}, s)
	for day, want := range []int{1: 3, 2: 6, 3: 12, 4: 12} {
		if day == 0 {
			continue
		}
		// Late enough in the day that the previous day's units have left
		// the rolling window.
		now := start.Add(time.Duration(day-1)*24*time.Hour + time.Duration(day)*2*time.Hour)
		accepted := 0
		for i := range 20 {
			tx := e.Begin(policy.Envelope{Sender: fmt.Sprintf("u%d@example.org", i)})
			if d := e.Recipient(ctx, tx, "x@outlook.com", now); d.Verdict == policy.Accept {
				accepted++
			} else if d.Reason != policy.ReasonDailyCap {
				t.Fatalf("day %d: refused for %s", day, d.Reason)
			}
			e.EndOfMessage(ctx, tx, now)
		}
		if accepted != want {
			t.Errorf("day %d: %d units accepted, want the day's cap %d", day, accepted, want)
		}
	}
}

func TestComplaintThresholds(t *testing.T) {
	s := memory.New()
	cfg := policy.Config{Thresholds: []policy.Threshold{
		{Complaints: 1, Within: 72 * time.Hour, Action: policy.RuleDefer},
		{Complaints: 3, Within: 7 * 24 * time.Hour, Action: policy.RuleReject},
	}}
	e := policy.NewEngine(cfg, fakeDetector{}, s)
	complain := func(id string, at time.Time) {
		s.AddComplaint(ctx, state.Complaint{Account: "alice", ReportID: id, At: at})
	}
	verdict := func(now time.Time) policy.Decision {
		tx := e.Begin(policy.Envelope{SASLLogin: "alice"})
		return e.Recipient(ctx, tx, "x@outlook.com", now)
	}
	if d := verdict(t0); d.Verdict != policy.Accept {
		t.Fatalf("no complaints: %+v", d)
	}
	complain("r1", t0.Add(-24*time.Hour))
	if d := verdict(t0); d.Verdict != policy.Defer || d.Reason != policy.ReasonFlagged || d.Reply != policy.ReplyFlaggedDefer {
		t.Fatalf("one complaint: %+v, want defer", d)
	}
	complain("r2", t0.Add(-5*24*time.Hour))
	complain("r3", t0.Add(-6*24*time.Hour))
	if d := verdict(t0); d.Verdict != policy.Reject {
		t.Fatalf("three complaints in 7d: %+v, want reject", d)
	}
	// Complaints age out: a week later nothing counts.
	if d := verdict(t0.Add(7 * 24 * time.Hour)); d.Verdict != policy.Accept {
		t.Fatalf("after the complaints aged out: %+v", d)
	}
	// An unflag forgives the complaints received before it.
	s.SetFlag(ctx, state.Flag{Account: "alice", Action: state.ActionForgiven, Since: t0})
	if d := verdict(t0.Add(time.Minute)); d.Verdict != policy.Accept {
		t.Fatalf("after unflag: %+v", d)
	}
	complain("r4", t0.Add(2*time.Minute))
	if d := verdict(t0.Add(3 * time.Minute)); d.Verdict != policy.Defer {
		t.Fatalf("a new complaint after unflag: %+v, want defer", d)
	}
	// bob is untouched.
	tx := e.Begin(policy.Envelope{SASLLogin: "bob"})
	if d := e.Recipient(ctx, tx, "x@outlook.com", t0); d.Verdict != policy.Accept {
		t.Fatalf("bob: %+v", d)
	}
}

func TestStampAndQueueID(t *testing.T) {
	sealer, err := stamp.New(stamp.Key{Secret: []byte("engine test secret, long enough")}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := memory.New()
	e := policy.NewEngine(policy.Config{Sealer: sealer}, fakeDetector{}, s)
	tx := e.Begin(policy.Envelope{SASLLogin: "alice", QueueID: "4AbC123"})
	e.Recipient(ctx, tx, "x@outlook.com", t0)
	d := e.EndOfMessage(ctx, tx, t0)
	c, err := sealer.Open(d.Stamp, t0)
	if err != nil || c.Account != "alice" || !c.At.Equal(t0) {
		t.Fatalf("stamp %q opens to %+v, %v", d.Stamp, c, err)
	}
	if acct, _, ok, _ := s.Attribute(ctx, "4AbC123"); !ok || acct != "alice" {
		t.Fatalf("queue id not remembered: %q %v", acct, ok)
	}
	// Mail without a Microsoft recipient is neither stamped nor remembered.
	tx = e.Begin(policy.Envelope{SASLLogin: "alice", QueueID: "4Other"})
	e.Recipient(ctx, tx, "x@example.net", t0)
	if d := e.EndOfMessage(ctx, tx, t0); d.Stamp != "" {
		t.Errorf("non-Microsoft mail stamped")
	}
	if _, _, ok, _ := s.Attribute(ctx, "4Other"); ok {
		t.Errorf("non-Microsoft queue id remembered")
	}
}

// While Microsoft delivery is suspended, Microsoft recipients wait (defer,
// or hold at end of message) without counting; other mail is untouched;
// a lowered cap counts against the factor.
func TestDeliveryPaused(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cfg := policy.Config{Cap: policy.Cap{Enabled: true, Daily: 10, Window: 24 * time.Hour}}
	store := memory.New()
	e := policy.NewEngine(cfg, fakeDetector{}, store)
	env := policy.Envelope{SASLLogin: "alice", QueueID: "4ABC"}

	e.SetDelivery(policy.Delivery{Until: now.Add(time.Hour)})
	tx := e.Begin(env)
	if d := e.Recipient(context.Background(), tx, "bob@outlook.com", now); d.Verdict != policy.Defer || d.Reason != policy.ReasonDeliveryPaused || d.Reply != policy.ReplyPausedDefer {
		t.Fatalf("paused, defer: %+v", d)
	}
	if d := e.Recipient(context.Background(), tx, "carol@example.org", now); d.Verdict != policy.Accept || d.Reason != policy.ReasonNotMicrosoft {
		t.Fatalf("other mail while paused: %+v", d)
	}
	e.SetDelivery(policy.Delivery{Until: now.Add(time.Hour), Hold: true})
	tx = e.Begin(env)
	if d := e.Recipient(context.Background(), tx, "bob@outlook.com", now); d.Verdict != policy.Accept || !d.Postponed {
		t.Fatalf("paused, hold, at RCPT: %+v", d)
	}
	if d := e.EndOfMessage(context.Background(), tx, now); d.Verdict != policy.Hold || d.Reason != policy.ReasonDeliveryPaused || d.QueueID != "4ABC" {
		t.Fatalf("paused, hold, at end of message: %+v", d)
	}
	if u, _ := store.Usage(context.Background(), policy.CapKey, cfg.Cap.Window, now); u.Committed+u.Reserved != 0 {
		t.Fatalf("paused mail counted: %+v", u)
	}
	// Once Until passes, mail flows and counts again, against the lowered cap.
	e.SetDelivery(policy.Delivery{Until: now.Add(time.Hour), CapFactor: 0.25})
	later := now.Add(time.Hour)
	if got := e.CapLimit(later); got != 2 {
		t.Fatalf("cap 10 x 0.25 = %d, want 2", got)
	}
	var verdicts []policy.Verdict
	for i := range 3 {
		tx := e.Begin(env)
		d := e.Recipient(context.Background(), tx, fmt.Sprintf("r%d@outlook.com", i), later)
		e.EndOfMessage(context.Background(), tx, later)
		verdicts = append(verdicts, d.Verdict)
	}
	if fmt.Sprint(verdicts) != "[accept accept defer]" {
		t.Fatalf("verdicts under the lowered cap: %v", verdicts)
	}
}

// A delivery state's ramp day holds the ramp back, never ahead of the
// calendar, and means nothing without a ramp.
func TestDeliveryRampDay(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	now := start.Add(4*24*time.Hour + time.Hour) // calendar day 5
	ramp := policy.Cap{Enabled: true, Daily: 10, Window: 24 * time.Hour, RampStart: start, Ramp: []int64{10, 20, 30, 40, 50}}
	for _, c := range []struct {
		name    string
		cap     policy.Cap
		rampDay int
		day     int
		limit   int64
	}{
		{"calendar", ramp, 0, 5, 50},
		{"held back to day 2", ramp, 2, 2, 20},
		{"not ahead of the calendar", ramp, 9, 5, 50},
		{"no ramp", policy.Cap{Enabled: true, Daily: 10, Window: 24 * time.Hour}, 2, 0, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := policy.NewEngine(policy.Config{Cap: c.cap}, fakeDetector{}, memory.New())
			e.SetDelivery(policy.Delivery{RampDay: c.rampDay, CapFactor: 0.5})
			if d, l := e.RampDay(now), e.CapLimit(now); d != c.day || l != c.limit/2 {
				t.Errorf("ramp day %d, cap %d; want %d, %d", d, l, c.day, c.limit/2)
			}
		})
	}
}
