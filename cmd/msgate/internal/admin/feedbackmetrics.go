package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/msgate/msgate/policy/feedback"
)

// feedbackMetrics count the complaint reports the daemon took (from msgate
// fbl or its spool) and the accounts they flagged.
type feedbackMetrics struct {
	reports *prometheus.CounterVec
	flagged prometheus.Counter
}

func newFeedbackMetrics(reg *prometheus.Registry) *feedbackMetrics {
	f := &feedbackMetrics{
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "msgate_feedback_reports_total",
			Help: "Complaint reports taken, by outcome (recorded, duplicate, not-a-complaint, unattributed, forged, unparseable).",
		}, []string{"outcome"}),
		flagged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "msgate_feedback_flagged_total",
			Help: "Accounts that a recorded complaint flagged, or whose flag it made stricter (defer to reject).",
		}),
	}
	// Every outcome shows from the start, at 0, so that increase() sees
	// the first report.
	for _, o := range []string{feedback.OutcomeRecorded, feedback.OutcomeDuplicate, feedback.OutcomeNotComplaint,
		feedback.OutcomeUnattributed, feedback.OutcomeForged, feedback.OutcomeUnparseable} {
		f.reports.WithLabelValues(o)
	}
	reg.MustRegister(f.reports, f.flagged)
	return f
}

// ObserveReport counts one report the daemon took, and whether its
// complaint flagged the account.
func (m *Metrics) ObserveReport(res feedback.Result) {
	m.feedback.reports.WithLabelValues(res.Outcome).Inc()
	if res.Change.Flagged() {
		m.feedback.flagged.Inc()
	}
}
