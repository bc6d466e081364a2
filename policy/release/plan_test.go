package release

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

// held makes candidates from "account:units" specs; each is a minute
// younger than the one before, and its id says its place ("m01" ...).
func held(specs ...string) []Candidate {
	var cs []Candidate
	for i, s := range specs {
		account, units, _ := strings.Cut(s, ":")
		c := Candidate{ID: fmt.Sprintf("m%02d", i+1), Arrival: t0.Add(time.Duration(i) * time.Minute), Account: account, Units: 1}
		if units != "" {
			fmt.Sscan(units, &c.Units)
		}
		cs = append(cs, c)
	}
	return cs
}

// checkPlan compares the released ids, in order, and the reason of each
// message kept.
func checkPlan(t *testing.T, steps []Step, wantReleased string, wantKept map[string]Reason) {
	t.Helper()
	var got []string
	kept := map[string]Reason{}
	for _, s := range steps {
		if s.Release {
			got = append(got, s.ID)
			if s.Order != len(got) {
				t.Errorf("%s: order %d, want %d", s.ID, s.Order, len(got))
			}
		} else {
			kept[s.ID] = s.Reason
		}
	}
	if g := strings.Join(got, " "); g != wantReleased {
		t.Errorf("released %q, want %q", g, wantReleased)
	}
	for id, r := range wantKept {
		if kept[id] != r {
			t.Errorf("%s kept for %q, want %q", id, kept[id], r)
		}
	}
	if len(kept) != len(wantKept) {
		t.Errorf("kept %v, want %v", kept, wantKept)
	}
}

func TestPlan(t *testing.T) {
	flag := func(cs []Candidate, account string) []Candidate {
		for i := range cs {
			if cs[i].Account == account {
				cs[i].Flagged = true
			}
		}
		return cs
	}
	tests := []struct {
		name     string
		cands    []Candidate
		budget   Budget
		released string
		kept     map[string]Reason
	}{
		{"nothing held", nil, Budget{Cap: 10}, "", nil},
		{"all fit, oldest first", held("a", "a", "a"), Budget{Cap: Unlimited}, "m01 m02 m03", nil},
		{"round-robin, each oldest first",
			held("a", "a", "a", "b", "c", "b"), Budget{Cap: Unlimited},
			"m01 m04 m05 m02 m06 m03", nil},
		{"the cap's room, fairly shared",
			held("a", "a", "a", "a", "b", "b", "c"), Budget{Cap: 4},
			"m01 m05 m07 m02",
			map[string]Reason{"m03": ReasonCap, "m04": ReasonCap, "m06": ReasonCap}},
		{"a big message ends its account's turn, not the others'",
			held("a:3", "a:1", "b:1", "b:1"), Budget{Cap: 2},
			"m03 m04",
			map[string]Reason{"m01": ReasonCap, "m02": ReasonCap}},
		{"all or none per message",
			held("a:2", "b:3"), Budget{Cap: 4},
			"m01",
			map[string]Reason{"m02": ReasonCap}},
		{"flagged stays, without a turn",
			flag(held("f", "a", "f", "a"), "f"), Budget{Cap: 1},
			"m02",
			map[string]Reason{"m01": ReasonFlagged, "m03": ReasonFlagged, "m04": ReasonCap}},
		{"account room",
			held("a", "a", "a", "b", "b"), Budget{Cap: Unlimited, Accounts: map[string]int64{"a": 1, "b": Unlimited}},
			"m01 m04 m05",
			map[string]Reason{"m02": ReasonAccount, "m03": ReasonAccount}},
		{"account with no room at all",
			held("a", "b"), Budget{Cap: 5, Accounts: map[string]int64{"a": 0}},
			"m02",
			map[string]Reason{"m01": ReasonAccount}},
		{"max per run",
			held("a", "b", "a", "b"), Budget{Cap: Unlimited, Messages: 3},
			"m01 m02 m03",
			map[string]Reason{"m04": ReasonMaxPerRun}},
		{"paused releases nothing",
			held("a", "b"), Budget{Cap: Unlimited, Paused: true},
			"",
			map[string]Reason{"m01": ReasonPaused, "m02": ReasonPaused}},
		{"unclassified stays, the account goes on",
			func() []Candidate { cs := held("a", "a"); cs[0].Unclassified = true; return cs }(), Budget{Cap: 5},
			"m02",
			map[string]Reason{"m01": ReasonUnclassified}},
		{"zero units always fit",
			held("a:0", "a:1"), Budget{Cap: 0},
			"m01",
			map[string]Reason{"m02": ReasonCap}},
		{"zero cap",
			held("a", "b"), Budget{Cap: 0},
			"",
			map[string]Reason{"m01": ReasonCap, "m02": ReasonCap}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkPlan(t, Plan(tt.cands, tt.budget, t0.Add(time.Hour)), tt.released, tt.kept)
		})
	}
}

// Arrival decides, not the order the queue listed the messages in; equal
// arrivals go by queue id.
func TestPlanOrdersByArrival(t *testing.T) {
	cs := []Candidate{
		{ID: "C", Arrival: t0.Add(2 * time.Second), Account: "a", Units: 1},
		{ID: "B", Arrival: t0, Account: "a", Units: 1},
		{ID: "A", Arrival: t0, Account: "a", Units: 1},
	}
	steps := Plan(cs, Budget{Cap: Unlimited}, t0.Add(time.Minute))
	checkPlan(t, steps, "A B C", nil)
	if steps[0].Waited != time.Minute {
		t.Errorf("waited %v, want 1m", steps[0].Waited)
	}
}

// The acceptance scenario's shape: 100 held, one account flagged, room for
// 30.
func TestPlanHundredHeld(t *testing.T) {
	var specs []string
	for i := range 100 {
		specs = append(specs, []string{"a", "a", "b", "c", "f"}[i%5])
	}
	cs := held(specs...)
	for i := range cs {
		cs[i].Flagged = cs[i].Account == "f"
	}
	steps := Plan(cs, Budget{Cap: 30}, t0.Add(24*time.Hour))
	per := map[string]int{}
	last := map[string]time.Time{}
	n := 0
	for _, s := range steps {
		if !s.Release {
			continue
		}
		n++
		per[s.Account]++
		if s.Arrival.Before(last[s.Account]) {
			t.Errorf("%s released out of its account's order", s.ID)
		}
		last[s.Account] = s.Arrival
	}
	if n != 30 || per["a"] != 10 || per["b"] != 10 || per["c"] != 10 || per["f"] != 0 {
		t.Errorf("released %d: %v, want 30 shared 10/10/10 and none of f", n, per)
	}
}

func TestPlanDoesNotChangeInput(t *testing.T) {
	cs := held("b", "a")
	cs[0].Arrival = t0.Add(time.Hour)
	Plan(cs, Budget{Cap: Unlimited}, t0)
	if cs[0].ID != "m01" || cs[1].ID != "m02" {
		t.Errorf("input reordered: %v", cs)
	}
}
