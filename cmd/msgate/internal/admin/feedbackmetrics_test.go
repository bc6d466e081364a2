package admin

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/feedback"
)

// Every outcome is counted apart; only a complaint that flags the
// account, or makes its flag stricter, counts as flagged.
func TestObserveReport(t *testing.T) {
	m := newTestMetrics()
	deferred := policy.Standing{Flagged: true, Action: policy.RuleDefer}
	rejected := policy.Standing{Flagged: true, Action: policy.RuleReject}
	for _, res := range []feedback.Result{
		{Outcome: feedback.OutcomeRecorded},
		{Outcome: feedback.OutcomeRecorded, Change: policy.Transition{Now: deferred}},
		{Outcome: feedback.OutcomeRecorded, Change: policy.Transition{Was: deferred, Now: deferred}},
		{Outcome: feedback.OutcomeRecorded, Change: policy.Transition{Was: deferred, Now: rejected}},
		{Outcome: feedback.OutcomeDuplicate},
		{Outcome: feedback.OutcomeUnparseable},
	} {
		m.ObserveReport(res)
	}
	for outcome, want := range map[string]float64{
		feedback.OutcomeRecorded: 4, feedback.OutcomeDuplicate: 1, feedback.OutcomeUnparseable: 1,
		feedback.OutcomeForged: 0, feedback.OutcomeUnattributed: 0, feedback.OutcomeNotComplaint: 0,
	} {
		if got := testutil.ToFloat64(m.feedback.reports.WithLabelValues(outcome)); got != want {
			t.Errorf("reports{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	if got := testutil.ToFloat64(m.feedback.flagged); got != 2 {
		t.Errorf("flagged = %v, want 2", got)
	}
}
