package policy_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/memory"
)

// spareStore is a memory store that admits the spares it is asked for,
// each an extra unit reserved in memory, and counts what it is asked.
type spareStore struct {
	*memory.Store
	mu       sync.Mutex
	extra    map[uint64][]state.Reservation
	reserves int
	asked    []int // the spares each ReserveSpare asked for
	own      []int
}

func newSpareStore() *spareStore {
	return &spareStore{Store: memory.New(), extra: map[uint64][]state.Reservation{}}
}

func (s *spareStore) ReserveSpare(ctx context.Context, cs []state.Counter, spare, own int, now time.Time) (state.Outcome, error) {
	s.mu.Lock()
	s.reserves++
	s.asked, s.own = append(s.asked, spare), append(s.own, own)
	s.mu.Unlock()
	out, err := s.Store.Reserve(ctx, cs, now)
	if err != nil || !out.Admitted {
		return out, err
	}
	var extra []state.Reservation
	for range spare {
		o, err := s.Store.Reserve(ctx, cs, now)
		if err != nil || !o.Admitted {
			break
		}
		extra = append(extra, o.Reservation)
	}
	s.mu.Lock()
	s.extra[out.Reservation.ID] = extra
	s.mu.Unlock()
	out.Reservation.Spare = len(extra)
	return out, nil
}

func (s *spareStore) CommitAll(ctx context.Context, rs []state.Reservation, now time.Time) error {
	var commit, release []state.Reservation
	s.mu.Lock()
	for _, r := range rs {
		if err := state.CheckSpent(r); err != nil {
			s.mu.Unlock()
			return err
		}
		extra := s.extra[r.ID]
		delete(s.extra, r.ID)
		commit = append(append(commit, state.Reservation{ID: r.ID}), extra[:r.Spent]...)
		release = append(release, extra[r.Spent:]...)
	}
	s.mu.Unlock()
	for _, r := range release {
		if err := s.Store.Release(ctx, r); err != nil {
			return err
		}
	}
	return s.Store.CommitAll(ctx, commit, now)
}

func (s *spareStore) Release(ctx context.Context, r state.Reservation) error {
	s.mu.Lock()
	extra := s.extra[r.ID]
	delete(s.extra, r.ID)
	s.mu.Unlock()
	for _, x := range extra {
		if err := s.Store.Release(ctx, x); err != nil {
			return err
		}
	}
	return s.Store.Release(ctx, r)
}

// A message's later Microsoft recipients are served from the spares its
// first reservation took: the store is asked once for three recipients,
// twice as many spares once they are spent, and only the recipients count.
func TestSparesServeLaterRecipients(t *testing.T) {
	s := newSpareStore()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(100)}, Cap: capOf(1000, policy.CapDefer)}, fakeDetector{}, s)
	ds, eom := send(e, "alice", "a@outlook.com", "b@hotmail.com", "x@example.com", "c@outlook.com")
	for i, d := range ds {
		if d.Verdict != policy.Accept {
			t.Fatalf("recipient %d: %+v", i, d)
		}
	}
	if eom.Verdict != policy.Accept {
		t.Fatalf("end of message: %+v", eom)
	}
	if s.reserves != 1 {
		t.Errorf("the store was asked %d times for three Microsoft recipients, want once", s.reserves)
	}
	for _, key := range []string{"rate/hourly/alice"} {
		if got := usage(t, s, key, time.Hour); got != 3 {
			t.Errorf("%s used %d, want 3: the recipients only, the spares given back", key, got)
		}
	}
	if got := usage(t, s, "cap", 24*time.Hour); got != 3 {
		t.Errorf("cap used %d, want 3", got)
	}

	// Five recipients: the spares of the first run out after the third,
	// the second reservation asks for twice as many and says the
	// transaction holds 2 already.
	s.asked, s.own, s.reserves = nil, nil, 0
	send(e, "bob", "1@outlook.com", "2@outlook.com", "3@outlook.com", "4@outlook.com", "5@outlook.com")
	if s.reserves != 2 || s.asked[0] != 2 || s.asked[1] != 4 || s.own[0] != 0 || s.own[1] != 2 {
		t.Errorf("five recipients asked the store %d times for %v spares holding %v, want twice for [2 4] holding [0 2]", s.reserves, s.asked, s.own)
	}
	if got := usage(t, s, "rate/hourly/bob", time.Hour); got != 5 {
		t.Errorf("bob used %d, want 5", got)
	}

	// An aborted transaction gives its spares back with its units.
	tx := e.Begin(policy.Envelope{SASLLogin: "carol", Sender: "carol@example.org", ClientIP: "192.0.2.1"})
	e.Recipient(ctx, tx, "a@outlook.com", t0)
	e.Recipient(ctx, tx, "b@outlook.com", t0)
	if tx.Held() != 2 {
		t.Errorf("Held = %d, want 2 (the spare spent, not the one left)", tx.Held())
	}
	if err := e.Abort(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if got := usage(t, s, "rate/hourly/carol", time.Hour); got != 0 {
		t.Errorf("carol used %d after the abort, want 0", got)
	}
}

// A spare does not serve a recipient once the cap in force changed: the
// recipient is asked of the store against the new limit.
func TestSparesFollowTheCapInForce(t *testing.T) {
	s := newSpareStore()
	e := policy.NewEngine(policy.Config{Rules: []policy.Rule{hourly(100)}, Cap: capOf(1000, policy.CapDefer)}, fakeDetector{}, s)
	tx := e.Begin(policy.Envelope{SASLLogin: "alice", Sender: "alice@example.org", ClientIP: "192.0.2.1"})
	e.Recipient(ctx, tx, "a@outlook.com", t0)
	e.SetDelivery(policy.Delivery{CapFactor: 0.001, CapReason: "lowered"}) // a cap of 1
	d := e.Recipient(ctx, tx, "b@outlook.com", t0)
	if s.reserves != 2 {
		t.Fatalf("the store was asked %d times, want 2: the spare was admitted under another cap", s.reserves)
	}
	if d.Verdict != policy.Defer || d.Reason != policy.ReasonDailyCap {
		t.Fatalf("second recipient under a cap of 1: %+v, want deferred by the cap", d)
	}
	e.EndOfMessage(ctx, tx, t0)
	if got := usage(t, s, "cap", 24*time.Hour); got != 1 {
		t.Errorf("cap used %d, want 1", got)
	}
}
