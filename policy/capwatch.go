package policy

import "time"

// CapLevels are the shares of the cap, in percent, whose crossing is an
// event: a warning at 80% and the cap reached at 100%.
var CapLevels = [...]int{80, 100}

// CapCrossing is the cap's use reaching one of its levels.
type CapCrossing struct {
	Percent int // the level crossed, from CapLevels
	Used    int64
	Limit   int64
	Window  time.Duration
	At      time.Time
}

// CapWatch decides which crossings of the cap's levels are events: each
// level once per window, counted from its crossing, and again at once when
// the cap in force changes (a reload, a ramp day, Microsoft's throttles
// lowering it, or its recovery). The use of a rolling window hovers around
// the cap as old units age out, so a level is not re-armed by the use
// dipping below it.
//
// The zero value is ready to use. A CapWatch is not safe for concurrent
// use: one goroutine owns it.
type CapWatch struct {
	fired [len(CapLevels)]crossed // by index in CapLevels
}

type crossed struct {
	at    time.Time // zero: never crossed
	limit int64
}

// Check takes the cap's use and limit at now and returns the levels that
// this use crosses as new events, lowest first. A limit of 0 or less (the
// cap disabled) crosses nothing and re-arms every level.
func (w *CapWatch) Check(used, limit int64, window time.Duration, now time.Time) []CapCrossing {
	if limit <= 0 {
		w.fired = [len(CapLevels)]crossed{}
		return nil
	}
	var out []CapCrossing
	for i, pct := range CapLevels {
		f := &w.fired[i]
		if used*100 < int64(pct)*limit {
			if f.limit != limit {
				// The cap changed below this level: the next crossing
				// of the new cap is an event.
				f.at = time.Time{}
			}
			continue
		}
		if !f.at.IsZero() && f.limit == limit && now.Before(f.at.Add(window)) {
			continue
		}
		f.at, f.limit = now, limit
		out = append(out, CapCrossing{Percent: pct, Used: used, Limit: limit, Window: window, At: now})
	}
	return out
}
