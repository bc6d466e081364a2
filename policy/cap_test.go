package policy

import (
	"testing"
	"time"
)

func TestCapLimitAt(t *testing.T) {
	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	day := func(n int, h int) time.Time {
		return start.Add(time.Duration(n-1)*24*time.Hour + time.Duration(h)*time.Hour)
	}
	list := Cap{Daily: 500, RampStart: start, Ramp: []int64{100, 200, 400}}
	growth := Cap{Daily: 100, RampStart: start, Growth: 1.5, Ceiling: 300}
	flat := Cap{Daily: 500}
	tests := []struct {
		name    string
		c       Cap
		now     time.Time
		wantDay int
		want    int64
	}{
		{"no ramp", flat, day(5, 3), 0, 500},
		{"list before start", list, start.Add(-time.Hour), 1, 100},
		{"list day 1 start", list, day(1, 0), 1, 100},
		{"list day 1 end", list, day(1, 23), 1, 100},
		{"list day 2", list, day(2, 0), 2, 200},
		{"list day 3", list, day(3, 12), 3, 400},
		{"list after the list", list, day(30, 0), 30, 400},
		{"growth day 1", growth, day(1, 1), 1, 100},
		{"growth day 2", growth, day(2, 1), 2, 150},
		{"growth day 3", growth, day(3, 1), 3, 225},
		{"growth capped by ceiling", growth, day(4, 1), 4, 300},
		{"growth far out", growth, day(5000, 1), 5000, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Day(tt.now); got != tt.wantDay {
				t.Errorf("Day = %d, want %d", got, tt.wantDay)
			}
			if got := tt.c.LimitAt(tt.now); got != tt.want {
				t.Errorf("LimitAt = %d, want %d", got, tt.want)
			}
		})
	}
}
