package load

import (
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate-load/internal/milterclient"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{"none", nil, 50, 0},
		{"one value", []time.Duration{7}, 99, 7},
		{"p50 of 1..100", hundred, 50, 50},
		{"p90 of 1..100", hundred, 90, 90},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100 of 1..100", hundred, 100, 100},
		{"p50 of 1..4 is the second", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"p99 of 1..10 is the max", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
		{"p0 clamps to the min", []time.Duration{3, 4}, 0, 3},
	} {
		if got := Percentile(tc.values, tc.p); got != tc.want {
			t.Errorf("%s: Percentile(p%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	lat := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	got := summarize(lat)
	want := Latency{P50: 2, P90: 4, P99: 4, Max: 4, Mean: 2.5}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
}

func TestOutcomesCount(t *testing.T) {
	o := make(Outcomes)
	res := &milterclient.Result{Rcpts: []milterclient.Reply{
		{Action: milterclient.ReplyCode, Code: 451},
		{Action: milterclient.Continue},
		{Action: milterclient.ReplyCode, Code: 550},
		{Action: milterclient.Accept},
	}}
	o.count(res, []bool{true, false, true, true})
	o.count(res, []bool{true, false, true, true})
	want := map[string]map[string]int{
		ClassMicrosoft: {"reply-4xx": 2, "reply-5xx": 2, "accept": 2},
		ClassOther:     {"continue": 2},
	}
	for class, byOutcome := range want {
		for outcome, n := range byOutcome {
			if o[class][outcome] != n {
				t.Errorf("%s %s = %d, want %d (all: %v)", class, outcome, o[class][outcome], n, o)
			}
		}
	}
	if total := o.total(); total["reply-4xx"] != 2 || total["continue"] != 2 || len(total) != 4 {
		t.Errorf("total %v", total)
	}
}
