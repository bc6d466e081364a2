package snds

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/msgate/msgate/policy/replies"
)

// Config is what Assess decides by.
type Config struct {
	// IPs are the addresses msgate watches. Empty watches every row and
	// range of the exports: all the IPs the key gives access to.
	IPs []netip.Addr
	// ComplaintThreshold is the complaint rate, in percent, above which a
	// row calls for an alert. A rate SNDS gives only as a floor ("< 0.1%")
	// is never above it.
	ComplaintThreshold float64
}

// Import is one successful fetch of both exports.
type Import struct {
	At     time.Time `json:"at"`
	Data   []Row     `json:"data"`
	Status []Range   `json:"ip_status"`
}

// IPView is one watched IP as the import shows it.
type IPView struct {
	IP netip.Addr `json:"ip"`
	// InData is false when the data export has no row for the IP (no
	// traffic that day); Filter and Complaints are then zero.
	InData     bool   `json:"in_data"`
	Filter     Filter `json:"filter_result"`
	Complaints Rate   `json:"complaint_rate"`
	Blocked    bool   `json:"blocked"`
}

// Assessment is what an import means.
type Assessment struct {
	// Blocked is true when the IP status export blocks a watched IP;
	// BlockedRanges are the ranges that do.
	Blocked       bool    `json:"blocked"`
	BlockedRanges []Range `json:"blocked_ranges,omitempty"`
	// Green, Yellow and Red count the watched rows by filter result.
	Green  int `json:"green"`
	Yellow int `json:"yellow"`
	Red    int `json:"red"`
	// Worst is the highest complaint rate of a watched row, and WorstIP
	// its IP (zero without rows).
	Worst   Rate       `json:"worst_complaint_rate"`
	WorstIP netip.Addr `json:"worst_ip,omitzero"`
	// RedRows and OverThreshold are the watched rows that call for an
	// alert.
	RedRows       []Row `json:"red_rows,omitempty"`
	OverThreshold []Row `json:"over_threshold,omitempty"`
	// IPs has one entry per configured IP, in Config order; nil when
	// every row is watched.
	IPs []IPView `json:"ips,omitempty"`
}

// Assess decides what imp means under cfg.
func Assess(cfg Config, imp Import) Assessment {
	var a Assessment
	watched := func(ip netip.Addr) bool { return len(cfg.IPs) == 0 || slices.Contains(cfg.IPs, ip.Unmap()) }
	for _, r := range imp.Status {
		if !r.Blocked {
			continue
		}
		if len(cfg.IPs) == 0 || slices.ContainsFunc(cfg.IPs, r.Contains) {
			a.BlockedRanges = append(a.BlockedRanges, r)
		}
	}
	a.Blocked = len(a.BlockedRanges) > 0
	for _, row := range imp.Data {
		if !watched(row.IP) {
			continue
		}
		switch row.Filter {
		case Green:
			a.Green++
		case Yellow:
			a.Yellow++
		case Red:
			a.Red++
			a.RedRows = append(a.RedRows, row)
		}
		if !a.WorstIP.IsValid() || row.Complaints.Worse(a.Worst) {
			a.Worst, a.WorstIP = row.Complaints, row.IP
		}
		if row.Complaints.Over(cfg.ComplaintThreshold) {
			a.OverThreshold = append(a.OverThreshold, row)
		}
	}
	for _, ip := range cfg.IPs {
		v := IPView{IP: ip}
		var latest time.Time
		for _, row := range imp.Data {
			// The latest day's row, should the export span several.
			if row.IP == ip.Unmap() && (!v.InData || row.ActivityStart.After(latest)) {
				v.InData, v.Filter, v.Complaints, latest = true, row.Filter, row.Complaints, row.ActivityStart
			}
		}
		v.Blocked = slices.ContainsFunc(imp.Status, func(r Range) bool { return r.Blocked && r.Contains(ip) })
		a.IPs = append(a.IPs, v)
	}
	return a
}

// Reason says in a line why the assessment blocks, for status and the
// log; "" when it does not.
func (a Assessment) Reason() string {
	if !a.Blocked {
		return ""
	}
	parts := make([]string, 0, len(a.BlockedRanges))
	for _, r := range a.BlockedRanges {
		s := r.String()
		if r.Reason != "" {
			s += ": " + r.Reason
		}
		parts = append(parts, s)
	}
	return "SNDS lists as blocked " + strings.Join(parts, "; ")
}

// RuleName is the rule name an SNDS block shows in the delivery state.
const RuleName = "snds"

// Block is an SNDS block in force for the delivery state: it began at
// Since and holds until Until, which the caller sets past its next import
// and moves on at every attempt for as long as the block is listed (a
// failed import changes nothing, the block included).
type Block struct {
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

// Active reports whether the block is in force at now.
func (b Block) Active(now time.Time) bool { return now.Before(b.Until) }

// Apply folds the block into the delivery state Microsoft's replies made:
// delivery is blocked when either says so, until the later of the two
// ends. The replies' own counts and cap factor are kept.
func (b Block) Apply(st replies.State, now time.Time) replies.State {
	if !b.Active(now) {
		return st
	}
	since, until := b.Since, b.Until
	if st.Paused(now) {
		if st.Since.Before(since) {
			since = st.Since
		}
		if st.Until.After(until) {
			until = st.Until
		}
	}
	st.Mode, st.Since, st.Until, st.Rule, st.Reply = replies.Blocked, since, until, RuleName, b.Reason
	return st
}

// EventKind names what changed between two imports.
type EventKind string

const (
	EventBlocked      EventKind = "snds_blocked"       // a watched IP is listed as blocked
	EventUnblocked    EventKind = "snds_unblocked"     // no watched IP is listed any more
	EventRed          EventKind = "snds_red"           // a watched row turned RED
	EventComplaints   EventKind = "snds_complaints"    // a watched row's complaint rate is over the threshold
	EventImportFailed EventKind = "snds_import_failed" // a fetch or an export failed; nothing changed
)

// Event is one change, for alerts.
type Event struct {
	Kind EventKind `json:"event"`
	At   time.Time `json:"at"`
	// IP and Day (the row's activity start) name the row of a red or
	// complaints event.
	IP  netip.Addr `json:"ip,omitzero"`
	Day time.Time  `json:"day,omitzero"`
	// Reason is the block's (blocked), or why an import failed.
	Reason     string  `json:"reason,omitempty"`
	Complaints string  `json:"complaint_rate,omitempty"`
	Threshold  float64 `json:"threshold,omitempty"`
}

func (e Event) String() string {
	switch e.Kind {
	case EventRed:
		return fmt.Sprintf("%s: %s is RED on %s", e.Kind, e.IP, e.Day.Format(time.DateOnly))
	case EventComplaints:
		return fmt.Sprintf("%s: %s has a complaint rate of %s on %s (threshold %v%%)", e.Kind, e.IP, e.Complaints, e.Day.Format(time.DateOnly), e.Threshold)
	}
	if e.Reason != "" {
		return string(e.Kind) + ": " + e.Reason
	}
	return string(e.Kind)
}

// Events names what changed from prev to cur at now: a block listed or
// lifted, and each red or over-threshold row that prev did not have (a
// row is its IP and day, so a day re-read on the next fetch alerts once).
func Events(cfg Config, prev, cur Assessment, now time.Time) []Event {
	var evs []Event
	switch {
	case cur.Blocked && !prev.Blocked:
		evs = append(evs, Event{Kind: EventBlocked, At: now, Reason: cur.Reason()})
	case !cur.Blocked && prev.Blocked:
		evs = append(evs, Event{Kind: EventUnblocked, At: now})
	}
	for _, r := range cur.RedRows {
		if !slices.ContainsFunc(prev.RedRows, r.sameDay) {
			evs = append(evs, Event{Kind: EventRed, At: now, IP: r.IP, Day: r.ActivityStart})
		}
	}
	for _, r := range cur.OverThreshold {
		if !slices.ContainsFunc(prev.OverThreshold, r.sameDay) {
			evs = append(evs, Event{Kind: EventComplaints, At: now, IP: r.IP, Day: r.ActivityStart,
				Complaints: r.Complaints.String(), Threshold: cfg.ComplaintThreshold})
		}
	}
	return evs
}

func (r Row) sameDay(o Row) bool { return r.IP == o.IP && r.ActivityStart.Equal(o.ActivityStart) }
