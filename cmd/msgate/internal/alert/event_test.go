package alert

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/replies"
	"github.com/msgate/msgate/policy/snds"
	"github.com/msgate/msgate/policy/state"
)

func TestAlertEventJSON(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 30, 0, 0, time.FixedZone("CET", 3600))
	manual := &state.Flag{Account: "mallory", Action: "reject", Reason: "manual", Note: "phished", Since: now}
	threshold := &policy.Threshold{Complaints: 3, Within: 7 * 24 * time.Hour, Action: policy.RuleReject}
	complaints := []state.Complaint{{}, {}, {}}
	flag := func(t policy.Transition) Event {
		ev, ok := FromTransition(t, now)
		if !ok {
			return Event{Event: "none"}
		}
		return ev
	}
	sndsEvent := func(e snds.Event) Event {
		ev, ok := FromSNDS(e)
		if !ok {
			return Event{Event: "none"}
		}
		return ev
	}
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"manual flag", flag(policy.Transition{Account: "mallory", Now: policy.Standing{Flagged: true, Action: policy.RuleReject, Manual: manual}}),
			`{"event":"flagged","time":"2026-12-03T08:30:00Z","account":"mallory","action":"reject","reason":"manual","note":"phished"}`},
		{"complaints flag", flag(policy.Transition{Account: "alice", Was: policy.Standing{Flagged: true, Action: policy.RuleDefer},
			Now: policy.Standing{Flagged: true, Action: policy.RuleReject, Threshold: threshold, Complaints: complaints}}),
			`{"event":"flagged","time":"2026-12-03T08:30:00Z","account":"alice","action":"reject","reason":"complaints","complaints":3,"within":"7d"}`},
		{"same flag again", flag(policy.Transition{Account: "mallory", Was: policy.Standing{Flagged: true, Action: policy.RuleDefer, Manual: manual},
			Now: policy.Standing{Flagged: true, Action: policy.RuleDefer, Manual: manual}}), `{"event":"none","time":"0001-01-01T00:00:00Z"}`},
		{"unflag", flag(policy.Transition{Account: "mallory", Was: policy.Standing{Flagged: true, Action: policy.RuleDefer}}),
			`{"event":"unflagged","time":"2026-12-03T08:30:00Z","account":"mallory","action":"defer"}`},
		{"cap warning", FromCap(policy.CapCrossing{Percent: 80, Used: 400, Limit: 500, Window: 24 * time.Hour, At: now}),
			`{"event":"cap_warning","time":"2026-12-03T08:30:00Z","used":400,"cap":500,"percent":80,"window":"1d"}`},
		{"cap reached", FromCap(policy.CapCrossing{Percent: 100, Used: 500, Limit: 500, Window: 12 * time.Hour, At: now}),
			`{"event":"cap_reached","time":"2026-12-03T08:30:00Z","used":500,"cap":500,"percent":100,"window":"12h"}`},
		{"blocked", FromDelivery(replies.Event{Kind: replies.EventBlocked, At: now, Rule: "block_list", Reply: "5.7.1 ... (S3150)", Until: now.Add(2 * time.Hour)}, "block"),
			`{"event":"blocked","time":"2026-12-03T08:30:00Z","class":"block","rule":"block_list","reply":"5.7.1 ... (S3150)","until":"2026-12-03T10:30:00Z"}`},
		{"resumed", FromDelivery(replies.Event{Kind: replies.EventResumed, At: now, Rule: "ip_reputation", Until: now.Add(10 * time.Minute)}, "throttle"),
			`{"event":"resumed","time":"2026-12-03T08:30:00Z","class":"throttle","rule":"ip_reputation","until":"2026-12-03T08:40:00Z"}`},
		{"cap lowered", FromDelivery(replies.Event{Kind: replies.EventCapLowered, At: now, Rule: "server_busy", CapFactor: 0.5}, "throttle"),
			`{"event":"cap_lowered","time":"2026-12-03T08:30:00Z","class":"throttle","rule":"server_busy","cap_factor":0.5}`},
		{"snds blocked", sndsEvent(snds.Event{Kind: snds.EventBlocked, At: now, Reason: "Blocked due to user complaints or other evidence of spamming"}),
			`{"event":"snds_status","time":"2026-12-03T08:30:00Z","reason":"Blocked due to user complaints or other evidence of spamming","status":"blocked"}`},
		{"snds complaints", sndsEvent(snds.Event{Kind: snds.EventComplaints, At: now, IP: netip.MustParseAddr("192.0.2.25"),
			Day: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), Complaints: "0.5%", Threshold: 0.3}),
			`{"event":"snds_status","time":"2026-12-03T08:30:00Z","status":"complaints","ip":"192.0.2.25","day":"2026-12-02","complaint_rate":"0.5%","threshold":0.3}`},
		{"snds import failed", sndsEvent(snds.Event{Kind: snds.EventImportFailed, At: now, Reason: "timeout"}), `{"event":"none","time":"0001-01-01T00:00:00Z"}`},
		{"an SNDS block of delivery", FromDelivery(replies.Event{Kind: replies.EventBlocked, At: now, Rule: "snds", Reply: "listed", Until: now.Add(time.Hour)}, ""),
			`{"event":"blocked","time":"2026-12-03T08:30:00Z","class":"block","rule":"snds","reply":"listed","until":"2026-12-03T09:30:00Z"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.ev)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, b, tt.want)
		}
	}
}
