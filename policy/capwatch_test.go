package policy

import (
	"fmt"
	"testing"
	"time"
)

func TestCapWatch(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	type step struct {
		used, limit int64
		at          time.Duration // after t0
		want        string        // the levels crossed, as "80 100"
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"below the warning", []step{{79, 100, 0, ""}, {0, 100, time.Minute, ""}}},
		{"each level once", []step{
			{79, 100, 0, ""}, {80, 100, time.Minute, "80"}, {81, 100, 2 * time.Minute, ""},
			{99, 100, 3 * time.Minute, ""}, {100, 100, 4 * time.Minute, "100"}, {100, 100, 5 * time.Minute, ""},
		}},
		{"both at once, lowest first", []step{{10, 100, 0, ""}, {100, 100, time.Minute, "80 100"}}},
		{"a dip in the rolling window does not re-arm", []step{
			{100, 100, 0, "80 100"}, {99, 100, time.Hour, ""}, {70, 100, 2 * time.Hour, ""}, {100, 100, 3 * time.Hour, ""},
		}},
		{"the window rolls over", []step{
			{100, 100, 0, "80 100"}, {100, 100, day - time.Second, ""}, {100, 100, day, "80 100"}, {100, 100, day + time.Hour, ""},
		}},
		{"each level's window counts from its own crossing", []step{
			{80, 100, 0, "80"}, {100, 100, 12 * time.Hour, "100"}, {100, 100, day, "80"}, {100, 100, day + 12*time.Hour, "100"},
		}},
		{"a lowered cap is a new cap", []step{
			{80, 100, 0, "80"}, {80, 50, time.Minute, "80 100"}, {80, 50, 2 * time.Minute, ""},
		}},
		{"a raised cap re-arms below its levels", []step{
			{100, 100, 0, "80 100"}, {100, 200, time.Minute, ""}, {160, 200, 2 * time.Minute, "80"}, {200, 200, 3 * time.Minute, "100"},
		}},
		{"back to the cap that fired is a change too", []step{
			{100, 100, 0, "80 100"}, {100, 200, time.Minute, ""}, {100, 100, 2 * time.Minute, "80 100"},
		}},
		{"disabled crosses nothing and re-arms", []step{
			{100, 100, 0, "80 100"}, {100, 0, time.Minute, ""}, {100, 100, 2 * time.Minute, "80 100"},
		}},
		{"small caps round up", []step{{7, 10, 0, ""}, {8, 10, time.Minute, "80"}, {1, 1, 2 * time.Minute, "80 100"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w CapWatch
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				got := ""
				for j, c := range w.Check(s.used, s.limit, day, now) {
					if c.Used != s.used || c.Limit != s.limit || c.Window != day || !c.At.Equal(now) {
						t.Errorf("step %d: crossing %+v does not carry the use it was given", i, c)
					}
					if j > 0 {
						got += " "
					}
					got += fmt.Sprint(c.Percent)
				}
				if got != s.want {
					t.Errorf("step %d (%d of %d at +%s): crossed %q, want %q", i, s.used, s.limit, s.at, got, s.want)
				}
			}
		})
	}
}
