package release

import (
	"cmp"
	"slices"
	"time"
)

// Unlimited is a room that no count reaches.
const Unlimited int64 = -1

// Candidate is one held message with a Microsoft recipient, as the daemon
// knows it.
type Candidate struct {
	ID      string    `json:"queue_id"`
	Arrival time.Time `json:"arrival_time"`
	// Account is who sent it: msgate's record of the queue id, else the
	// envelope sender.
	Account string `json:"account"`
	// Units is the message's Microsoft recipients still to be delivered,
	// each counted once: what its release counts against the cap and the
	// account's rules (0 for the null sender, which counts against
	// nothing).
	Units int `json:"units"`
	// Flagged accounts' mail stays held.
	Flagged bool `json:"flagged,omitempty"`
	// Unclassified is set when a recipient's domain could not be
	// classified (DNS failure): the units are not known, so the message
	// stays held this time.
	Unclassified bool `json:"unclassified,omitempty"`
}

// Budget is the room a release may use.
type Budget struct {
	// Cap is the units the server-wide cap has room for; Unlimited when
	// there is no hard cap.
	Cap int64
	// Accounts is the units each account's hard rules have room for: the
	// least of them. An account not listed has no limit (exempt, or no
	// rules).
	Accounts map[string]int64
	// Messages bounds the messages released in one run; 0 is no bound.
	Messages int
	// Paused is set while Microsoft delivery is suspended (or on
	// probation): nothing is released.
	Paused bool
}

// Reason says why a held message stays held.
type Reason string

// The reasons a message stays held.
const (
	ReasonFlagged      Reason = "flagged"         // its account is flagged
	ReasonCap          Reason = "cap_full"        // the cap has no room for it
	ReasonAccount      Reason = "account_limit"   // its account's rules have no room for it
	ReasonMaxPerRun    Reason = "max_per_run"     // this run released as many as it may
	ReasonPaused       Reason = "delivery_paused" // Microsoft delivery is suspended
	ReasonUnclassified Reason = "dns_failure"     // a recipient's domain could not be classified
)

// Step is the plan for one message.
type Step struct {
	Candidate
	// Release is set for a message to release; Order is its place in the
	// release order, from 1.
	Release bool `json:"release"`
	Order   int  `json:"order,omitempty"`
	// Reason says why a message stays held ("" when released).
	Reason Reason `json:"reason,omitempty"`
	// Waited is how long the message has been in the queue at the plan's
	// time.
	Waited time.Duration `json:"-"`
}

// Plan decides which held messages to release now: the releases first, in
// the order to run them, then the messages that stay held, oldest first.
//
// Accounts take turns (round-robin, the account with the oldest message
// first), and each account's messages leave oldest first. A message leaves
// only when the cap and its account have room for all its units; when its
// account's next message does not fit, that account's turn ends for this run
// (its later messages do not overtake it), while the other accounts go on.
// A flagged account's mail, and a message whose units are not known, stay
// held without ending the turn of anyone else.
func Plan(cands []Candidate, b Budget, now time.Time) []Step {
	steps := make([]Step, len(cands))
	for i, c := range cands {
		steps[i] = Step{Candidate: c, Waited: max(now.Sub(c.Arrival), 0)}
	}
	slices.SortStableFunc(steps, func(a, b Step) int {
		return cmp.Or(a.Arrival.Compare(b.Arrival), cmp.Compare(a.ID, b.ID))
	})
	// Each account's queue, oldest first; accounts in the order of their
	// oldest message.
	var order []string
	queues := map[string][]int{}
	for i := range steps {
		s := &steps[i]
		switch {
		case b.Paused:
			s.Reason = ReasonPaused
			continue
		case s.Flagged:
			s.Reason = ReasonFlagged
			continue
		case s.Unclassified:
			s.Reason = ReasonUnclassified
			continue
		}
		if _, ok := queues[s.Account]; !ok {
			order = append(order, s.Account)
		}
		queues[s.Account] = append(queues[s.Account], i)
	}
	capRoom := b.Cap
	room := map[string]int64{}
	for a, r := range b.Accounts {
		room[a] = r
	}
	released := 0
	for len(order) > 0 {
		next := order[:0]
		for _, a := range order {
			q := queues[a]
			s := &steps[q[0]]
			units := int64(s.Units)
			r, limited := room[a]
			switch {
			case b.Messages > 0 && released == b.Messages:
				s.Reason = ReasonMaxPerRun
			case capRoom != Unlimited && units > capRoom:
				s.Reason = ReasonCap
			case limited && r != Unlimited && units > r:
				s.Reason = ReasonAccount
			default:
				released++
				s.Release, s.Order = true, released
				if capRoom != Unlimited {
					capRoom -= units
				}
				if limited && r != Unlimited {
					room[a] = r - units
				}
				if len(q) > 1 {
					queues[a] = q[1:]
					next = append(next, a)
				}
				continue
			}
			// The account's turn ends: its later messages stay, for the
			// same reason.
			for _, i := range q[1:] {
				steps[i].Reason = s.Reason
			}
		}
		order = next
	}
	slices.SortStableFunc(steps, func(a, b Step) int {
		switch {
		case a.Release && b.Release:
			return cmp.Compare(a.Order, b.Order)
		case a.Release:
			return -1
		case b.Release:
			return 1
		}
		return 0 // already oldest first
	})
	return steps
}
