package snds

import (
	"maps"
	"testing"
	"time"
)

func TestGreenDays(t *testing.T) {
	imp := sampleImport(t, "data-mixed.csv", "status-empty.csv")
	for _, c := range []struct {
		name string
		cfg  Config
		want map[string]bool
	}{
		{"all rows: one RED makes the day not green", Config{}, map[string]bool{"2026-11-30": false}},
		{"a GREEN IP", Config{IPs: ips("192.0.2.25")}, map[string]bool{"2026-11-30": true}},
		{"GREEN and YELLOW", Config{IPs: ips("192.0.2.25", "192.0.2.26")}, map[string]bool{"2026-11-30": false}},
		{"an IP without rows", Config{IPs: ips("198.51.100.99")}, map[string]bool{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := GreenDays(c.cfg, imp); !maps.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	two := sampleImport(t, "data-bom-lf.csv", "status-empty.csv")
	if got := GreenDays(Config{}, two); !maps.Equal(got, map[string]bool{"2026-12-01": true}) {
		t.Errorf("two GREEN rows of a day: %v", got)
	}
}

func TestRampDay(t *testing.T) {
	start := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC) // calendar day 6
	days := map[string]bool{
		"2026-11-27": true, // before the ramp
		"2026-11-28": true,
		"2026-11-29": false, // YELLOW or RED: held
		"2026-11-30": true,
		// 2026-12-01: no data: held
		"2026-12-02": true,
		"2026-12-03": true, // today: not over yet
	}
	if got := RampDay(days, start, now); got != 4 {
		t.Errorf("RampDay = %d, want 4 (day 1 and 3 GREEN days)", got)
	}
	if got := RampDay(nil, start, now); got != 1 {
		t.Errorf("RampDay without data = %d, want 1", got)
	}
	all := map[string]bool{}
	for d := start; d.Before(now); d = d.Add(24 * time.Hour) {
		all[d.Format(time.DateOnly)] = true
	}
	if got := RampDay(all, start, now); got != 6 {
		t.Errorf("RampDay with every day GREEN = %d, want the calendar's 6", got)
	}
	merged := MergeDays(days, map[string]bool{"2026-11-29": true, "2026-12-01": false}, start)
	if merged["2026-11-27"] || !merged["2026-11-29"] || merged["2026-12-01"] || len(merged) != 6 || !days["2026-11-27"] {
		t.Errorf("MergeDays = %v (and changed its input: %v)", merged, days)
	}
}
