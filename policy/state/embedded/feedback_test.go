package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/embedded"
)

func reportIDs(cs []state.Complaint) string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ReportID
	}
	return strings.Join(ids, ",")
}

func addComplaint(t *testing.T, s *embedded.Store, account, id string, at time.Time, want bool) {
	t.Helper()
	added, err := s.AddComplaint(context.Background(), state.Complaint{Account: account, ReportID: id, At: at})
	if err != nil || added != want {
		t.Fatalf("AddComplaint(%s, %s) = %v, %v; want added=%v", account, id, added, err, want)
	}
}

func records(t *testing.T, s *embedded.Store, bucket string) int {
	t.Helper()
	n, err := s.DiskRecords(bucket)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Complaints and their report ids survive Close and Open; forgotten ones
// leave the file.
func TestComplaintsReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path, Now: at(t0)})
	addComplaint(t, s, "alice", "r1", t0, true)
	addComplaint(t, s, "bob", "r2", t0.Add(time.Hour), true)
	addComplaint(t, s, "alice", "r3", t0.Add(2*time.Hour), true)
	addComplaint(t, s, "carol", "r0", t0.Add(-time.Hour), true) // received out of order
	addComplaint(t, s, "alice", "r1", t0.Add(3*time.Hour), false)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, embedded.Options{Path: path, Now: at(t0)})
	all, err := s.ComplainedSince(ctx, time.Time{})
	if err != nil || reportIDs(all) != "r0,r1,r2,r3" {
		t.Fatalf("after reopen, ComplainedSince = %+v, %v", all, err)
	}
	if !all[1].At.Equal(t0) || all[1].Account != "alice" {
		t.Errorf("after reopen: %+v", all[1])
	}
	if got, err := s.ComplaintsSince(ctx, "alice", t0.Add(time.Second)); err != nil || reportIDs(got) != "r3" {
		t.Errorf("after reopen, ComplaintsSince(alice) = %+v, %v", got, err)
	}
	addComplaint(t, s, "bob", "r2", t0.Add(4*time.Hour), false) // still known
	if n := records(t, s, "complaints"); n != 4 {
		t.Errorf("%d complaints on disk, want 4", n)
	}

	if err := s.ForgetComplaints(ctx, t0.Add(90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := records(t, s, "complaints"); n != 1 {
		t.Errorf("%d complaints on disk after ForgetComplaints, want 1", n)
	}
	if got, _ := s.ComplaintsSince(ctx, "bob", time.Time{}); got != nil {
		t.Errorf("bob's forgotten complaint still listed: %+v", got)
	}
	s.Close()
	s = open(t, embedded.Options{Path: path, Now: at(t0)})
	defer s.Close()
	if all, _ := s.ComplainedSince(ctx, time.Time{}); reportIDs(all) != "r3" {
		t.Errorf("after ForgetComplaints and reopen: %+v", all)
	}
	addComplaint(t, s, "alice", "r1", t0.Add(5*time.Hour), true) // forgotten with its complaint
}

// ComplaintsSince is on the per-message path: it allocates nothing for an
// account without complaints, or with none recent enough.
func TestComplaintsSinceAllocs(t *testing.T) {
	ctx := context.Background()
	s := open(t, embedded.Options{Path: filepath.Join(t.TempDir(), "state.db"), Now: at(t0)})
	defer s.Close()
	addComplaint(t, s, "alice", "r1", t0, true)
	for _, account := range []string{"bob", "alice"} {
		allocs := testing.AllocsPerRun(1000, func() {
			if got, err := s.ComplaintsSince(ctx, account, t0.Add(time.Hour)); got != nil || err != nil {
				t.Fatalf("ComplaintsSince(%s) = %+v, %v", account, got, err)
			}
		})
		if allocs != 0 {
			t.Errorf("ComplaintsSince(%s) allocates %v times", account, allocs)
		}
	}
}

// Remember allocates nothing of its own (its arrays grow amortized): the
// writer's transaction is where the bytes go.
func TestRememberAllocs(t *testing.T) {
	ctx := context.Background()
	s := open(t, embedded.Options{Path: filepath.Join(t.TempDir(), "state.db"), Now: at(t0), AttributionDelay: time.Hour})
	defer s.Close()
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = postfixID(i)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(ids)-1, func() {
		if err := s.Remember(ctx, ids[i], "alice@example.com", t0); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("Remember allocates %v times", allocs)
	}
}

// Attributions survive Close and Open (Close writes what is still queued),
// the latest of an id again wins, and forgotten ones leave the file.
func TestAttributionsReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	opts := embedded.Options{Path: path, Now: at(t0), AttributionDelay: time.Hour}
	s := open(t, opts)
	const n = 3000
	id := func(i int) string { return fmt.Sprintf("4Q%05dz", i) }
	acct := func(i int) string { return fmt.Sprintf("user%d@example.com", i%7) }
	when := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	for i := range n {
		if err := s.Remember(ctx, id(i), acct(i), when(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remember(ctx, id(0), "mallory", when(n)); err != nil { // id 0 again, later
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, opts)
	check := func(from int) {
		t.Helper()
		for i := range n {
			a, at, ok, err := s.Attribute(ctx, id(i))
			switch {
			case err != nil:
				t.Fatal(err)
			case i == 0:
				if !ok || a != "mallory" || !at.Equal(when(n)) {
					t.Fatalf("Attribute(%s) = %q %v %v, want the second Remember", id(i), a, at, ok)
				}
			case i < from:
				if ok {
					t.Fatalf("Attribute(%s) = %q, want forgotten", id(i), a)
				}
			case !ok || a != acct(i) || !at.Equal(when(i)):
				t.Fatalf("Attribute(%s) = %q %v %v, want %q %v", id(i), a, at, ok, acct(i), when(i))
			}
		}
	}
	check(0)
	if got := records(t, s, "attributions"); got != n+1 {
		t.Errorf("%d attributions on disk, want %d", got, n+1)
	}

	if err := s.ForgetAttributions(ctx, when(n/2)); err != nil {
		t.Fatal(err)
	}
	check(n / 2)
	// The first record of id 0 is forgotten; its second stays.
	if got, want := records(t, s, "attributions"), n-n/2+1; got != want {
		t.Errorf("%d attributions on disk after ForgetAttributions, want %d", got, want)
	}
	s.Close()
	s = open(t, opts)
	defer s.Close()
	check(n / 2)
}

// An attribution rides the next commit's write to the log; with no commit
// it is written alone AttributionDelay after Remember, or at once when 4096
// wait; Close writes what is left. The file gets them at the next
// checkpoint, and a crash before it leaves them in the log for Open.
func TestAttributionWritten(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path, Now: at(t0), AttributionDelay: time.Hour})
	if err := s.Remember(ctx, "4Q1", "alice", t0); err != nil {
		t.Fatal(err)
	}
	if q := s.PendingAttributions(); q != 1 {
		t.Errorf("%d attributions queued before any commit, want 1", q)
	}
	commit(t, s, []state.Counter{{Key: "k", Window: time.Hour, Limit: 10}}, t0)
	if n, q := records(t, s, "attributions"), s.PendingAttributions(); n != 0 || q != 0 {
		t.Errorf("after a commit, %d attributions in the file and %d queued, want 0 and 0: in the log", n, q)
	}
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := records(t, s, "attributions"); n != 1 {
		t.Errorf("%d attributions in the file after a checkpoint, want 1", n)
	}
	if err := s.Remember(ctx, "4Q2", "alice", t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, embedded.Options{Path: path, Now: at(t0), AttributionDelay: time.Hour})
	if n := records(t, s, "attributions"); n != 2 {
		t.Errorf("%d attributions in the file after Close, want 2", n)
	}
	waitWritten := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); s.PendingAttributions() != 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d attributions still queued 10s after Remember", s.PendingAttributions())
			}
		}
	}
	for i := range 4095 {
		if err := s.Remember(ctx, fmt.Sprint("4R", i), "alice", t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.PendingAttributions(); n != 4095 {
		t.Errorf("%d attributions queued, want 4095", n)
	}
	if err := s.Remember(ctx, "4R4095", "alice", t0); err != nil {
		t.Fatal(err)
	}
	waitWritten()
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := records(t, s, "attributions"); n != 2+4096 {
		t.Errorf("%d attributions in the file, want %d", n, 2+4096)
	}
	s.Close()

	s = open(t, embedded.Options{Path: path, Now: at(t0), AttributionDelay: 20 * time.Millisecond})
	if err := s.Remember(ctx, "4Q3", "alice", t0); err != nil {
		t.Fatal(err)
	}
	waitWritten()
	if err := s.Abandon(); err != nil { // no Close: a crash
		t.Fatal(err)
	}
	s = open(t, embedded.Options{Path: path, Now: at(t0)})
	defer s.Close()
	if n := records(t, s, "attributions"); n != 3+4096 {
		t.Errorf("%d attributions in the file after a crash, want %d", n, 3+4096)
	}
	if acct, _, ok, _ := s.Attribute(ctx, "4Q3"); !ok || acct != "alice" {
		t.Errorf("Attribute(4Q3) after a crash = %q %v", acct, ok)
	}
}

// An attribution older than the last ForgetAttributions is not written:
// it would outlive its forgetting on disk.
func TestAttributionForgottenWhileQueued(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path, Now: at(t0)})
	if err := s.ForgetAttributions(ctx, t0); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{t0.Add(-time.Minute), t0} {
		if err := s.Remember(ctx, "4Q"+at.Format("150405"), "alice", at); err != nil {
			t.Fatal(err)
		}
	}
	s.Close() // writes the queue
	s = open(t, embedded.Options{Path: path, Now: at(t0)})
	defer s.Close()
	if n := records(t, s, "attributions"); n != 1 {
		t.Errorf("%d attributions on disk, want 1 (the one at the cutoff)", n)
	}
}

func TestFeedbackInvalidAndClosed(t *testing.T) {
	ctx := context.Background()
	s := open(t, embedded.Options{Path: filepath.Join(t.TempDir(), "state.db"), Now: at(t0)})
	for _, id := range []string{"", strings.Repeat("x", 256)} {
		if err := s.Remember(ctx, id, "alice", t0); err == nil {
			t.Errorf("Remember of a %d-byte id succeeded", len(id))
		}
	}
	s.Close()
	if err := s.Remember(ctx, "4Q1", "alice", t0); !errors.Is(err, state.ErrUnavailable) {
		t.Errorf("Remember after Close: %v, want ErrUnavailable", err)
	}
	if _, err := s.AddComplaint(ctx, state.Complaint{Account: "alice", ReportID: "r1", At: t0}); !errors.Is(err, state.ErrUnavailable) {
		t.Errorf("AddComplaint after Close: %v, want ErrUnavailable", err)
	}
}

// postfixID makes a queue id that looks like Postfix's long ones (14
// characters of base 62).
func postfixID(i int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [14]byte
	x := uint64(i)*0x9E3779B97F4A7C15 | 1<<63
	for j := range b {
		b[j] = digits[x%62]
		x /= 62
	}
	return string(b[:])
}

// TestMemoryPerAttribution measures the heap that attributions cost: a
// month of a busy server is millions of them. It remembers n ids of 14
// bytes from 2,000 accounts, then reopens the file, and reports the heap
// per entry both times.
func TestMemoryPerAttribution(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation sizes")
	}
	n := 1_000_000
	if testing.Short() {
		n = 200_000
	}
	const budget = 100 // bytes per entry
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	opts := embedded.Options{Path: path, Now: at(t0), NoSync: true, AttributionDelay: time.Millisecond}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = postfixID(i)
	}
	var m0, m1 runtime.MemStats
	settle()
	runtime.ReadMemStats(&m0)
	s := open(t, opts)
	start := time.Now()
	for i, id := range ids {
		for i%10_000 == 0 && s.PendingAttributions() > 50_000 {
			time.Sleep(time.Millisecond) // faster than any mail flow: let the writer keep up
		}
		if err := s.Remember(ctx, id, fmt.Sprintf("user%04d@example.com", i%2000), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	for s.PendingAttributions() > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	// The last checkpoint ends: what the writer and the checkpointer hold
	// while they work is not what attributions cost.
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	settle()
	runtime.ReadMemStats(&m1)
	live := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / float64(n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	settle()
	runtime.ReadMemStats(&m0)
	start = time.Now()
	s = open(t, opts)
	load := time.Since(start)
	settle()
	runtime.ReadMemStats(&m1)
	loaded := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / float64(n)
	if _, _, ok, _ := s.Attribute(ctx, ids[n-1]); !ok {
		t.Fatal("last id not attributed after reopen")
	}
	size, err := s.HighWater()
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(ids)
	s.Close()
	t.Logf("%d attributions: %.1f bytes of heap each after Remember (%v, %.0f ns each), %.1f after Open (%v); file %d bytes in use (%.0f per entry)",
		n, live, elapsed.Round(time.Millisecond), float64(elapsed.Nanoseconds())/float64(n), loaded, load.Round(time.Millisecond), size, float64(size)/float64(n))
	if live > budget || loaded > budget {
		t.Errorf("%.1f and %.1f bytes per attribution, budget %d", live, loaded, budget)
	}
}

// TestAttributionsConcurrent remembers from several sessions while others
// attribute and forget, with commits going on, then checks after a reopen
// that everything remembered since the last cutoff is there, right.
func TestAttributionsConcurrent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	opts := embedded.Options{Path: path, Now: at(t0), AttributionDelay: time.Millisecond, ExpireBatch: 7}
	s := open(t, opts)
	const workers, perWorker = 8, 3000
	id := func(w, i int) string { return fmt.Sprintf("%dQ%d", w, i) }
	when := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	var work, bg sync.WaitGroup
	stop := make(chan struct{})
	var cut atomic.Int64 // seconds after t0
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			c := cut.Load()
			if c < 2*perWorker/3 {
				c = cut.Add(5)
			}
			if err := s.ForgetAttributions(ctx, t0.Add(time.Duration(c)*time.Second)); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	for w := range workers {
		work.Go(func() {
			for i := range perWorker {
				if err := s.Remember(ctx, id(w, i), fmt.Sprint("acct", w), when(i)); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					commit(t, s, []state.Counter{{Key: fmt.Sprint("k", w), Window: time.Hour, Limit: 1 << 40}}, t0)
				}
				if acct, _, ok, _ := s.Attribute(ctx, id(w, i/2)); ok && acct != fmt.Sprint("acct", w) {
					t.Errorf("%s attributed to %s", id(w, i/2), acct)
				}
			}
		})
	}
	work.Wait()
	close(stop)
	bg.Wait()
	last := time.Duration(cut.Load()) * time.Second
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, opts)
	defer s.Close()
	if err := s.ForgetAttributions(ctx, t0.Add(last)); err != nil {
		t.Fatal(err)
	}
	kept := 0
	for w := range workers {
		for i := range perWorker {
			acct, _, ok, err := s.Attribute(ctx, id(w, i))
			switch {
			case err != nil:
				t.Fatal(err)
			case when(i).Before(t0.Add(last)):
				if ok {
					t.Fatalf("%s remembered at %v, after the cutoff %v", id(w, i), when(i).Sub(t0), last)
				}
			case !ok || acct != fmt.Sprint("acct", w):
				t.Fatalf("%s: %q %v after reopen", id(w, i), acct, ok)
			default:
				kept++
			}
		}
	}
	if n := records(t, s, "attributions"); n != kept {
		t.Errorf("%d attributions on disk, %d in memory", n, kept)
	}
	t.Logf("cutoff %v: %d attributions kept of %d", last, kept, workers*perWorker)
}
