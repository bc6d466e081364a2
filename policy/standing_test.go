package policy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/memory"
)

func thresholdEngine() (*policy.Engine, *memory.Store) {
	s := memory.New()
	cfg := policy.Config{Thresholds: []policy.Threshold{
		{Complaints: 1, Within: 72 * time.Hour, Action: policy.RuleDefer},
		{Complaints: 3, Within: 7 * 24 * time.Hour, Action: policy.RuleReject},
	}}
	return policy.NewEngine(cfg, fakeDetector{}, s), s
}

func TestRecordComplaintTransitions(t *testing.T) {
	e, _ := thresholdEngine()
	record := func(id string, at time.Time) (bool, policy.Transition) {
		t.Helper()
		added, tr, err := e.RecordComplaint(ctx, state.Complaint{Account: "alice", ReportID: id, At: at}, at)
		if err != nil {
			t.Fatal(err)
		}
		return added, tr
	}
	added, tr := record("r1", t0)
	if !added || !tr.Flagged() || tr.Now.Action != policy.RuleDefer || tr.Was.Flagged {
		t.Fatalf("first complaint: added %v, %+v; want a new defer flag", added, tr)
	}
	if added, tr := record("r1", t0.Add(time.Minute)); added || tr.Flagged() {
		t.Fatalf("the same report again: added %v, flagged %v", added, tr.Flagged())
	}
	if _, tr := record("r2", t0.Add(time.Hour)); tr.Flagged() || !tr.Now.Flagged {
		t.Fatalf("second complaint: %+v; want still flagged, no new flag", tr)
	}
	if _, tr := record("r3", t0.Add(2*time.Hour)); !tr.Flagged() || tr.Now.Action != policy.RuleReject || tr.Now.Threshold == nil {
		t.Fatalf("third complaint: %+v; want the flag made stricter (reject)", tr)
	}
}

func TestFlagAndUnflag(t *testing.T) {
	e, s := thresholdEngine()
	if _, err := e.Flag(ctx, "alice", policy.RuleMonitor, "", t0); err == nil {
		t.Fatal("a monitor flag was accepted")
	}
	tr, err := e.Flag(ctx, "alice", policy.RuleReject, "phished", t0)
	if err != nil || !tr.Flagged() || tr.Now.Manual == nil || tr.Now.Manual.Note != "phished" || tr.Now.Action != policy.RuleReject {
		t.Fatalf("Flag = %+v, %v", tr, err)
	}
	tr, err = e.Unflag(ctx, "alice", t0.Add(time.Hour))
	if err != nil || !tr.Unflagged() {
		t.Fatalf("Unflag = %+v, %v", tr, err)
	}
	if _, ok, _ := s.GetFlag(ctx, "alice"); ok {
		t.Error("a manual flag without complaints left a record behind")
	}
	if _, err := e.Unflag(ctx, "alice", t0.Add(2*time.Hour)); !errors.Is(err, policy.ErrNotFlagged) {
		t.Fatalf("Unflag of an unflagged account: %v, want ErrNotFlagged", err)
	}
}

func TestUnflagForgivesComplaints(t *testing.T) {
	e, s := thresholdEngine()
	if _, _, err := e.RecordComplaint(ctx, state.Complaint{Account: "alice", ReportID: "r1", At: t0}, t0); err != nil {
		t.Fatal(err)
	}
	// Flagged by hand too: unflag ends both.
	if _, err := e.Flag(ctx, "alice", policy.RuleDefer, "", t0); err != nil {
		t.Fatal(err)
	}
	tr, err := e.Unflag(ctx, "alice", t0.Add(time.Minute))
	if err != nil || !tr.Unflagged() {
		t.Fatalf("Unflag = %+v, %v", tr, err)
	}
	if f, ok, _ := s.GetFlag(ctx, "alice"); !ok || f.Action != state.ActionForgiven {
		t.Fatalf("flag record after unflag = %+v %v, want the complaints forgiven", f, ok)
	}
	later := t0.Add(time.Hour)
	_, tr, err = e.RecordComplaint(ctx, state.Complaint{Account: "alice", ReportID: "r2", At: later}, later)
	if err != nil || !tr.Flagged() {
		t.Fatalf("a new complaint after unflag: %+v, %v; want flagged again", tr, err)
	}
}
