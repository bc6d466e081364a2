package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/msgate/msgate/policy/state"
)

// Admission is the units reserved for one message released from the hold
// queue. Postfix does not show a released message to the milter again, so
// its Microsoft recipients are counted when it is released, as if it were
// accepted then. The zero value holds nothing.
type Admission struct {
	held []state.Reservation
}

// ErrNoRoom is returned by AdmitHeld when a limit has no room for the
// message; errors.As to a *NoRoomError says which.
var ErrNoRoom = errors.New("no room for the message's units")

// NoRoomError names the limit that refused a held message.
type NoRoomError struct {
	// Rule is the rate rule, "" for the cap.
	Rule string
}

func (e *NoRoomError) Error() string {
	if e.Rule == "" {
		return "the cap has no room for the message's units"
	}
	return fmt.Sprintf("rate rule %q has no room for the message's units", e.Rule)
}

func (e *NoRoomError) Unwrap() error { return ErrNoRoom }

// AdmitHeld reserves units Microsoft units of account's held message
// against the cap and the account's rules, all or none: the units a
// limit refuses give back the ones already reserved. Rules count an
// exempt account no more than at RCPT; monitor rules and a monitor cap
// count without refusing.
func (e *Engine) AdmitHeld(ctx context.Context, account string, units int, now time.Time) (Admission, error) {
	p := e.p.Load()
	counters, limits := p.counters(account, capLimit(p, e.delivery.Load(), now))
	var a Admission
	if len(counters) == 0 || units <= 0 {
		return a, nil
	}
	for range units {
		out, err := e.store.Reserve(ctx, counters, now)
		if err == nil && !out.Admitted {
			nr := &NoRoomError{}
			if r := limits[out.Blocked].rule; r != nil {
				nr.Rule = r.Name
			}
			err = nr
		}
		if err != nil {
			if rerr := e.ReturnHeld(ctx, &a); rerr != nil {
				err = errors.Join(err, fmt.Errorf("giving back the units reserved: %w", rerr))
			}
			return Admission{}, err
		}
		a.held = append(a.held, out.Reservation)
	}
	return a, nil
}

// CommitHeld counts an admission's units, in one step.
func (e *Engine) CommitHeld(ctx context.Context, a *Admission, now time.Time) error {
	if len(a.held) == 0 {
		return nil
	}
	if err := e.store.CommitAll(ctx, a.held, now); err != nil {
		return err
	}
	a.held = nil
	return nil
}

// ReturnHeld gives an admission's units back. It is safe to call more than
// once.
func (e *Engine) ReturnHeld(ctx context.Context, a *Admission) error {
	var errs []error
	for _, r := range a.held {
		if err := e.store.Release(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	a.held = nil
	return errors.Join(errs...)
}

// HeldRoom is the room the limits leave at now for releasing held mail: the
// cap's (-1 for no hard cap) and, for each account given, the least of its
// hard rules' (absent for an account no hard rule limits). It reads; it
// reserves nothing, so a release still goes through AdmitHeld.
func (e *Engine) HeldRoom(ctx context.Context, accounts []string, now time.Time) (capRoom int64, room map[string]int64, err error) {
	p := e.p.Load()
	capRoom, room = -1, map[string]int64{}
	for _, l := range p.limits {
		if l.soft {
			continue
		}
		if l.rule == nil {
			u, err := e.store.Usage(ctx, CapKey, p.cfg.Cap.Window, now)
			if err != nil {
				return 0, nil, fmt.Errorf("reading the cap's use: %w", err)
			}
			capRoom = max(capLimit(p, e.delivery.Load(), now)-u.Committed-u.Reserved, 0)
			continue
		}
		for _, a := range accounts {
			if p.exempt[strings.ToLower(a)] {
				continue
			}
			u, err := e.store.Usage(ctx, l.rule.Key(a), l.rule.Window, now)
			if err != nil {
				return 0, nil, fmt.Errorf("reading rule %q for %s: %w", l.rule.Name, a, err)
			}
			r := max(l.rule.Limit-u.Committed-u.Reserved, 0)
			if old, ok := room[a]; !ok || r < old {
				room[a] = r
			}
		}
	}
	return capRoom, room, nil
}

// counters are what one Microsoft unit of account counts against, with
// their limits, strictest first: the cap at capLimit (when enabled) and,
// unless the account is exempt, its rules.
func (p *params) counters(account string, capLimit int64) ([]state.Counter, []limit) {
	exempt := p.exempt[strings.ToLower(account)]
	counters := make([]state.Counter, 0, len(p.limits))
	limits := make([]limit, 0, len(p.limits))
	for _, l := range p.limits {
		var c state.Counter
		switch {
		case l.rule == nil:
			c = state.Counter{Key: CapKey, Window: p.cfg.Cap.Window, Limit: capLimit}
		case !exempt:
			c = state.Counter{Key: l.rule.Key(account), Window: l.rule.Window, Limit: l.rule.Limit}
		default:
			continue
		}
		c.Soft = l.soft
		counters = append(counters, c)
		limits = append(limits, l)
	}
	return counters, limits
}
