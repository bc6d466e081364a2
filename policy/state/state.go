package state

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Buckets is the number of time buckets a window is divided into.
const Buckets = 60

// ErrUnavailable reports that the backend cannot answer (I/O, network). The
// caller applies its configured failure action.
var ErrUnavailable = errors.New("state: backend unavailable")

// ErrUnknownReservation reports a Commit or Release of a reservation that the
// store does not hold (already committed, released, or never made).
var ErrUnknownReservation = errors.New("state: unknown reservation")

// Counter is one limit that a unit counts against.
type Counter struct {
	Key    string        // e.g. "rate/hourly/alice@example.com"
	Window time.Duration // rolling window
	Limit  int64         // units allowed in the window
	// Soft counters count the unit but never refuse it (monitor rules);
	// Reserve reports when they are over their limit.
	Soft bool
}

// Reservation is a unit held against a set of counters until it is committed
// or released, and the spare units ReserveSpare admitted with it.
type Reservation struct {
	ID uint64
	// Spare is how many units beyond the first were admitted with it, for
	// the next recipients of the same transaction; Spent is how many of
	// them the caller used. A commit counts 1 + Spent units and gives the
	// other spares back; a release gives back all 1 + Spare.
	Spare, Spent int
}

// CheckSpent reports a reservation that claims to have spent spares it
// was not given; CommitAll refuses it and changes nothing. The
// reservations of a backend that admits no spares have Spare 0.
func CheckSpent(r Reservation) error {
	if r.Spent < 0 || r.Spent > r.Spare {
		return fmt.Errorf("committing reservation %d: %d spares spent of %d admitted", r.ID, r.Spent, r.Spare)
	}
	return nil
}

// Outcome is the answer to a Reserve.
type Outcome struct {
	// Admitted is true when the unit was reserved against every counter.
	Admitted bool
	// Blocked is the index in the request of the first hard counter that had
	// no room; -1 when admitted.
	Blocked int
	// Used is the blocking counter's use (committed plus reserved) when
	// refused.
	Used int64
	// OverSoft lists the indexes of soft counters that this unit took past
	// their limit.
	OverSoft []int
	// Reservation identifies the reserved unit when admitted.
	Reservation Reservation
}

// Usage is what a counter has used in its window at some moment.
type Usage struct {
	Committed int64
	Reserved  int64
}

// Store is a state backend: the counters, the account flags, the
// complaints and the attributions, shared by every milter session (and, on
// a shared backend, by every msgate). Every part is required: a backend
// that cannot keep one of them cannot serve msgate, and the conformance
// suite (statetest) runs every part against every backend.
// Implementations are safe for concurrent use. What the parts mean for an
// account (thresholds, flagging, unflagging) is the policy engine's to
// decide; a store only keeps them.
type Store interface {
	Counters
	Flags
	Complaints
	Attributions
	// Close releases the backend's resources.
	Close() error
}

// Counters count units against limits.
type Counters interface {
	// Reserve admits one unit against all counters, or none: a unit refused
	// by one counter consumes nothing from the others. Hard counters are
	// checked in request order; the first without room is reported.
	Reserve(ctx context.Context, counters []Counter, now time.Time) (Outcome, error)
	// ReserveSpare is Reserve that may admit up to spare more units with
	// the one asked, as Reservation.Spare, when every counter is hard and
	// has room for them to spare; a backend may always admit none. Spare
	// units count like reserved ones until a commit or release settles
	// them. A counter refused only because of other transactions'
	// unsettled spares may not be full: the backend waits (within its
	// timeout) for them to be settled before it refuses. own is how many
	// spares the caller's transaction holds on these counters itself: it
	// does not wait for those.
	ReserveSpare(ctx context.Context, counters []Counter, spare, own int, now time.Time) (Outcome, error)
	// Commit turns a reservation into a counted unit at time now. Once Commit
	// returns nil the unit is durable as far as the backend promises.
	Commit(ctx context.Context, r Reservation, now time.Time) error
	// CommitAll commits the units of several reservations (one message's
	// Microsoft recipients) in one step: all of them or none. Each counts
	// 1 + Spent units; its unspent spares are given back.
	CommitAll(ctx context.Context, rs []Reservation, now time.Time) error
	// Release gives a reservation back.
	Release(ctx context.Context, r Reservation) error
	// Usage reports a counter's use in the window ending at now.
	Usage(ctx context.Context, key string, window time.Duration, now time.Time) (Usage, error)
	// Scan lists counters whose key starts with a prefix, for the admin's
	// status view. It is not on the per-message path.
	Scan(ctx context.Context, prefix string, now time.Time) ([]KeyUsage, error)
	// Expire drops expired buckets and idle keys; the daemon calls it
	// periodically so that memory and files stay bounded under churn of
	// many distinct accounts.
	Expire(ctx context.Context, now time.Time) error
}

// BucketWidth is the width of one time bucket of a window (at least 1ns).
func BucketWidth(window time.Duration) time.Duration {
	w := window / Buckets
	if w <= 0 {
		w = 1
	}
	return w
}

// BucketOf is the index of the bucket holding t for a window.
func BucketOf(t time.Time, window time.Duration) int64 {
	return t.UnixNano() / int64(BucketWidth(window))
}

// Oldest is the index of the oldest bucket still inside the window ending at
// now: the bucket holding now-window, which still overlaps the window.
func Oldest(now time.Time, window time.Duration) int64 {
	return BucketOf(now.Add(-window), window)
}

// Rebucket is the bucket under window to of units counted in bucket idx
// under window from (a rule re-declared by a config reload): the bucket
// holding the old bucket's last instant. Bucket indexes depend on the
// bucket width, so kept as they were, widening the window would make units
// never expire and narrowing it would drop them at once; moved this way a
// unit is never forgotten earlier than it would have been under the new
// window from the start, and may be counted up to one old bucket longer.
// Indexes in ascending order stay in ascending order.
func Rebucket(idx int64, from, to time.Duration) int64 {
	ow, nw := int64(BucketWidth(from)), int64(BucketWidth(to))
	return ((idx+1)*ow - 1) / nw
}

// Flag is what the admin said of an account: its Microsoft mail is held
// back (msgate account flag), or, with Action ActionForgiven, the
// complaints received before Since no longer count (msgate account unflag
// of an account flagged by complaints). An account has at most one.
type Flag struct {
	Account string    `json:"account"`
	Action  string    `json:"action"` // ActionDefer, ActionReject or ActionForgiven
	Reason  string    `json:"reason"` // "manual" or "unflagged"
	Note    string    `json:"note,omitempty"`
	Since   time.Time `json:"since"`
}

// The actions of a Flag. The values are what backends persist.
const (
	ActionDefer    = "defer"
	ActionReject   = "reject"
	ActionForgiven = "cleared" // no flag: complaints before Since are forgiven
)

// Flags keeps account flags. Backends that persist counts persist flags
// too.
type Flags interface {
	// Account returns what an account's standing is made of, in one read:
	// its flag (flagged false when none) and its complaints received at or
	// after since, oldest first.
	Account(ctx context.Context, account string, since time.Time) (f Flag, flagged bool, complaints []Complaint, err error)
	SetFlag(ctx context.Context, f Flag) error
	// ClearFlag removes an account's flag; ok is false when it had none.
	ClearFlag(ctx context.Context, account string) (ok bool, err error)
	// GetFlag returns an account's flag; ok is false when it has none.
	GetFlag(ctx context.Context, account string) (f Flag, ok bool, err error)
	ListFlags(ctx context.Context) ([]Flag, error)
}

// KeyUsage is one counter's use, as listed by Scan.
type KeyUsage struct {
	Key    string
	Window time.Duration
	Usage
}

// Complaint is one recipient complaint about an account's mail.
type Complaint struct {
	Account  string    `json:"account"`
	ReportID string    `json:"report_id"` // the report's identity, for de-duplication
	At       time.Time `json:"at"`        // when the complaint was received
}

// Complaints keeps recipient complaints, durably where counts are durable.
// A report is counted once: AddComplaint of a known ReportID changes
// nothing and returns added false.
type Complaints interface {
	AddComplaint(ctx context.Context, c Complaint) (added bool, err error)
	// ComplaintsSince lists an account's complaints received at or after
	// since, oldest first.
	ComplaintsSince(ctx context.Context, account string, since time.Time) ([]Complaint, error)
	// ComplainedSince lists every complaint received at or after since,
	// oldest first (for the status view).
	ComplainedSince(ctx context.Context, since time.Time) ([]Complaint, error)
	// ForgetComplaints drops complaints (and their report identities)
	// received before cutoff.
	ForgetComplaints(ctx context.Context, before time.Time) error
}

// Attributions remembers which account sent a message, by an identifier
// that survives in a complaint's copy of it (Postfix's queue id in its own
// Received header), for reports that lost msgate's stamp.
type Attributions interface {
	Remember(ctx context.Context, id, account string, at time.Time) error
	// Attribute returns the account that sent id; ok is false when unknown.
	Attribute(ctx context.Context, id string) (account string, at time.Time, ok bool, err error)
	// ForgetAttributions drops what was remembered before cutoff.
	ForgetAttributions(ctx context.Context, before time.Time) error
}
