package alert

import (
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/replies"
	"github.com/msgate/msgate/policy/snds"
)

// Event names: the values of Event.Event, and of the metrics' event label.
const (
	Flagged    = "flagged"     // an account's Microsoft mail is held back, or more strictly
	Unflagged  = "unflagged"   // the admin ended an account's flag
	CapWarning = "cap_warning" // the cap's use reached 80%
	CapReached = "cap_reached" // the cap's use reached 100%
	Blocked    = "blocked"     // Microsoft's block replies suspended Microsoft delivery
	Throttled  = "throttled"   // Microsoft's throttle replies suspended it
	Resumed    = "resumed"     // the suspension ended (probation follows)
	CapLowered = "cap_lowered" // a throttle reply lowered the cap
	SNDSStatus = "snds_status" // the server IP's SNDS status changed
)

// Names lists every event name.
var Names = []string{Flagged, Unflagged, CapWarning, CapReached, Blocked, Throttled, Resumed, CapLowered, SNDSStatus}

// Event is one alert, as its JSON: event and time always, the fields of
// its kind otherwise. It never carries a message or a recipient.
type Event struct {
	Event string    `json:"event"`
	Time  time.Time `json:"time"` // RFC 3339, UTC

	// flagged, unflagged
	Account string `json:"account,omitempty"`
	Action  string `json:"action,omitempty"` // defer or reject
	// Reason is "complaints" or "manual" (the admin's flag); for
	// snds_status, SNDS's reason for a block.
	Reason     string `json:"reason,omitempty"`
	Complaints int    `json:"complaints,omitempty"`
	Within     string `json:"within,omitempty"` // the threshold's window
	Note       string `json:"note,omitempty"`   // the admin's

	// cap_warning, cap_reached
	Used    int64  `json:"used,omitempty"`
	Cap     int64  `json:"cap,omitempty"`
	Percent int    `json:"percent,omitempty"`
	Window  string `json:"window,omitempty"`

	// blocked, throttled, resumed, cap_lowered
	Class string `json:"class,omitempty"` // the rule's: block or throttle
	Rule  string `json:"rule,omitempty"`
	Reply string `json:"reply,omitempty"` // Microsoft's reply that triggered it
	// Until ends the suspension (blocked, throttled) or the probation
	// (resumed).
	Until     time.Time `json:"until,omitzero"`
	CapFactor float64   `json:"cap_factor,omitempty"`

	// snds_status: Status is blocked (SNDS lists a watched IP as
	// blocked; Reason says why), unblocked (none is listed any more), red
	// (a row's filter result) or complaints (a row's complaint rate over
	// the threshold); IP and Day name the row.
	Status        string  `json:"status,omitempty"`
	IP            string  `json:"ip,omitempty"`
	Day           string  `json:"day,omitempty"` // YYYY-MM-DD
	ComplaintRate string  `json:"complaint_rate,omitempty"`
	Threshold     float64 `json:"threshold,omitempty"`
}

// FromTransition is the alert for a change of an account's standing: ok
// is false when the change neither flagged nor unflagged it (a second flag
// with the same action, a complaint below every threshold).
func FromTransition(t policy.Transition, now time.Time) (ev Event, ok bool) {
	switch {
	case t.Flagged():
		st := t.Now
		ev = Event{Event: Flagged, Time: now.UTC(), Account: t.Account, Action: st.Action.String()}
		if st.Manual != nil {
			ev.Reason, ev.Note = "manual", st.Manual.Note
		} else {
			ev.Reason, ev.Complaints = "complaints", len(st.Complaints)
			if st.Threshold != nil {
				ev.Within = config.Duration(st.Threshold.Within).String()
			}
		}
		return ev, true
	case t.Unflagged():
		return Event{Event: Unflagged, Time: now.UTC(), Account: t.Account, Action: t.Was.Action.String()}, true
	}
	return Event{}, false
}

// FromCap is the alert for a crossing of the cap's levels.
func FromCap(c policy.CapCrossing) Event {
	name := CapWarning
	if c.Percent >= 100 {
		name = CapReached
	}
	return Event{Event: name, Time: c.At.UTC(), Used: c.Used, Cap: c.Limit, Percent: c.Percent, Window: config.Duration(c.Window).String()}
}

// FromDelivery is the alert for a transition of Microsoft delivery; class
// is the class of the rule that caused it. A kind of transition it does not
// know gives an Event without a name, to be left unsent.
func FromDelivery(e replies.Event, class string) Event {
	name := map[replies.EventKind]string{replies.EventBlocked: Blocked, replies.EventThrottled: Throttled,
		replies.EventResumed: Resumed, replies.EventCapLowered: CapLowered}[e.Kind]
	if class == "" {
		// A transition of no [replies] rule (an SNDS block).
		class = map[replies.EventKind]string{replies.EventBlocked: "block", replies.EventThrottled: "throttle", replies.EventCapLowered: "throttle"}[e.Kind]
	}
	ev := Event{Event: name, Time: e.At.UTC(), Class: class, Rule: e.Rule, Reply: e.Reply, CapFactor: e.CapFactor}
	if !e.Until.IsZero() {
		ev.Until = e.Until.UTC()
	}
	return ev
}

// FromSNDS is the alert for an SNDS import's event: ok is false for one
// that is no change of status (a failed import).
func FromSNDS(e snds.Event) (ev Event, ok bool) {
	status, ok := map[snds.EventKind]string{snds.EventBlocked: "blocked", snds.EventUnblocked: "unblocked",
		snds.EventRed: "red", snds.EventComplaints: "complaints"}[e.Kind]
	if !ok {
		return Event{}, false
	}
	ev = Event{Event: SNDSStatus, Time: e.At.UTC(), Status: status, Reason: e.Reason, ComplaintRate: e.Complaints, Threshold: e.Threshold}
	if e.IP.IsValid() {
		ev.IP = e.IP.String()
	}
	if !e.Day.IsZero() {
		ev.Day = e.Day.Format(time.DateOnly)
	}
	return ev, true
}
