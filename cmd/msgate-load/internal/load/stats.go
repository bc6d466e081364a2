package load

import (
	"math"
	"slices"
	"time"

	"github.com/msgate/msgate/cmd/msgate-load/internal/milterclient"
)

// Recipient classes in outcome counts.
const (
	ClassMicrosoft = "microsoft"
	ClassOther     = "other"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted values by
// the nearest-rank method: the smallest value that at least p percent of
// the values do not exceed. It returns 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Latency summarises per-message latencies, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// summarize sorts lat and summarises it.
func summarize(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Latency{
		P50:  ms(Percentile(lat, 50)),
		P90:  ms(Percentile(lat, 90)),
		P99:  ms(Percentile(lat, 99)),
		Max:  ms(lat[len(lat)-1]),
		Mean: ms(sum / time.Duration(len(lat))),
	}
}

// Outcomes counts recipients by class (microsoft, other) and by the reply
// that decided them (continue, accept, reject, tempfail, discard,
// reply-4xx, reply-5xx).
type Outcomes map[string]map[string]int

// count adds the recipients of one message; ms says which recipients are at
// Microsoft domains.
func (o Outcomes) count(res *milterclient.Result, ms []bool) {
	for i, r := range res.Rcpts {
		class := ClassOther
		if ms[i] {
			class = ClassMicrosoft
		}
		byOutcome := o[class]
		if byOutcome == nil {
			byOutcome = make(map[string]int)
			o[class] = byOutcome
		}
		byOutcome[r.Outcome()]++
	}
}

func (o Outcomes) merge(p Outcomes) {
	for class, byOutcome := range p {
		for outcome, n := range byOutcome {
			if o[class] == nil {
				o[class] = make(map[string]int)
			}
			o[class][outcome] += n
		}
	}
}

// total sums the classes.
func (o Outcomes) total() map[string]int {
	t := make(map[string]int)
	for _, byOutcome := range o {
		for outcome, n := range byOutcome {
			t[outcome] += n
		}
	}
	return t
}
