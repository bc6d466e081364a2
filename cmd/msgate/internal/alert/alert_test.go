package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// fakeTarget records what it was sent; fail decides each attempt.
type fakeTarget struct {
	mu    sync.Mutex
	got   []string // the accounts of the events, in delivery order
	tries int
	fail  func(try int, ctx context.Context) error
}

func (f *fakeTarget) target() Target {
	return Target{Name: "fake", Send: func(ctx context.Context, body []byte) error {
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil {
			return err
		}
		f.mu.Lock()
		f.tries++
		try := f.tries
		f.mu.Unlock()
		if f.fail != nil {
			if err := f.fail(try, ctx); err != nil {
				return err
			}
		}
		f.mu.Lock()
		f.got = append(f.got, ev.Account)
		f.mu.Unlock()
		return nil
	}}
}

func (f *fakeTarget) delivered() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// waits records the backoffs asked for and returns at once.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func newTest(t *testing.T, s Settings) (*Dispatcher, *waits) {
	t.Helper()
	w := &waits{}
	d := New(Options{Log: zaptest.NewLogger(t), Registerer: prometheus.NewRegistry(), Sleep: w.sleep})
	if s.Timeout == 0 {
		s.Timeout = time.Minute
	}
	if s.Backoff == nil {
		s.Backoff = Exponential(time.Second)
	}
	d.Configure(s)
	return d, w
}

func flagged(account string) Event {
	return Event{Event: Flagged, Time: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), Account: account}
}

type counts struct{ sent, failed, retried, dropped float64 }

func countsOf(d *Dispatcher, event string) counts {
	return counts{testutil.ToFloat64(d.m.sent.WithLabelValues(event)), testutil.ToFloat64(d.m.failed.WithLabelValues(event)),
		testutil.ToFloat64(d.m.retried.WithLabelValues(event)), testutil.ToFloat64(d.m.dropped.WithLabelValues(event))}
}

func TestAlertRetriesWithBackoffThenSends(t *testing.T) {
	f := &fakeTarget{fail: func(try int, _ context.Context) error {
		if try <= 2 {
			return errors.New("connection refused")
		}
		return nil
	}}
	d, w := newTest(t, Settings{Targets: []Target{f.target()}, QueueSize: 10, Retries: 3})
	d.Send(flagged("alice"))
	d.Close(context.Background())
	if got := f.delivered(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("delivered %q, want alice once", got)
	}
	if f.tries != 3 {
		t.Errorf("%d attempts, want 3", f.tries)
	}
	if !slices.Equal(w.d, []time.Duration{time.Second, 2 * time.Second}) {
		t.Errorf("backoffs %v, want [1s 2s]", w.d)
	}
	if c := countsOf(d, Flagged); c != (counts{sent: 1, retried: 2}) {
		t.Errorf("metrics %+v", c)
	}
}

func TestAlertGivesUpAfterRetries(t *testing.T) {
	f := &fakeTarget{fail: func(int, context.Context) error { return errors.New("exit status 1") }}
	d, w := newTest(t, Settings{Targets: []Target{f.target()}, QueueSize: 10, Retries: 2, Backoff: Exponential(3 * time.Second)})
	d.Send(flagged("alice"))
	d.Send(flagged("bob"))
	d.Close(context.Background())
	if f.tries != 6 {
		t.Errorf("%d attempts, want 3 for each of 2 alerts", f.tries)
	}
	if want := []time.Duration{3 * time.Second, 6 * time.Second, 3 * time.Second, 6 * time.Second}; !slices.Equal(w.d, want) {
		t.Errorf("backoffs %v, want %v", w.d, want)
	}
	if c := countsOf(d, Flagged); c != (counts{failed: 2, retried: 4}) {
		t.Errorf("metrics %+v", c)
	}
}

// A target that does not answer holds its own queue only: Send returns at
// once, the oldest waiting alerts are dropped and counted, and the newest
// are delivered when the target answers again.
func TestAlertFullQueueDropsTheOldest(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f := &fakeTarget{fail: func(try int, _ context.Context) error {
		if try == 1 {
			close(started)
			<-release
		}
		return nil
	}}
	d, _ := newTest(t, Settings{Targets: []Target{f.target()}, QueueSize: 3})
	d.Send(flagged("a0"))
	<-started
	for i := 1; i < 10; i++ {
		d.Send(flagged(fmt.Sprintf("a%d", i)))
	}
	if c := countsOf(d, Flagged); c.dropped != 6 {
		t.Errorf("dropped %v while the target hung, want 6", c.dropped)
	}
	close(release)
	d.Close(context.Background())
	if got, want := f.delivered(), []string{"a0", "a7", "a8", "a9"}; !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
	if c := countsOf(d, Flagged); c != (counts{sent: 4, dropped: 6}) {
		t.Errorf("metrics %+v", c)
	}
}

// Each target has its own queue: one that hangs does not hold back another.
func TestAlertTargetsAreIndependent(t *testing.T) {
	release := make(chan struct{})
	hung := &fakeTarget{fail: func(int, context.Context) error { <-release; return nil }}
	live := &fakeTarget{}
	d, _ := newTest(t, Settings{Targets: []Target{hung.target(), live.target()}, QueueSize: 10})
	d.Send(flagged("a"))
	d.Send(flagged("b"))
	for len(live.delivered()) < 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	d.Close(context.Background())
	if got := hung.delivered(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("the target that hung got %q after it answered", got)
	}
}

// Close delivers what is queued until its context ends, then ends the
// attempt in progress and counts what is left as failed.
func TestAlertCloseDeadline(t *testing.T) {
	started := make(chan struct{})
	f := &fakeTarget{fail: func(try int, ctx context.Context) error {
		if try == 1 {
			close(started)
		}
		<-ctx.Done()
		return ctx.Err()
	}}
	d, _ := newTest(t, Settings{Targets: []Target{f.target()}, QueueSize: 10, Retries: 5})
	for i := range 4 {
		d.Send(flagged(fmt.Sprint(i)))
	}
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Close(ctx); close(done) }()
	cancel()
	<-done
	if c := countsOf(d, Flagged); c != (counts{failed: 4}) {
		t.Errorf("metrics %+v, want the attempt in progress and the 3 queued failed, no retries", c)
	}
	d.Send(flagged("late"))
	if c := countsOf(d, Flagged); c.dropped != 0 || f.tries != 1 {
		t.Errorf("an alert after Close was taken: %+v, %d attempts", c, f.tries)
	}
	d.Close(context.Background())
}

// Configure keeps delivering what the old settings queued, and sends what
// comes next to the new targets only.
func TestAlertConfigure(t *testing.T) {
	old, next := &fakeTarget{}, &fakeTarget{}
	d, _ := newTest(t, Settings{Targets: []Target{old.target()}, QueueSize: 10})
	d.Send(flagged("before"))
	d.Configure(Settings{Targets: []Target{next.target()}, QueueSize: 10, Timeout: time.Minute, Backoff: Exponential(time.Second)})
	d.Send(flagged("after"))
	d.Close(context.Background())
	for len(old.delivered()) == 0 {
		time.Sleep(time.Millisecond)
	}
	if got := old.delivered(); !slices.Equal(got, []string{"before"}) {
		t.Errorf("old target got %q", got)
	}
	if got := next.delivered(); !slices.Equal(got, []string{"after"}) {
		t.Errorf("new target got %q", got)
	}
	d.Configure(Settings{})
	d.Send(flagged("off"))
	var none *Dispatcher
	none.Send(flagged("nil"))
	none.Close(context.Background())
}

func TestExponential(t *testing.T) {
	b := Exponential(time.Second)
	var got []time.Duration
	for n := 1; n <= 12; n++ {
		got = append(got, b(n))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("Exponential(1s) = %v, want %v", got, want)
	}
}
