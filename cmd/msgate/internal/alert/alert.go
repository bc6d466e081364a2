package alert

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/zap"
)

// Target is where alerts go: Send delivers one event's JSON, within ctx.
type Target struct {
	Name string // "command" or "url", in the logs
	Send func(ctx context.Context, body []byte) error
}

// Settings are what a reload may change.
type Settings struct {
	// Targets each get every alert, through a queue of their own: a dead
	// receiver does not hold back the others. None turns alerts off.
	Targets []Target
	// QueueSize is the most alerts waiting per target; past it the
	// oldest is dropped.
	QueueSize int
	// Timeout bounds one attempt, and the drain at Close.
	Timeout time.Duration
	// Retries is how many more attempts follow a failed one, Backoff(n)
	// the wait before the nth.
	Retries int
	Backoff func(retry int) time.Duration
}

// Exponential waits base before the first retry and twice as long before
// each next one, at most MaxBackoff.
func Exponential(base time.Duration) func(int) time.Duration {
	return func(retry int) time.Duration {
		d := base
		for i := 1; i < retry && d < MaxBackoff; i++ {
			d *= 2
		}
		return min(d, MaxBackoff)
	}
}

// MaxBackoff bounds Exponential's wait.
const MaxBackoff = 5 * time.Minute

// Options are a Dispatcher's fixed parts.
type Options struct {
	Log        *zap.Logger
	Registerer prometheus.Registerer
	// Sleep waits d or until ctx ends (then it returns ctx's error); nil
	// uses a timer. Tests pass one that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Dispatcher queues alerts for their targets and delivers them. Its
// methods are safe for concurrent use; a nil Dispatcher sends nothing.
type Dispatcher struct {
	log   *zap.Logger
	sleep func(context.Context, time.Duration) error
	m     metrics

	mu     sync.Mutex
	lanes  []*lane
	closed bool
}

type metrics struct {
	sent, failed, retried, dropped *prometheus.CounterVec
}

// New returns a dispatcher with no targets (alerts off) and registers its
// metrics; Configure gives it targets.
func New(o Options) *Dispatcher {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	f := promauto.With(o.Registerer)
	labels := " Counted per target (command, url), by event (" + strings.Join(Names, ", ") + ")."
	d := &Dispatcher{log: o.Log, sleep: o.Sleep, m: metrics{
		sent: f.NewCounterVec(prometheus.CounterOpts{Name: "msgate_alerts_sent_total",
			Help: "Alerts delivered ([alerts] command exited 0, url answered 2xx)." + labels}, []string{"event"}),
		failed: f.NewCounterVec(prometheus.CounterOpts{Name: "msgate_alerts_failed_total",
			Help: "Alerts given up on: every attempt failed, or shutdown came first." + labels}, []string{"event"}),
		retried: f.NewCounterVec(prometheus.CounterOpts{Name: "msgate_alerts_retried_total",
			Help: "Failed attempts that were tried again after a backoff." + labels}, []string{"event"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{Name: "msgate_alerts_dropped_total",
			Help: "Alerts dropped unsent because their target's queue was full (the oldest waiting goes)." + labels}, []string{"event"}),
	}}
	for _, n := range Names {
		for _, c := range []*prometheus.CounterVec{d.m.sent, d.m.failed, d.m.retried, d.m.dropped} {
			c.WithLabelValues(n)
		}
	}
	return d
}

// Configure puts settings in force for the alerts sent from now on. The
// alerts already queued under the settings before are still delivered by
// them, for at most their Timeout.
func (d *Dispatcher) Configure(s Settings) {
	lanes := make([]*lane, 0, len(s.Targets))
	for _, t := range s.Targets {
		lanes = append(lanes, d.start(t, s))
	}
	d.mu.Lock()
	old := d.lanes
	if d.closed {
		old, lanes = lanes, nil
	}
	d.lanes = lanes
	d.mu.Unlock()
	for _, l := range old {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), l.s.Timeout)
			defer cancel()
			l.close(ctx)
		}()
	}
}

// Send queues ev for every target. It never blocks.
func (d *Dispatcher) Send(ev Event) {
	if d == nil {
		return
	}
	d.mu.Lock()
	lanes := d.lanes
	d.mu.Unlock()
	if len(lanes) == 0 {
		return
	}
	body, err := json.Marshal(ev)
	if err != nil {
		d.log.Error("alert cannot be written as JSON", zap.String("event", ev.Event), zap.Error(err))
		return
	}
	body = append(body, '\n')
	for _, l := range lanes {
		l.push(job{event: ev.Event, body: body})
	}
}

// Close stops taking alerts and delivers those queued until ctx ends; what
// is left then is counted as failed. It is safe to call more than once.
func (d *Dispatcher) Close(ctx context.Context) {
	if d == nil {
		return
	}
	d.mu.Lock()
	lanes := d.lanes
	d.lanes, d.closed = nil, true
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range lanes {
		wg.Go(func() { l.close(ctx) })
	}
	wg.Wait()
}

type job struct {
	event string
	body  []byte
}

// lane is one target's queue and worker.
type lane struct {
	d      *Dispatcher
	target Target
	s      Settings
	log    *zap.Logger
	// ctx ends attempts and backoffs in progress when the drain's time is
	// up.
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	q       []job
	closing bool
}

func (d *Dispatcher) start(t Target, s Settings) *lane {
	ctx, cancel := context.WithCancel(context.Background())
	l := &lane{d: d, target: t, s: s, log: d.log.With(zap.String("target", t.Name)), ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), done: make(chan struct{}), q: make([]job, 0, s.QueueSize)}
	go l.run()
	return l
}

func (l *lane) push(j job) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		l.drop(j, "msgate is stopping")
		return
	}
	var dropped *job
	if len(l.q) >= max(l.s.QueueSize, 1) {
		first := l.q[0]
		dropped = &first
		l.q = l.q[1:]
	}
	l.q = append(l.q, j)
	l.mu.Unlock()
	if dropped != nil {
		l.drop(*dropped, "the queue is full")
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *lane) drop(j job, why string) {
	l.d.m.dropped.WithLabelValues(j.event).Inc()
	l.log.Warn("alert dropped unsent", zap.String("event", j.event), zap.String("why", why), zap.Int("queue_size", l.s.QueueSize))
}

// next waits for the oldest queued alert; ok is false once the lane is
// closing and empty, or the drain's time is up.
func (l *lane) next() (j job, ok bool) {
	for {
		l.mu.Lock()
		if l.ctx.Err() != nil {
			left := len(l.q)
			for _, j := range l.q {
				l.d.m.failed.WithLabelValues(j.event).Inc()
			}
			l.q = nil
			l.mu.Unlock()
			if left > 0 {
				l.log.Error("alerts not delivered before shutdown", zap.Int("alerts", left))
			}
			return job{}, false
		}
		if len(l.q) > 0 {
			j = l.q[0]
			l.q = l.q[1:]
			l.mu.Unlock()
			return j, true
		}
		closing := l.closing
		l.mu.Unlock()
		if closing {
			return job{}, false
		}
		select {
		case <-l.wake:
		case <-l.ctx.Done():
		}
	}
}

func (l *lane) run() {
	defer close(l.done)
	for {
		j, ok := l.next()
		if !ok {
			return
		}
		l.deliver(j)
	}
}

// deliver makes up to 1+Retries attempts, and stops at the first that
// succeeds.
func (l *lane) deliver(j job) {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(l.ctx, l.s.Timeout)
		start := time.Now()
		err := l.target.Send(ctx, j.body)
		cancel()
		fields := []zap.Field{zap.String("event", j.event), zap.Int("attempt", attempt), zap.Duration("took", time.Since(start))}
		if err == nil {
			l.d.m.sent.WithLabelValues(j.event).Inc()
			l.log.Info("alert sent", fields...)
			return
		}
		fields = append(fields, zap.Error(err))
		if attempt > l.s.Retries || l.ctx.Err() != nil {
			l.d.m.failed.WithLabelValues(j.event).Inc()
			l.log.Error("alert not delivered; giving up", fields...)
			return
		}
		wait := l.s.Backoff(attempt)
		l.d.m.retried.WithLabelValues(j.event).Inc()
		l.log.Warn("alert attempt failed; retrying", append(fields, zap.Duration("retry_in", wait))...)
		if err := l.d.sleep(l.ctx, wait); err != nil {
			l.d.m.failed.WithLabelValues(j.event).Inc()
			l.log.Error("alert not delivered before shutdown", zap.String("event", j.event), zap.Int("attempts", attempt))
			return
		}
	}
}

// close stops taking alerts, lets the worker deliver what is queued until
// ctx ends, then ends the attempt in progress and counts the rest.
func (l *lane) close(ctx context.Context) {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		l.cancel()
		<-l.done
	}
	l.cancel()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
