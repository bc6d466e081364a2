// Package memory is the in-process state backend: counters live in a map
// guarded by one mutex and are lost when the process exits. It is the
// reference implementation of state.Store and the backend for tests and for
// admins who accept losing counts on restart.
//
// A counter re-declared with another window (a config reload) keeps its
// units, re-bucketed for the new window as the embedded backend does: each
// bucket moves to the new bucket holding its last instant, so a unit is
// never forgotten earlier than the new window says, and may be counted up
// to one old bucket longer.
package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/msgate/msgate/policy/state"
)

type bucket struct {
	idx   int64
	count int64
}

type counter struct {
	window   time.Duration
	buckets  []bucket // ascending idx
	total    int64    // sum of buckets' counts
	reserved int64
}

// trim drops buckets that left the window ending at now.
func (c *counter) trim(now time.Time) {
	oldest := state.Oldest(now, c.window)
	n := 0
	for n < len(c.buckets) && c.buckets[n].idx < oldest {
		c.total -= c.buckets[n].count
		n++
	}
	if n > 0 {
		c.buckets = append(c.buckets[:0], c.buckets[n:]...)
	}
}

// rewindow re-buckets the units for a new window (state.Rebucket), merging
// the old buckets that land in one new bucket.
func (c *counter) rewindow(w time.Duration) {
	if c.window == w {
		return
	}
	from := c.window
	c.window = w
	out := c.buckets[:0] // new indexes never decrease, so in place is safe
	for _, b := range c.buckets {
		j := state.Rebucket(b.idx, from, w)
		if l := len(out); l > 0 && out[l-1].idx >= j {
			out[l-1].count += b.count
		} else {
			out = append(out, bucket{idx: j, count: b.count})
		}
	}
	c.buckets = out
}

func (c *counter) add(now time.Time, n int64) {
	idx := state.BucketOf(now, c.window)
	if l := len(c.buckets); l > 0 && c.buckets[l-1].idx >= idx {
		// Same bucket, or a clock that stepped back: count in the newest
		// bucket so the order stays ascending.
		c.buckets[l-1].count += n
	} else {
		c.buckets = append(c.buckets, bucket{idx: idx, count: n})
	}
	c.total += n
}

func (c *counter) idle() bool { return c.total == 0 && c.reserved == 0 }

type reservation struct {
	keys     []string
	counters []*counter
}

// Store is the in-memory backend. The zero value is not usable; call New.
type Store struct {
	mu       sync.Mutex
	counters *state.KeyTable[counter]
	pending  map[uint64]reservation
	nextID   uint64

	flags state.FlagTable

	fbMu       sync.RWMutex
	complaints []state.Complaint // in the order received
	reports    map[string]bool
	attrib     map[string]attribution
}

type attribution struct {
	account string
	at      time.Time
}

var _ state.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		counters: state.NewKeyTable[counter](),
		pending:  make(map[uint64]reservation),
		reports:  make(map[string]bool),
		attrib:   make(map[string]attribution),
	}
}

func (s *Store) get(key string, window time.Duration, now time.Time) *counter {
	c, ok := s.counters.Get(key)
	if !ok {
		c = &counter{window: window}
		s.counters.Put(key, c)
		return c
	}
	if c.window != window {
		// The rule's window changed (config reload): keep the units, judge
		// them by the new window.
		c.rewindow(window)
	}
	c.trim(now)
	return c
}

// Reserve implements state.Store.
func (s *Store) Reserve(_ context.Context, counters []state.Counter, now time.Time) (state.Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range counters {
		if k.Soft {
			continue
		}
		c := s.get(k.Key, k.Window, now)
		if used := c.total + c.reserved; used+1 > k.Limit {
			s.dropIfIdle(k.Key, c)
			return state.Outcome{Blocked: i, Used: used}, nil
		}
	}
	out := state.Outcome{Admitted: true, Blocked: -1}
	res := reservation{keys: make([]string, len(counters)), counters: make([]*counter, len(counters))}
	for i, k := range counters {
		c := s.get(k.Key, k.Window, now)
		c.reserved++
		res.keys[i], res.counters[i] = k.Key, c
		if k.Soft && c.total+c.reserved > k.Limit {
			out.OverSoft = append(out.OverSoft, i)
		}
	}
	s.nextID++
	s.pending[s.nextID] = res
	out.Reservation = state.Reservation{ID: s.nextID}
	return out, nil
}

// ReserveSpare implements state.Store: this backend admits no spares;
// each unit is one decision in memory.
func (s *Store) ReserveSpare(ctx context.Context, counters []state.Counter, _, _ int, now time.Time) (state.Outcome, error) {
	return s.Reserve(ctx, counters, now)
}

// Commit implements state.Store.
func (s *Store) Commit(ctx context.Context, r state.Reservation, now time.Time) error {
	return s.CommitAll(ctx, []state.Reservation{r}, now)
}

// CommitAll implements state.Store.
func (s *Store) CommitAll(_ context.Context, rs []state.Reservation, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if _, ok := s.pending[r.ID]; !ok {
			return fmt.Errorf("committing reservation %d: %w", r.ID, state.ErrUnknownReservation)
		}
		if err := state.CheckSpent(r); err != nil {
			return err
		}
	}
	for _, r := range rs {
		res := s.pending[r.ID]
		delete(s.pending, r.ID)
		for _, c := range res.counters {
			c.reserved--
			c.trim(now)
			c.add(now, 1)
		}
	}
	return nil
}

// Release implements state.Store.
func (s *Store) Release(_ context.Context, r state.Reservation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := s.pending[r.ID]
	if !ok {
		return fmt.Errorf("releasing reservation %d: %w", r.ID, state.ErrUnknownReservation)
	}
	delete(s.pending, r.ID)
	for i, c := range res.counters {
		c.reserved--
		s.dropIfIdle(res.keys[i], c)
	}
	return nil
}

// Usage implements state.Store.
func (s *Store) Usage(_ context.Context, key string, window time.Duration, now time.Time) (state.Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.counters.Get(key)
	if !ok {
		return state.Usage{}, nil
	}
	c.trim(now)
	u := state.Usage{Committed: c.total, Reserved: c.reserved}
	s.dropIfIdle(key, c)
	return u, nil
}

// Expire implements state.Store: it drops expired buckets and idle keys.
func (s *Store) Expire(_ context.Context, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters.Range(func(k state.Key, c *counter) bool {
		c.trim(now)
		if c.idle() {
			s.counters.DeleteKey(k)
		}
		return true
	})
	return nil
}

// Len is the number of keys the store tracks.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters.Len()
}

// dropIfIdle forgets an idle key. A key is held by one counter at a time:
// a reservation's counter is the key's until the key is dropped, which
// happens only once nothing is reserved against it.
func (s *Store) dropIfIdle(key string, c *counter) {
	if c.idle() {
		s.counters.Delete(key)
	}
}

// Close implements state.Store.
func (s *Store) Close() error { return nil }

// SetFlag implements state.Store.
func (s *Store) SetFlag(_ context.Context, f state.Flag) error {
	s.flags.Set(f)
	return nil
}

// ClearFlag implements state.Store.
func (s *Store) ClearFlag(_ context.Context, account string) (bool, error) {
	return s.flags.Delete(account), nil
}

// GetFlag implements state.Store.
func (s *Store) GetFlag(_ context.Context, account string) (state.Flag, bool, error) {
	f, ok := s.flags.Get(account)
	return f, ok, nil
}

// Account implements state.Store: the flag and the complaints, both in
// memory.
func (s *Store) Account(ctx context.Context, account string, since time.Time) (state.Flag, bool, []state.Complaint, error) {
	f, ok, _ := s.GetFlag(ctx, account)
	cs, err := s.ComplaintsSince(ctx, account, since)
	return f, ok, cs, err
}

// ListFlags implements state.Store, ordered by account.
func (s *Store) ListFlags(_ context.Context) ([]state.Flag, error) {
	return s.flags.List(), nil
}

// Scan implements state.Store, ordered by key.
func (s *Store) Scan(_ context.Context, prefix string, now time.Time) ([]state.KeyUsage, error) {
	s.mu.Lock()
	var out []state.KeyUsage
	s.counters.Range(func(k state.Key, c *counter) bool {
		if !k.HasPrefix(prefix) {
			return true
		}
		c.trim(now)
		out = append(out, state.KeyUsage{Key: k.String(), Window: c.window, Usage: state.Usage{Committed: c.total, Reserved: c.reserved}})
		return true
	})
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b state.KeyUsage) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// AddComplaint implements state.Store.
func (s *Store) AddComplaint(_ context.Context, c state.Complaint) (bool, error) {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	if s.reports[c.ReportID] {
		return false, nil
	}
	s.reports[c.ReportID] = true
	s.complaints = append(s.complaints, c)
	if n := len(s.complaints); n > 1 && c.At.Before(s.complaints[n-2].At) {
		// Complaints are rare: keeping them sorted by time is cheap.
		slices.SortStableFunc(s.complaints, func(a, b state.Complaint) int { return a.At.Compare(b.At) })
	}
	return true, nil
}

// ComplaintsSince implements state.Store.
func (s *Store) ComplaintsSince(_ context.Context, account string, since time.Time) ([]state.Complaint, error) {
	s.fbMu.RLock()
	defer s.fbMu.RUnlock()
	var out []state.Complaint
	for _, c := range s.complaints {
		if c.Account == account && !c.At.Before(since) {
			out = append(out, c)
		}
	}
	return out, nil
}

// ComplainedSince implements state.Store.
func (s *Store) ComplainedSince(_ context.Context, since time.Time) ([]state.Complaint, error) {
	s.fbMu.RLock()
	defer s.fbMu.RUnlock()
	var out []state.Complaint
	for _, c := range s.complaints {
		if !c.At.Before(since) {
			out = append(out, c)
		}
	}
	return out, nil
}

// ForgetComplaints implements state.Store.
func (s *Store) ForgetComplaints(_ context.Context, before time.Time) error {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	n := 0
	for n < len(s.complaints) && s.complaints[n].At.Before(before) {
		delete(s.reports, s.complaints[n].ReportID)
		n++
	}
	s.complaints = slices.Delete(s.complaints, 0, n)
	return nil
}

// Remember implements state.Store.
func (s *Store) Remember(_ context.Context, id, account string, at time.Time) error {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	s.attrib[id] = attribution{account, at}
	return nil
}

// Attribute implements state.Store.
func (s *Store) Attribute(_ context.Context, id string) (string, time.Time, bool, error) {
	s.fbMu.RLock()
	defer s.fbMu.RUnlock()
	a, ok := s.attrib[id]
	return a.account, a.at, ok, nil
}

// ForgetAttributions implements state.Store.
func (s *Store) ForgetAttributions(_ context.Context, before time.Time) error {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	for id, a := range s.attrib {
		if a.at.Before(before) {
			delete(s.attrib, id)
		}
	}
	return nil
}
