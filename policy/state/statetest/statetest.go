// Package statetest is the conformance suite every state.Store backend runs,
// so that the memory, embedded and Redis backends cannot drift apart. It
// runs every part of the contract against every backend and skips none: a
// backend without a part does not compile as a state.Store, and one whose
// part does nothing fails that part's tests.
package statetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
)

// Open returns a fresh, empty store for one subtest. The suite closes it.
type Open func(t *testing.T) state.Store

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// Run runs the conformance suite against a backend.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s state.Store)
	}{
		{"LimitIsExact", testLimitIsExact},
		{"AllOrNone", testAllOrNone},
		{"ReleaseGivesBack", testReleaseGivesBack},
		{"CommitCounts", testCommitCounts},
		{"WindowRolls", testWindowRolls},
		{"WindowChange", testWindowChange},
		{"UnknownReservation", testUnknownReservation},
		{"SoftCounters", testSoftCounters},
		{"ConcurrentReserve", testConcurrentReserve},
		{"KeysIndependent", testKeysIndependent},
		{"Expire", testExpire},
		{"CommitAll", testCommitAll},
		{"Spares", testSpares},
		{"ConcurrentSpares", testConcurrentSpares},
		{"Flags", testFlags},
		{"Scan", testScan},
		{"Complaints", testComplaints},
		{"Account", testAccount},
		{"Attributions", testAttributions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

func hard(key string, limit int64) state.Counter {
	return state.Counter{Key: key, Window: time.Hour, Limit: limit}
}

func mustReserve(t *testing.T, s state.Store, cs []state.Counter, now time.Time) state.Outcome {
	t.Helper()
	out, err := s.Reserve(context.Background(), cs, now)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	return out
}

func checkUsage(t *testing.T, s state.Store, key string, window time.Duration, now time.Time, want state.Usage) {
	t.Helper()
	got, err := s.Usage(context.Background(), key, window, now)
	if err != nil {
		t.Fatalf("Usage(%s): %v", key, err)
	}
	if got != want {
		t.Errorf("Usage(%s) at %v = %+v, want %+v", key, now.Sub(t0), got, want)
	}
}

func testLimitIsExact(t *testing.T, s state.Store) {
	cs := []state.Counter{hard("a", 3)}
	for i := range 3 {
		out := mustReserve(t, s, cs, t0)
		if !out.Admitted || out.Blocked != -1 {
			t.Fatalf("reserve %d: %+v, want admitted", i, out)
		}
	}
	out := mustReserve(t, s, cs, t0)
	if out.Admitted || out.Blocked != 0 || out.Used != 3 {
		t.Fatalf("4th reserve: %+v, want refused by counter 0 with used 3", out)
	}
	checkUsage(t, s, "a", time.Hour, t0, state.Usage{Reserved: 3})
}

func testAllOrNone(t *testing.T, s state.Store) {
	full := hard("full", 1)
	if out := mustReserve(t, s, []state.Counter{full}, t0); !out.Admitted {
		t.Fatalf("filling: %+v", out)
	}
	out := mustReserve(t, s, []state.Counter{hard("room", 10), full}, t0)
	if out.Admitted || out.Blocked != 1 {
		t.Fatalf("got %+v, want refused by counter 1", out)
	}
	checkUsage(t, s, "room", time.Hour, t0, state.Usage{})
}

func testReleaseGivesBack(t *testing.T, s state.Store) {
	cs := []state.Counter{hard("a", 1), hard("b", 5)}
	out := mustReserve(t, s, cs, t0)
	if !out.Admitted {
		t.Fatalf("%+v", out)
	}
	if err := s.Release(context.Background(), out.Reservation); err != nil {
		t.Fatalf("Release: %v", err)
	}
	checkUsage(t, s, "a", time.Hour, t0, state.Usage{})
	checkUsage(t, s, "b", time.Hour, t0, state.Usage{})
	if out := mustReserve(t, s, cs, t0); !out.Admitted {
		t.Fatalf("after release: %+v", out)
	}
}

func testCommitCounts(t *testing.T, s state.Store) {
	cs := []state.Counter{hard("a", 2)}
	out := mustReserve(t, s, cs, t0)
	if err := s.Commit(context.Background(), out.Reservation, t0.Add(time.Second)); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	checkUsage(t, s, "a", time.Hour, t0.Add(time.Second), state.Usage{Committed: 1})
	mustReserve(t, s, cs, t0.Add(2*time.Second))
	if out := mustReserve(t, s, cs, t0.Add(2*time.Second)); out.Admitted {
		t.Fatalf("committed and reserved units must both count: %+v", out)
	}
}

func testWindowRolls(t *testing.T, s state.Store) {
	cs := []state.Counter{hard("a", 1)}
	out := mustReserve(t, s, cs, t0)
	if err := s.Commit(context.Background(), out.Reservation, t0); err != nil {
		t.Fatal(err)
	}
	width := state.BucketWidth(time.Hour)
	// Still counted a whole window later...
	at := t0.Add(time.Hour)
	if out := mustReserve(t, s, cs, at); out.Admitted {
		t.Fatalf("unit forgotten before its window ended: %+v", out)
	}
	checkUsage(t, s, "a", time.Hour, at, state.Usage{Committed: 1})
	// ...and forgotten once its bucket has left the window.
	at = t0.Add(time.Hour + 2*width)
	checkUsage(t, s, "a", time.Hour, at, state.Usage{})
	if out := mustReserve(t, s, cs, at); !out.Admitted {
		t.Fatalf("unit still counted after its window: %+v", out)
	}
}

// testWindowChange re-declares a counter with another window, as a config
// reload does, and checks that the units already counted are judged by the
// new window without being forgotten early. For a unit committed at tc:
//
//   - widened from 1h to 2h, it still counts at tc+1h59m and is gone by
//     tc+2h+BucketWidth(2h);
//   - narrowed from 2h to 1h, it still counts at tc+1h and is gone by
//     tc+1h+BucketWidth(2h)+BucketWidth(1h).
//
// A unit may so be counted up to one old bucket longer than its new window
// says, never shorter. Each case runs with tc at the start of a bucket and
// near its end.
func testWindowChange(t *testing.T, s state.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		name             string
		from, to         time.Duration
		countsAt, goneBy time.Duration // after the commit
	}{
		{"widen", time.Hour, 2 * time.Hour, time.Hour + 59*time.Minute, 2*time.Hour + state.BucketWidth(2*time.Hour)},
		{"narrow", 2 * time.Hour, time.Hour, time.Hour, time.Hour + state.BucketWidth(2*time.Hour) + state.BucketWidth(time.Hour)},
	} {
		for _, off := range []time.Duration{0, 59 * time.Second} {
			key := fmt.Sprintf("%s+%v", tc.name, off)
			at := t0.Add(off)
			out := mustReserve(t, s, []state.Counter{{Key: key, Window: tc.from, Limit: 1}}, at)
			if err := s.Commit(ctx, out.Reservation, at); err != nil {
				t.Fatal(err)
			}
			// The reload: the counter is declared with the new window.
			cs := []state.Counter{{Key: key, Window: tc.to, Limit: 1}}
			for _, d := range []time.Duration{time.Minute, tc.countsAt} {
				if out := mustReserve(t, s, cs, at.Add(d)); out.Admitted || out.Used != 1 {
					t.Errorf("%s: window %v changed to %v: %+v %v after the commit, want the unit still counted", key, tc.from, tc.to, out, d)
				}
				checkUsage(t, s, key, tc.to, at.Add(d), state.Usage{Committed: 1})
			}
			checkUsage(t, s, key, tc.to, at.Add(tc.goneBy), state.Usage{})
			if out := mustReserve(t, s, cs, at.Add(tc.goneBy)); !out.Admitted {
				t.Errorf("%s: window %v changed to %v: %+v %v after the commit, want the unit gone", key, tc.from, tc.to, out, tc.goneBy)
			}
		}
	}
}

func testUnknownReservation(t *testing.T, s state.Store) {
	ctx := context.Background()
	out := mustReserve(t, s, []state.Counter{hard("a", 5)}, t0)
	if err := s.Commit(ctx, out.Reservation, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, out.Reservation, t0); !errors.Is(err, state.ErrUnknownReservation) {
		t.Errorf("second Commit: %v, want ErrUnknownReservation", err)
	}
	if err := s.Release(ctx, out.Reservation); !errors.Is(err, state.ErrUnknownReservation) {
		t.Errorf("Release after Commit: %v, want ErrUnknownReservation", err)
	}
	if err := s.Release(ctx, state.Reservation{ID: 1 << 62}); !errors.Is(err, state.ErrUnknownReservation) {
		t.Errorf("Release of unknown: %v, want ErrUnknownReservation", err)
	}
	checkUsage(t, s, "a", time.Hour, t0, state.Usage{Committed: 1})
}

func testSoftCounters(t *testing.T, s state.Store) {
	soft := state.Counter{Key: "m", Window: time.Hour, Limit: 2, Soft: true}
	for i := range 4 {
		out := mustReserve(t, s, []state.Counter{hard("h", 10), soft}, t0)
		if !out.Admitted {
			t.Fatalf("soft counter refused unit %d: %+v", i, out)
		}
		over := len(out.OverSoft) == 1 && out.OverSoft[0] == 1
		if want := i >= 2; over != want {
			t.Errorf("unit %d: OverSoft=%v, want over=%v", i, out.OverSoft, want)
		}
	}
	checkUsage(t, s, "m", time.Hour, t0, state.Usage{Reserved: 4})
}

func testConcurrentReserve(t *testing.T, s state.Store) {
	const limit = 50
	cs := []state.Counter{hard("acct", limit), hard("cap", 1000)}
	fill(t, s, limit, func() (int64, error) {
		out, err := s.Reserve(context.Background(), cs, t0)
		if err != nil || !out.Admitted {
			return 0, err
		}
		if err := s.Commit(context.Background(), out.Reservation, t0); err != nil {
			return 0, fmt.Errorf("committing: %w", err)
		}
		return 1, nil
	})
}

// fill runs tx 4 times in each of 64 sessions at once; what the
// transactions admitted must be exactly limit, committed on "acct" and on
// "cap".
func fill(t *testing.T, s state.Store, limit int64, tx func() (int64, error)) {
	t.Helper()
	const sessions, perSession = 64, 4
	var admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for range sessions {
		wg.Go(func() {
			for range perSession {
				n, err := tx()
				if err != nil {
					errs <- err
					return
				}
				admitted.Add(n)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := admitted.Load(); got != limit {
		t.Fatalf("admitted %d, want exactly %d", got, limit)
	}
	checkUsage(t, s, "acct", time.Hour, t0, state.Usage{Committed: limit})
	checkUsage(t, s, "cap", time.Hour, t0, state.Usage{Committed: limit})
}

func testKeysIndependent(t *testing.T, s state.Store) {
	mustReserve(t, s, []state.Counter{hard("alice", 1)}, t0)
	if out := mustReserve(t, s, []state.Counter{hard("bob", 1)}, t0); !out.Admitted {
		t.Fatalf("bob refused because of alice: %+v", out)
	}
}

func testExpire(t *testing.T, s state.Store) {
	out := mustReserve(t, s, []state.Counter{hard("old", 5)}, t0)
	if err := s.Commit(context.Background(), out.Reservation, t0); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(3 * time.Hour)
	if err := s.Expire(context.Background(), later); err != nil {
		t.Fatalf("Expire: %v", err)
	}
	checkUsage(t, s, "old", time.Hour, later, state.Usage{})
}

func testFlags(t *testing.T, s state.Store) {
	ctx := context.Background()
	if _, ok, err := s.GetFlag(ctx, "alice"); ok || err != nil {
		t.Fatalf("GetFlag of an unflagged account: ok=%v err=%v", ok, err)
	}
	f := state.Flag{Account: "alice", Action: "defer", Reason: "manual", Note: "phished", Since: t0}
	if err := s.SetFlag(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFlag(ctx, state.Flag{Account: "bob", Action: "reject", Reason: "complaints", Since: t0}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.GetFlag(ctx, "alice")
	if err != nil || !ok || !got.Since.Equal(f.Since) || got.Action != f.Action || got.Note != f.Note || got.Reason != f.Reason {
		t.Fatalf("GetFlag = %+v %v %v, want %+v", got, ok, err, f)
	}
	list, err := s.ListFlags(ctx)
	if err != nil || len(list) != 2 || list[0].Account != "alice" || list[1].Account != "bob" {
		t.Fatalf("ListFlags = %+v %v", list, err)
	}
	if ok, err := s.ClearFlag(ctx, "alice"); !ok || err != nil {
		t.Fatalf("ClearFlag = %v %v", ok, err)
	}
	if ok, err := s.ClearFlag(ctx, "alice"); ok || err != nil {
		t.Fatalf("second ClearFlag = %v %v, want false", ok, err)
	}
	if _, ok, _ := s.GetFlag(ctx, "alice"); ok {
		t.Fatal("flag still there after ClearFlag")
	}
}

func testScan(t *testing.T, s state.Store) {
	ctx := context.Background()
	for _, k := range []string{"rate/h/b", "rate/h/a", "rate/h/a", "cap"} {
		out := mustReserve(t, s, []state.Counter{hard(k, 10)}, t0)
		if k != "rate/h/b" {
			if err := s.Commit(ctx, out.Reservation, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := s.Scan(ctx, "rate/h/", t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []state.KeyUsage{
		{Key: "rate/h/a", Window: time.Hour, Usage: state.Usage{Committed: 2}},
		{Key: "rate/h/b", Window: time.Hour, Usage: state.Usage{Reserved: 1}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Scan = %+v, want %+v", got, want)
	}
}

func testComplaints(t *testing.T, s state.Store) {
	ctx := context.Background()
	add := func(account, id string, at time.Time, want bool) {
		t.Helper()
		added, err := s.AddComplaint(ctx, state.Complaint{Account: account, ReportID: id, At: at})
		if err != nil || added != want {
			t.Fatalf("AddComplaint(%s, %s) = %v, %v; want added=%v", account, id, added, err, want)
		}
	}
	add("alice", "r1", t0, true)
	add("alice", "r1", t0.Add(time.Minute), false) // the same report again
	add("bob", "r2", t0.Add(time.Hour), true)
	add("alice", "r3", t0.Add(2*time.Hour), true)
	got, err := s.ComplaintsSince(ctx, "alice", t0)
	if err != nil || len(got) != 2 || got[0].ReportID != "r1" || got[1].ReportID != "r3" || !got[0].At.Equal(t0) {
		t.Fatalf("ComplaintsSince(alice) = %+v, %v", got, err)
	}
	if got, _ := s.ComplaintsSince(ctx, "alice", t0.Add(time.Second)); len(got) != 1 {
		t.Errorf("ComplaintsSince after the first = %+v", got)
	}
	all, err := s.ComplainedSince(ctx, t0)
	if err != nil || len(all) != 3 || all[1].Account != "bob" {
		t.Fatalf("ComplainedSince = %+v, %v", all, err)
	}
	if err := s.ForgetComplaints(ctx, t0.Add(90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.ComplainedSince(ctx, time.Time{}); len(all) != 1 || all[0].ReportID != "r3" {
		t.Errorf("after ForgetComplaints: %+v", all)
	}
	// A forgotten report's identity is forgotten with it.
	add("alice", "r1", t0.Add(3*time.Hour), true)
}

func testAttributions(t *testing.T, s state.Store) {
	ctx := context.Background()
	if err := s.Remember(ctx, "4XyzQ1", "alice", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Remember(ctx, "4XyzQ2", "bob", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	acct, at, ok, err := s.Attribute(ctx, "4XyzQ1")
	if err != nil || !ok || acct != "alice" || !at.Equal(t0) {
		t.Fatalf("Attribute = %q %v %v %v", acct, at, ok, err)
	}
	if _, _, ok, _ := s.Attribute(ctx, "nope"); ok {
		t.Error("unknown id attributed")
	}
	if err := s.ForgetAttributions(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := s.Attribute(ctx, "4XyzQ1"); ok {
		t.Error("forgotten id still attributed")
	}
	if _, _, ok, _ := s.Attribute(ctx, "4XyzQ2"); !ok {
		t.Error("recent id forgotten")
	}
}

func testCommitAll(t *testing.T, s state.Store) {
	ctx := context.Background()
	cs := []state.Counter{hard("acct", 10), hard("cap", 10)}
	var rs []state.Reservation
	for range 3 {
		rs = append(rs, mustReserve(t, s, cs, t0).Reservation)
	}
	// An unknown reservation among them: nothing is committed.
	bad := append(append([]state.Reservation(nil), rs...), state.Reservation{ID: 1 << 62})
	if err := s.CommitAll(ctx, bad, t0); !errors.Is(err, state.ErrUnknownReservation) {
		t.Fatalf("CommitAll with an unknown reservation: %v", err)
	}
	checkUsage(t, s, "acct", time.Hour, t0, state.Usage{Reserved: 3})
	if err := s.CommitAll(ctx, rs, t0); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, s, "acct", time.Hour, t0, state.Usage{Committed: 3})
	checkUsage(t, s, "cap", time.Hour, t0, state.Usage{Committed: 3})
	if err := s.Release(ctx, rs[0]); !errors.Is(err, state.ErrUnknownReservation) {
		t.Errorf("Release after CommitAll: %v", err)
	}
}

func testAccount(t *testing.T, s state.Store) {
	ctx := context.Background()
	if f, ok, cs, err := s.Account(ctx, "alice", t0); err != nil || ok || len(cs) != 0 {
		t.Fatalf("Account of an unknown account = %+v %v %+v %v", f, ok, cs, err)
	}
	for i, at := range []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * time.Hour)} {
		if _, err := s.AddComplaint(ctx, state.Complaint{Account: "alice", ReportID: fmt.Sprint("r", i), At: at}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddComplaint(ctx, state.Complaint{Account: "bob", ReportID: "rb", At: t0}); err != nil {
		t.Fatal(err)
	}
	f := state.Flag{Account: "alice", Action: state.ActionForgiven, Reason: "unflagged", Since: t0.Add(90 * time.Minute)}
	if err := s.SetFlag(ctx, f); err != nil {
		t.Fatal(err)
	}
	got, ok, cs, err := s.Account(ctx, "alice", t0.Add(time.Minute))
	if err != nil || !ok || got.Action != f.Action || !got.Since.Equal(f.Since) {
		t.Fatalf("Account flag = %+v %v %v, want %+v", got, ok, err, f)
	}
	if len(cs) != 2 || cs[0].ReportID != "r1" || cs[1].ReportID != "r2" || !cs[1].At.Equal(t0.Add(2*time.Hour)) || cs[0].Account != "alice" {
		t.Fatalf("Account complaints since the first minute = %+v, want r1 and r2, oldest first", cs)
	}
}

// Spares: what ReserveSpare admits counts like reserved units; a commit
// counts the unit and the spares spent and gives the others back; a
// release gives all back. A backend may admit none, never more than asked
// nor past a limit, and none against a soft counter.
func testSpares(t *testing.T, s state.Store) {
	ctx := context.Background()
	cs := []state.Counter{hard("a", 1000), hard("cap", 1000)}
	reserve := func(spare int) state.Reservation {
		t.Helper()
		out, err := s.ReserveSpare(ctx, cs, spare, 0, t0)
		if err != nil || !out.Admitted {
			t.Fatalf("ReserveSpare: %+v %v", out, err)
		}
		if r := out.Reservation; r.Spare < 0 || r.Spare > spare || r.Spent != 0 {
			t.Fatalf("ReserveSpare(%d) gave %+v", spare, r)
		}
		return out.Reservation
	}
	r := reserve(2)
	checkUsage(t, s, "a", time.Hour, t0, state.Usage{Reserved: int64(1 + r.Spare)})
	r.Spent = r.Spare
	if err := s.CommitAll(ctx, []state.Reservation{r}, t0); err != nil {
		t.Fatal(err)
	}
	committed := int64(1 + r.Spare)
	checkUsage(t, s, "a", time.Hour, t0, state.Usage{Committed: committed})

	r = reserve(2)
	if err := s.CommitAll(ctx, []state.Reservation{r}, t0); err != nil {
		t.Fatal(err)
	}
	committed++
	checkUsage(t, s, "a", time.Hour, t0, state.Usage{Committed: committed})
	checkUsage(t, s, "cap", time.Hour, t0, state.Usage{Committed: committed})

	r = reserve(3)
	if err := s.Release(ctx, r); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, s, "a", time.Hour, t0, state.Usage{Committed: committed})

	// Spending more than was admitted is refused and changes nothing.
	r = reserve(1)
	bad := r
	bad.Spent = r.Spare + 1
	if err := s.CommitAll(ctx, []state.Reservation{bad}, t0); err == nil {
		t.Fatal("CommitAll of a reservation that spent spares it was not given succeeded")
	}
	checkUsage(t, s, "a", time.Hour, t0, state.Usage{Committed: committed, Reserved: int64(1 + r.Spare)})
	if err := s.Release(ctx, r); err != nil {
		t.Fatalf("Release after the refused commit: %v", err)
	}

	// None against a soft counter; never past a limit.
	out, err := s.ReserveSpare(ctx, []state.Counter{hard("b", 1000), {Key: "soft", Window: time.Hour, Limit: 1000, Soft: true}}, 4, 0, t0)
	if err != nil || !out.Admitted || out.Reservation.Spare != 0 {
		t.Fatalf("ReserveSpare with a soft counter = %+v %v, want no spares", out, err)
	}
	tight := []state.Counter{hard("tight", 3)}
	var units int64
	for range 3 {
		out, err := s.ReserveSpare(ctx, tight, 8, 0, t0)
		if err != nil {
			t.Fatal(err)
		}
		if out.Admitted {
			units += int64(1 + out.Reservation.Spare)
		}
	}
	if units != 3 {
		t.Fatalf("reserved %d units against a limit of 3 with spares asked, want 3", units)
	}
	checkUsage(t, s, "tight", time.Hour, t0, state.Usage{Reserved: 3})
}

// ConcurrentSpares: transactions of three recipients each, every one
// spending its reservation's spares before it asks for more, never count
// past a limit and fill it exactly once all are done.
func testConcurrentSpares(t *testing.T, s state.Store) {
	const limit = 50
	cs := []state.Counter{hard("acct", limit), hard("cap", 1000)}
	ctx := context.Background()
	fill(t, s, limit, func() (int64, error) {
		var held []state.Reservation
		var admitted int64
		for range 3 {
			if n := len(held); n > 0 && held[n-1].Spent < held[n-1].Spare {
				held[n-1].Spent++
				admitted++
				continue
			}
			own := 0
			for _, r := range held {
				own += r.Spare
			}
			out, err := s.ReserveSpare(ctx, cs, 2, own, t0)
			if err != nil {
				return 0, err
			}
			if out.Admitted {
				held = append(held, out.Reservation)
				admitted++
			}
		}
		if len(held) > 0 {
			if err := s.CommitAll(ctx, held, t0); err != nil {
				return 0, fmt.Errorf("committing: %w", err)
			}
		}
		return admitted, nil
	})
}
