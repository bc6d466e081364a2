package main

import (
	"context"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/msgate/msgate/cmd/msgate/internal/alert"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/replies"
	"github.com/msgate/msgate/policy/snds"
)

// alerter carries [alerts] out in the daemon: it turns what the engine,
// the delivery feed and the admin API report into alerts, and watches the
// cap's use for its crossings. Nothing here waits on a target.
type alerter struct {
	log *zap.Logger
	d   *alert.Dispatcher
	// on is set while [alerts] names a target: the cap is watched only
	// then.
	on      atomic.Bool
	timeout atomic.Int64 // [alerts] timeout: the drain at shutdown
	// poke wakes the cap watch after a commit, so that a crossing is
	// noticed at once rather than at the next tick.
	poke chan struct{}
	// cur is the [alerts] in force (configure's caller only).
	cur *config.Alerts
}

// capCheckInterval is how often the cap's use is read with no commit to
// wake the watch: a ramp day or a recovering cap factor changes the cap
// without one.
const capCheckInterval = time.Second

// capCheckGap is the least time between two reads of the cap's use: under
// load every commit wakes the watch, and each read is a call to the store
// (a round trip to Redis on that backend).
const capCheckGap = 100 * time.Millisecond

func newAlerter(cfg config.Alerts, log *zap.Logger, reg prometheus.Registerer) *alerter {
	a := &alerter{log: log.Named("alert"), poke: make(chan struct{}, 1)}
	a.d = alert.New(alert.Options{Log: a.log, Registerer: reg})
	a.configure(cfg)
	return a
}

// configure puts [alerts] in force (at start and on reload); an unchanged
// section keeps its queues.
func (a *alerter) configure(c config.Alerts) {
	if a.cur != nil && reflect.DeepEqual(*a.cur, c) {
		return
	}
	a.cur = &c
	s := alert.Settings{QueueSize: c.QueueSize, Timeout: c.Timeout.D(), Retries: c.Retries, Backoff: alert.Exponential(c.Backoff.D())}
	if len(c.Command) > 0 {
		s.Targets = append(s.Targets, alert.Command(c.Command, runCommand))
	}
	if c.URL != "" {
		s.Targets = append(s.Targets, alert.HTTP(c.URL, c.HTTPHeaders()))
	}
	a.timeout.Store(int64(c.Timeout.D()))
	a.on.Store(len(s.Targets) > 0)
	a.d.Configure(s)
}

// transition alerts on an account flagged or unflagged (by complaints or
// the admin).
func (a *alerter) transition(t policy.Transition, now time.Time) {
	if ev, ok := alert.FromTransition(t, now); ok {
		a.d.Send(ev)
	}
}

// delivery alerts on a transition of Microsoft delivery; rules are the
// [replies] rules in force, which give the event its class.
func (a *alerter) delivery(e replies.Event, rules []replies.Rule) {
	class := ""
	for _, r := range rules {
		if r.Name == e.Rule {
			class = r.Class.String()
			break
		}
	}
	if ev := alert.FromDelivery(e, class); ev.Event != "" {
		a.d.Send(ev)
	}
}

// snds alerts on an SNDS import's change of status (sndsFeed.OnEvent).
func (a *alerter) snds(e snds.Event) {
	if ev, ok := alert.FromSNDS(e); ok {
		a.d.Send(ev)
	}
}

// observe sees every decision (milter.Options.Observe): a committed
// message, or a recipient refused by the cap, wakes the cap watch. It
// never blocks.
func (a *alerter) observe(stage string, dec policy.Decision) {
	if !a.on.Load() {
		return
	}
	if (stage == "end-of-message" && dec.Reason == policy.ReasonMessageAccepted) || dec.Reason == policy.ReasonDailyCap {
		select {
		case a.poke <- struct{}{}:
		default:
		}
	}
}

// watchCap reads the cap's use when woken (at most every capCheckGap) and
// every capCheckInterval until ctx ends, and alerts on the crossings policy.CapWatch finds. Only
// committed units count: a reservation may still be given back.
func (a *alerter) watchCap(ctx context.Context, e *policy.Engine, now func() time.Time, timeout func() time.Duration) {
	var w policy.CapWatch
	tick := time.NewTicker(capCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.poke:
		}
		if !a.on.Load() {
			continue
		}
		t := now()
		c := e.Config().Cap
		if !c.Enabled {
			w.Check(0, 0, c.Window, t)
			continue
		}
		uctx, cancel := context.WithTimeout(ctx, timeout())
		u, err := e.Store().Usage(uctx, policy.CapKey, c.Window, t)
		cancel()
		if err != nil {
			a.log.Debug("reading the cap's use for alerts", zap.Error(err))
			continue
		}
		for _, x := range w.Check(u.Committed, e.CapLimit(t), c.Window, t) {
			a.d.Send(alert.FromCap(x))
		}
		// A commit meanwhile leaves its poke waiting: it is read next.
		gap := time.NewTimer(capCheckGap)
		select {
		case <-ctx.Done():
			gap.Stop()
			return
		case <-gap.C:
		}
	}
}

// close delivers the alerts still queued, for at most [alerts] timeout.
func (a *alerter) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(a.timeout.Load()))
	defer cancel()
	a.d.Close(ctx)
}
