package policy

import (
	"math"
	"time"
)

// CapAction is what happens to units past the server-wide cap.
type CapAction uint8

const (
	CapDefer CapAction = iota
	CapReject
	CapHold
	CapMonitor
)

// ParseCapAction reads "defer", "reject", "hold" or "monitor".
func ParseCapAction(s string) (CapAction, bool) {
	switch s {
	case "defer", "":
		return CapDefer, true
	case "reject":
		return CapReject, true
	case "hold":
		return CapHold, true
	case "monitor":
		return CapMonitor, true
	}
	return 0, false
}

func (a CapAction) String() string {
	return [...]string{"defer", "reject", "hold", "monitor"}[a]
}

// Cap is the conditional-mitigation cap: Microsoft units of the whole
// server in a rolling window, optionally ramping up day by day.
type Cap struct {
	Enabled bool
	Daily   int64
	Window  time.Duration
	Action  CapAction
	// RampStart is day 1 of the ramp (UTC midnight); zero means no ramp.
	RampStart time.Time
	// Ramp lists the caps of day 1, 2, ...; the last holds afterwards.
	Ramp []int64
	// Growth multiplies Daily by Growth^(day-1), up to Ceiling.
	Growth  float64
	Ceiling int64
}

// CapKey is the store key of the server-wide cap.
const CapKey = "cap"

// Day is the ramp day at now: 1 on RampStart, 0 when there is no ramp, and
// 1 before the ramp starts.
func (c Cap) Day(now time.Time) int {
	if c.RampStart.IsZero() || (len(c.Ramp) == 0 && c.Growth == 0) {
		return 0
	}
	if now.Before(c.RampStart) {
		return 1
	}
	return int(now.Sub(c.RampStart)/(24*time.Hour)) + 1
}

// LimitAt is the cap in force at now.
func (c Cap) LimitAt(now time.Time) int64 { return c.LimitOnDay(c.Day(now)) }

// LimitOnDay is the cap on ramp day day (0: without a ramp).
func (c Cap) LimitOnDay(day int) int64 {
	switch {
	case day == 0:
		return c.Daily
	case len(c.Ramp) > 0:
		return c.Ramp[min(day, len(c.Ramp))-1]
	default:
		v := float64(c.Daily) * math.Pow(c.Growth, float64(day-1))
		if v >= float64(c.Ceiling) || math.IsInf(v, 0) {
			return c.Ceiling
		}
		return int64(v)
	}
}
