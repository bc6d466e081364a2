package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/detect"
)

func newTestMetrics() *Metrics {
	return NewMetrics(func() (float64, float64) { return 0, 0 }, func() detect.Stats { return detect.Stats{} }, func() int { return 0 })
}

// Each label set counts apart, the cached children included.
func TestObserveCountsByLabels(t *testing.T) {
	m := newTestMetrics()
	accept := policy.Decision{Verdict: policy.Accept, Reason: policy.ReasonWithinLimits}
	monitor := policy.Decision{Verdict: policy.Accept, Reason: policy.ReasonRateLimit, Monitor: true}
	deferred := policy.Decision{Verdict: policy.Defer, Reason: policy.ReasonRateLimit}
	for range 3 {
		m.Observe("recipient", accept, time.Millisecond)
	}
	m.Observe("recipient", monitor, time.Millisecond)
	m.Observe("recipient", deferred, time.Millisecond)
	m.Observe("end-of-message", accept, time.Millisecond)
	want := `
# HELP msgate_decisions_total ` + decisionsHelp + `
# TYPE msgate_decisions_total counter
msgate_decisions_total{action="accept",reason="rate-limit",stage="recipient",would_have_acted="true"} 1
msgate_decisions_total{action="accept",reason="within-limits",stage="end-of-message",would_have_acted="false"} 1
msgate_decisions_total{action="accept",reason="within-limits",stage="recipient",would_have_acted="false"} 3
msgate_decisions_total{action="defer",reason="rate-limit",stage="recipient",would_have_acted="false"} 1
`
	if err := testutil.CollectAndCompare(m.decisions, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.latency); n != 2 {
		t.Errorf("latency has %d stages, want 2", n)
	}
}

func TestObserveSync(t *testing.T) {
	m := newTestMetrics()
	for _, d := range []time.Duration{200 * time.Microsecond, 300 * time.Microsecond, 3 * time.Millisecond} {
		m.ObserveSync(d)
	}
	want := `
# HELP msgate_state_sync_duration_seconds Time each fdatasync of the embedded state's log took: the disk wait that end of message shares with the other commits of its batch (none with the memory backend).
# TYPE msgate_state_sync_duration_seconds histogram
msgate_state_sync_duration_seconds_bucket{le="0.0001"} 0
msgate_state_sync_duration_seconds_bucket{le="0.00025"} 1
msgate_state_sync_duration_seconds_bucket{le="0.0005"} 2
msgate_state_sync_duration_seconds_bucket{le="0.00075"} 2
msgate_state_sync_duration_seconds_bucket{le="0.001"} 2
msgate_state_sync_duration_seconds_bucket{le="0.002"} 2
msgate_state_sync_duration_seconds_bucket{le="0.005"} 3
msgate_state_sync_duration_seconds_bucket{le="0.01"} 3
msgate_state_sync_duration_seconds_bucket{le="0.025"} 3
msgate_state_sync_duration_seconds_bucket{le="0.1"} 3
msgate_state_sync_duration_seconds_bucket{le="0.5"} 3
msgate_state_sync_duration_seconds_bucket{le="2.5"} 3
msgate_state_sync_duration_seconds_bucket{le="+Inf"} 3
msgate_state_sync_duration_seconds_sum 0.0035
msgate_state_sync_duration_seconds_count 3
`
	if err := testutil.CollectAndCompare(m.sync, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func BenchmarkObserve(b *testing.B) {
	m := newTestMetrics()
	d := policy.Decision{Verdict: policy.Accept, Reason: policy.ReasonWithinLimits, Microsoft: true}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe("recipient", d, 30*time.Microsecond)
		}
	})
}
