package policy

import (
	"context"
	"time"

	"github.com/msgate/msgate/policy/state"
)

// FlagCleared is the action of a flag that records an unflag: complaints
// received before its Since no longer count.
const FlagCleared = "cleared"

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

// Standing reports an account's standing at now.
func (e *Engine) Standing(ctx context.Context, account string, now time.Time) (Standing, error) {
	return e.standing(ctx, e.p.Load(), account, now)
}

func (e *Engine) standing(ctx context.Context, p *params, account string, now time.Time) (Standing, error) {
	var st Standing
	var floor time.Time // complaints before an unflag do not count
	if flags, ok := e.store.(state.Flags); ok {
		f, flagged, err := flags.GetFlag(ctx, account)
		if err != nil {
			return st, err
		}
		switch {
		case flagged && f.Action == FlagCleared:
			floor = f.Since
		case flagged:
			manual := f
			st.Flagged, st.Manual = true, &manual
			st.Action = RuleDefer
			if f.Action == "reject" {
				st.Action = RuleReject
			}
			return st, nil
		}
	}
	cs, ok := e.store.(state.Complaints)
	if !ok || len(p.thresholds) == 0 {
		return st, nil
	}
	since := now.Add(-p.maxWithin)
	if floor.After(since) {
		since = floor
	}
	list, err := cs.ComplaintsSince(ctx, account, since)
	if err != nil || len(list) == 0 {
		return st, err
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
