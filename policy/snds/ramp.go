package snds

import (
	"maps"
	"slices"
	"time"
)

// dayLayout names a day in GreenDays' map.
const dayLayout = time.DateOnly

// GreenDays says, for each day of the import's watched rows (the date of
// their activity start, as SNDS writes it), whether it was GREEN: every
// watched row of the day GREEN. A day without watched rows is absent.
func GreenDays(cfg Config, imp Import) map[string]bool {
	days := map[string]bool{}
	for _, row := range imp.Data {
		if len(cfg.IPs) > 0 && !slices.Contains(cfg.IPs, row.IP) {
			continue
		}
		d := row.ActivityStart.Format(dayLayout)
		green, seen := days[d]
		days[d] = (green || !seen) && row.Filter == Green
	}
	return days
}

// MergeDays adds an import's days to those known, a day read again
// replacing what it said before, and forgets the days before start.
func MergeDays(known, imported map[string]bool, start time.Time) map[string]bool {
	out := maps.Clone(known)
	if out == nil {
		out = map[string]bool{}
	}
	maps.Copy(out, imported)
	first := start.Format(dayLayout)
	for d := range out {
		if d < first {
			delete(out, d)
		}
	}
	return out
}

// RampDay is the mitigation ramp's day at now when only GREEN days advance
// it: 1 on start, and one more for each GREEN day from start to the day
// before now. A day SNDS has no data for, or judged YELLOW or RED, holds
// the ramp where it is. It is never later than the calendar's day.
func RampDay(days map[string]bool, start, now time.Time) int {
	first, today := start.Format(dayLayout), now.Format(dayLayout)
	n := 1
	for d, green := range days {
		if green && d >= first && d < today {
			n++
		}
	}
	return n
}
