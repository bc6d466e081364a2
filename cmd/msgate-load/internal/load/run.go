package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msgate/msgate/cmd/msgate-load/internal/milterclient"
	"github.com/msgate/msgate/policy/config"
)

// ErrMilter is wrapped by Run's error when the milter failed during the
// run (a connection error, a timeout, a protocol violation). The report is
// returned with it.
var ErrMilter = errors.New("the milter failed")

// maxErrorSamples bounds the errors a report quotes.
const maxErrorSamples = 5

// Run sends the configured load and measures it. It returns an error
// without a report when the configuration is invalid or sessions cannot be
// opened; a report and an error wrapping ErrMilter when the milter failed
// during the run (the run then stops early); a report alone otherwise,
// also when the duration cap cut the run short (Report.Stopped).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	network, address, _ := config.ParseListen(cfg.Milter)
	ctx, cancelCap := context.WithTimeout(ctx, cfg.Duration)
	defer cancelCap()
	// A failing session stops the others: what follows a milter failure
	// measures nothing useful.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)

	w := newWorkload(cfg)
	sessions, err := openSessions(ctx, cfg, w, network, address)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range sessions {
			s.conn.Close()
		}
	}()

	rep := &Report{Start: time.Now().UTC()}
	rep.describe(cfg, sessions[0].conn)

	// Warm-up: each session sends its share, then all start together.
	var wg sync.WaitGroup
	for i, s := range sessions {
		share := cfg.Warmup / len(sessions)
		if i < cfg.Warmup%len(sessions) {
			share++
		}
		wg.Go(func() {
			for range share {
				if ctx.Err() != nil || !s.send(ctx, cfg.Timeout, false, fail) {
					return
				}
			}
		})
	}
	wg.Wait()

	var next atomic.Int64
	start := time.Now()
	for _, s := range sessions {
		s.lat = make([]time.Duration, 0, cfg.Messages/len(sessions)+cfg.Messages/8+1)
		wg.Go(func() {
			before := s.trips()
			defer func() { s.roundTrips = s.trips() - before }()
			for ctx.Err() == nil && next.Add(1) <= int64(cfg.Messages) {
				if !s.send(ctx, cfg.Timeout, true, fail) {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	rep.collect(sessions, elapsed)
	switch cause := context.Cause(ctx); {
	case rep.Errors > 0:
		rep.Stopped = "error"
		return rep, fmt.Errorf("%w: %s", ErrMilter, rep.ErrorSamples[0])
	case errors.Is(cause, context.DeadlineExceeded):
		rep.Stopped = "duration"
	case cause != nil:
		rep.Stopped = "canceled"
	}
	return rep, nil
}

// session is one milter connection and what was measured on it.
type session struct {
	conn     *milterclient.Conn
	gen      *generator
	res      milterclient.Result
	lat      []time.Duration
	outcomes Outcomes
	mods     milterclient.Modifications

	completed, rcpts, aborted int
	roundTrips                uint64
	// redial, when set, opens a new connection for every message;
	// closedTrips are the round trips of the connections closed so far.
	redial      func() (*milterclient.Conn, error)
	closedTrips uint64
	err         error
}

// openSessions dials, negotiates and opens every session at once.
func openSessions(ctx context.Context, cfg Config, w *workload, network, address string) ([]*session, error) {
	sessions := make([]*session, cfg.Sessions)
	errs := make([]error, cfg.Sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			conn, err := milterclient.Dial(ctx, network, address, milterclient.Options{Timeout: cfg.Timeout})
			if err != nil {
				errs[i] = err
				return
			}
			s := &session{conn: conn, gen: w.generator(i), outcomes: make(Outcomes)}
			if cfg.Reconnect {
				s.redial = func() (*milterclient.Conn, error) {
					return milterclient.Dial(ctx, network, address, milterclient.Options{Timeout: cfg.Timeout})
				}
			}
			conn.SetDeadline(time.Now().Add(cfg.Timeout))
			if _, err := conn.Open(s.gen.client()); err != nil {
				conn.Close()
				errs[i] = err
				return
			}
			sessions[i] = s
		})
	}
	wg.Wait()
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed == 0 {
		return sessions, nil
	}
	for _, s := range sessions {
		if s != nil {
			s.conn.Close()
		}
	}
	return nil, fmt.Errorf("opening sessions: %d of %d failed, the first: %w", failed, cfg.Sessions, first)
}

// reconnect replaces the session's connection by a new one, negotiated
// and opened, when the run opens one per message.
func (s *session) reconnect(deadline time.Time) error {
	if s.redial == nil {
		return nil
	}
	old := s.conn
	old.Close()
	conn, err := s.redial()
	if err != nil {
		return err // old stays, closed, and counted once by trips
	}
	s.closedTrips += old.RoundTrips()
	s.conn = conn
	conn.SetDeadline(deadline)
	_, err = conn.Open(s.gen.client())
	return err
}

// trips is the round trips of the session's connections so far.
func (s *session) trips() uint64 { return s.closedTrips + s.conn.RoundTrips() }

// send sends the session's next message and, if measure, records it. It
// returns false when the session cannot go on; a milter failure is
// recorded and stops the run, unless the run was already stopping.
func (s *session) send(ctx context.Context, timeout time.Duration, measure bool, fail context.CancelCauseFunc) bool {
	m := s.gen.next()
	t0 := time.Now()
	err := s.reconnect(t0.Add(timeout))
	if err == nil {
		s.conn.SetDeadline(t0.Add(timeout))
		err = s.conn.Send(m, &s.res)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.err = err
			fail(err)
		}
		return false
	}
	if !measure {
		return true
	}
	s.lat = append(s.lat, time.Since(t0))
	s.completed++
	s.rcpts += len(m.Rcpts)
	if s.res.Aborted {
		s.aborted++
	}
	s.mods.Add(s.res.Mods)
	s.outcomes.count(&s.res, s.gen.ms)
	return true
}
