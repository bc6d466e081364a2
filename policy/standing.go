package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/msgate/msgate/policy/state"
)

// Standing is whether an account's Microsoft mail is held back, and why.
type Standing struct {
	Flagged bool
	Action  RuleAction // RuleDefer or RuleReject when Flagged
	// Manual is the admin's flag, when one is set.
	Manual *state.Flag
	// Complaints counted within the threshold that flagged the account (or
	// within the longest threshold window when none did), since the last
	// unflag.
	Complaints []state.Complaint
	Threshold  *Threshold
}

// Transition is what a change (a complaint, a flag or an unflag by the
// admin) did to an account's standing.
type Transition struct {
	Account string
	Was     Standing
	Now     Standing
}

// Flagged reports whether the change flagged the account, or made its flag
// stricter (defer to reject).
func (t Transition) Flagged() bool {
	return t.Now.Flagged && (!t.Was.Flagged || t.Now.Action != t.Was.Action)
}

// Unflagged reports whether the change ended the account's flag.
func (t Transition) Unflagged() bool { return t.Was.Flagged && !t.Now.Flagged }

// ErrNotFlagged is returned by Unflag for an account that is not flagged.
var ErrNotFlagged = errors.New("policy: account is not flagged")

// Standing reports an account's standing at now.
func (e *Engine) Standing(ctx context.Context, account string, now time.Time) (Standing, error) {
	return e.standing(ctx, e.p.Load(), account, now)
}

func (e *Engine) standing(ctx context.Context, p *params, account string, now time.Time) (Standing, error) {
	var st Standing
	since := now.Add(-p.maxWithin)
	f, flagged, list, err := e.store.Account(ctx, account, since)
	if err != nil {
		return st, err
	}
	switch {
	case flagged && f.Action == state.ActionForgiven:
		// Complaints before an unflag do not count.
		for len(list) > 0 && list[0].At.Before(f.Since) {
			list = list[1:]
		}
	case flagged:
		manual := f
		st.Flagged, st.Manual = true, &manual
		st.Action = RuleDefer
		if f.Action == state.ActionReject {
			st.Action = RuleReject
		}
		return st, nil
	}
	if len(p.thresholds) == 0 || len(list) == 0 {
		return st, nil
	}
	st.Complaints = list
	for i := range p.thresholds {
		t := &p.thresholds[i]
		from := now.Add(-t.Within)
		n := 0
		for _, c := range list {
			if !c.At.Before(from) {
				n++
			}
		}
		if n >= t.Complaints {
			st.Flagged, st.Action, st.Threshold = true, t.Action, t
			st.Complaints = list[len(list)-n:]
			return st, nil
		}
	}
	return st, nil
}

// RecordComplaint counts a recipient's complaint about an account's mail,
// once per report (added is false for a report already counted), and
// returns what it did to the account: Flagged when it reached a threshold.
func (e *Engine) RecordComplaint(ctx context.Context, c state.Complaint, now time.Time) (added bool, t Transition, err error) {
	p := e.p.Load()
	t.Account = c.Account
	if t.Was, err = e.standing(ctx, p, c.Account, now); err != nil {
		return false, t, err
	}
	if added, err = e.store.AddComplaint(ctx, c); err != nil {
		return false, t, err
	}
	t.Now, err = e.standing(ctx, p, c.Account, now)
	return added, t, err
}

// Flag holds an account's Microsoft mail back by hand (RuleDefer or
// RuleReject), with the admin's note, until Unflag.
func (e *Engine) Flag(ctx context.Context, account string, action RuleAction, note string, now time.Time) (Transition, error) {
	if action != RuleDefer && action != RuleReject {
		return Transition{}, fmt.Errorf("policy: a flag defers or rejects, not %s", action)
	}
	p := e.p.Load()
	t := Transition{Account: account}
	var err error
	if t.Was, err = e.standing(ctx, p, account, now); err != nil {
		return t, err
	}
	f := state.Flag{Account: account, Action: action.String(), Reason: "manual", Note: note, Since: now.UTC()}
	if err := e.store.SetFlag(ctx, f); err != nil {
		return t, err
	}
	t.Now, err = e.standing(ctx, p, account, now)
	return t, err
}

// Unflag ends an account's flag: the admin's, and the complaints' (those
// received until now no longer count; new ones count again). It returns
// ErrNotFlagged when the account is not flagged.
func (e *Engine) Unflag(ctx context.Context, account string, now time.Time) (Transition, error) {
	p := e.p.Load()
	t := Transition{Account: account}
	var err error
	if t.Was, err = e.standing(ctx, p, account, now); err != nil {
		return t, err
	}
	if !t.Was.Flagged {
		return t, fmt.Errorf("%w: %s", ErrNotFlagged, account)
	}
	t.Now = t.Was
	if t.Now.Manual != nil {
		if _, err := e.store.ClearFlag(ctx, account); err != nil {
			return t, err
		}
		if t.Now, err = e.standing(ctx, p, account, now); err != nil {
			return t, err
		}
	}
	if t.Now.Flagged {
		forgive := state.Flag{Account: account, Action: state.ActionForgiven, Reason: "unflagged", Since: now.UTC()}
		if err := e.store.SetFlag(ctx, forgive); err != nil {
			return t, err
		}
		t.Now, err = e.standing(ctx, p, account, now)
	}
	return t, err
}
