package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/embedded"
	"github.com/msgate/msgate/policy/state/statetest"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

func open(t testing.TB, opts embedded.Options) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// commit reserves and commits one unit, failing the test on refusal.
func commit(t testing.TB, s state.Store, cs []state.Counter, now time.Time) {
	t.Helper()
	ctx := context.Background()
	out, err := s.Reserve(ctx, cs, now)
	if err != nil || !out.Admitted {
		t.Fatalf("Reserve(%v) = %+v, %v", cs[0].Key, out, err)
	}
	if err := s.Commit(ctx, out.Reservation, now); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func usage(t testing.TB, s state.Store, key string, window time.Duration, now time.Time) state.Usage {
	t.Helper()
	u, err := s.Usage(context.Background(), key, window, now)
	if err != nil {
		t.Fatalf("Usage(%s): %v", key, err)
	}
	return u
}

func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		return open(t, embedded.Options{Path: filepath.Join(t.TempDir(), "state.db"), Now: at(t0)})
	})
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path, Now: at(t0)})
	type use struct {
		key    string
		window time.Duration
		units  int
	}
	uses := []use{{"rate/hourly/alice", time.Hour, 3}, {"rate/daily/alice", 24 * time.Hour, 5}, {"cap", 24 * time.Hour, 8}}
	for i := range 8 {
		now := t0.Add(time.Duration(i) * 10 * time.Minute)
		var cs []state.Counter
		for _, u := range uses {
			if i < u.units {
				cs = append(cs, state.Counter{Key: u.key, Window: u.window, Limit: 100})
			}
		}
		commit(t, s, cs, now)
	}
	// A reservation is not persisted: it dies with the process.
	if _, err := s.Reserve(context.Background(), []state.Counter{{Key: "cap", Window: 24 * time.Hour, Limit: 100}}, t0); err != nil {
		t.Fatal(err)
	}
	flag := state.Flag{Account: "bob", Action: "reject", Reason: "complaints", Since: t0}
	if err := s.SetFlag(context.Background(), flag); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(90 * time.Minute)
	before := map[string]state.Usage{}
	for _, u := range uses {
		before[u.key] = usage(t, s, u.key, u.window, now)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, embedded.Options{Path: path, Now: at(now)})
	defer s.Close()
	for _, u := range uses {
		want := before[u.key]
		want.Reserved = 0
		if got := usage(t, s, u.key, u.window, now); got != want {
			t.Errorf("after reopen, Usage(%s) = %+v, want %+v", u.key, got, want)
		}
	}
	if got := usage(t, s, "rate/hourly/alice", time.Hour, now); got.Committed != 0 {
		t.Errorf("hourly units from 90 minutes ago still counted: %+v", got)
	}
	if got, ok, err := s.GetFlag(context.Background(), "bob"); err != nil || !ok || got != flag {
		t.Errorf("after reopen, GetFlag(bob) = %+v, %v, %v; want %+v", got, ok, err, flag)
	}

	later := t0.Add(26 * time.Hour)
	if err := s.Expire(context.Background(), later); err != nil {
		t.Fatal(err)
	}
	for _, u := range uses {
		if got := usage(t, s, u.key, u.window, later); got != (state.Usage{}) {
			t.Errorf("after Expire, Usage(%s) = %+v, want nothing", u.key, got)
		}
	}
	if n := s.Len(); n != 0 {
		t.Errorf("Len after Expire = %d, want 0", n)
	}
	if n, err := s.DiskKeys(); err != nil || n != 0 {
		t.Errorf("records on disk after Expire = %d, %v; want 0", n, err)
	}
}

// Records that expire while the daemon is down are not loaded, and leave the
// file at the next Open.
func TestOpenSkipsExpired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path, Now: at(t0)})
	commit(t, s, []state.Counter{{Key: "old", Window: time.Hour, Limit: 5}}, t0)
	commit(t, s, []state.Counter{{Key: "new", Window: time.Hour, Limit: 5}}, t0.Add(time.Hour))
	s.Close()
	s = open(t, embedded.Options{Path: path, Now: at(t0.Add(90 * time.Minute))})
	defer s.Close()
	if n := s.Len(); n != 1 {
		t.Errorf("Len = %d, want 1 (only %q)", n, "new")
	}
	if n, err := s.DiskKeys(); err != nil || n != 1 {
		t.Errorf("records on disk = %d, %v; want 1", n, err)
	}
}

// A rule re-declared with another window keeps its units, judged by the new
// window, in memory and on disk alike.
func TestWindowRedeclared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path, Now: at(t0)})
	hourly := state.Counter{Key: "k", Window: time.Hour, Limit: 10}
	commit(t, s, []state.Counter{hourly}, t0)
	commit(t, s, []state.Counter{hourly}, t0)
	twoHours := hourly
	twoHours.Window = 2 * time.Hour
	now := t0.Add(90 * time.Minute)
	commit(t, s, []state.Counter{twoHours}, now)
	if got := usage(t, s, "k", twoHours.Window, now); got.Committed != 3 {
		t.Errorf("after widening the window: %+v, want the 2 old units kept plus 1", got)
	}
	s.Close()
	s = open(t, embedded.Options{Path: path, Now: at(now)})
	defer s.Close()
	if got := usage(t, s, "k", twoHours.Window, now); got.Committed != 3 {
		t.Errorf("after reopen: %+v, want 3 committed", got)
	}
	if got := usage(t, s, "k", twoHours.Window, t0.Add(2*time.Hour+5*time.Minute)); got.Committed != 1 {
		t.Errorf("two hours later: %+v, want only the newest unit", got)
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "state.db")
	_, err := embedded.Open(embedded.Options{Path: path})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open in a missing directory: %v, want an error saying it does not exist", err)
	}
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path})
	defer s.Close()
	start := time.Now()
	_, err := embedded.Open(embedded.Options{Path: path, LockTimeout: 100 * time.Millisecond})
	if err == nil {
		t.Fatal("second Open of a file in use succeeded")
	}
	if !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("second Open: %v, want it to say the file is locked by another process", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v to fail", d)
	}
}

func TestClosed(t *testing.T) {
	s := open(t, embedded.Options{Path: filepath.Join(t.TempDir(), "state.db")})
	out, err := s.Reserve(context.Background(), []state.Counter{{Key: "k", Window: time.Hour, Limit: 1}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(context.Background(), out.Reservation, t0); !errors.Is(err, state.ErrUnavailable) {
		t.Errorf("Commit after Close: %v, want ErrUnavailable", err)
	}
	if _, err := s.Reserve(context.Background(), []state.Counter{{Key: "k", Window: time.Hour, Limit: 1}}, t0); !errors.Is(err, state.ErrUnavailable) {
		t.Errorf("Reserve after Close: %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// commitMany commits one unit for each key, from several goroutines so that
// commits share transactions as they would under load.
func commitMany(t testing.TB, s state.Store, keys []string, window time.Duration, now time.Time) {
	t.Helper()
	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for i := w; i < len(keys); i += workers {
				out, err := s.Reserve(ctx, []state.Counter{{Key: keys[i], Window: window, Limit: 1 << 40}}, now)
				if err == nil {
					err = s.Commit(ctx, out.Reservation, now)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func account(i int) string { return fmt.Sprintf("rate/hourly/user%07d@example.com", i) }

// TestChurn sends one unit for each of many distinct accounts, a slice of
// them each minute, calling Expire as the daemon does. The file must stop
// growing once old accounts expire as fast as new ones arrive, and the store
// must forget everyone once the window has passed.
func TestChurn(t *testing.T) {
	total := 1_000_000
	if testing.Short() || raceEnabled {
		total = 100_000
	}
	const (
		window = 10 * time.Minute
		steps  = 100 // minutes of churn; the live set is about 11 steps' worth
	)
	perStep := total / steps
	path := filepath.Join(t.TempDir(), "state.db")
	// Durability does not change how the file grows; fsync would only make
	// the test slow.
	s := open(t, embedded.Options{Path: path, Now: at(t0), NoSync: true})
	defer s.Close()
	ctx := context.Background()
	hwm := make([]int64, steps)   // pages bbolt uses
	files := make([]int64, steps) // the file, grown in chunks
	keys := make([]string, perStep)
	for step := range steps {
		now := t0.Add(time.Duration(step) * time.Minute)
		for i := range keys {
			keys[i] = account(step*perStep + i)
		}
		commitMany(t, s, keys, window, now)
		if err := s.Expire(ctx, now); err != nil {
			t.Fatal(err)
		}
		var err error
		if hwm[step], err = s.HighWater(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		files[step] = fi.Size()
		if live, want := s.Len(), 12*perStep; live > want {
			t.Fatalf("step %d: %d keys in memory, want at most %d", step, live, want)
		}
	}
	// The live set is steady after two windows: from then on, pages freed
	// by expired accounts are reused and the file stops growing.
	at := 2 * int(window/time.Minute)
	if last := hwm[steps-1]; float64(last) > 1.2*float64(hwm[at]) {
		t.Errorf("pages in use grew from %d to %d bytes while the live set stayed the same (%v)", hwm[at], last, hwm)
	}
	if last := files[steps-1]; last > files[at]+16<<20 {
		t.Errorf("file grew from %d to %d bytes while the live set stayed the same (%v)", files[at], last, files)
	}
	t.Logf("%d accounts, about %d live: %d bytes in use after %d minutes, %d at the end (file %d bytes)",
		total, 11*perStep, hwm[at], at, hwm[steps-1], files[steps-1])

	end := t0.Add(time.Duration(steps)*time.Minute + window + time.Minute)
	if err := s.Expire(ctx, end); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 0 {
		t.Errorf("Len after the window = %d, want 0", n)
	}
	if n, err := s.DiskKeys(); err != nil || n != 0 {
		t.Errorf("records on disk after the window = %d, %v; want 0", n, err)
	}
}

// settle collects garbage twice before a heap measurement: what a
// sync.Pool holds (bbolt's page buffers, many after a large transaction)
// outlives one collection.
func settle() {
	runtime.GC()
	runtime.GC()
}

// TestMemoryPerKey measures what the mirror costs per tracked key: the heap
// that Open allocates to load N keys with one unit each.
func TestMemoryPerKey(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation sizes")
	}
	const n = 100_000
	const budget = 300 // bytes per tracked account (issue text)
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path, Now: at(t0), NoSync: true})
	keys := make([]string, n)
	for i := range keys {
		keys[i] = account(i)
	}
	commitMany(t, s, keys, time.Hour, t0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	keys = nil

	var m0, m1 runtime.MemStats
	settle()
	runtime.ReadMemStats(&m0)
	s = open(t, embedded.Options{Path: path, Now: at(t0)})
	settle()
	runtime.ReadMemStats(&m1)
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	per := float64(m1.HeapAlloc-m0.HeapAlloc) / n
	t.Logf("%.0f bytes of heap per tracked key (key %d bytes long)", per, len(account(0)))
	if per > budget {
		t.Errorf("%.0f bytes per tracked key, budget %d", per, budget)
	}
	s.Close()
}

func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "msgate")
	defer os.RemoveAll(dir)
	s, err := embedded.Open(embedded.Options{Path: filepath.Join(dir, "state.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	hourly := []state.Counter{{Key: "rate/hourly/alice", Window: time.Hour, Limit: 100}}
	out, _ := s.Reserve(ctx, hourly, now)
	// ... the message is accepted at end of data:
	if err := s.Commit(ctx, out.Reservation, now); err != nil {
		fmt.Println("not counted:", err) // the caller's failure action applies
		return
	}
	u, _ := s.Usage(ctx, "rate/hourly/alice", time.Hour, now)
	fmt.Println(u.Committed)
	// Output: 1
}

// TestConcurrentConsistent runs reservations, commits, releases and Expire
// at once while the clock moves, then checks that the file holds exactly
// what memory counted.
func TestConcurrentConsistent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, embedded.Options{Path: path, Now: at(t0), ExpireBatch: 3})
	const workers, rounds, keys = 8, 300, 20
	var clock atomic.Int64 // minutes since t0
	now := func() time.Time { return t0.Add(time.Duration(clock.Load()) * time.Minute) }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Expire(ctx, now()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var work sync.WaitGroup
	for w := range workers {
		work.Go(func() {
			for i := range rounds {
				if w == 0 && i%10 == 0 {
					clock.Add(1)
				}
				window := 10 * time.Minute
				if i%7 == 0 {
					window = 20 * time.Minute // re-declared now and then
				}
				cs := []state.Counter{
					{Key: fmt.Sprint("k", (w*rounds+i)%keys), Window: window, Limit: 1 << 40},
					{Key: "cap", Window: time.Hour, Limit: 1 << 40},
				}
				out, err := s.Reserve(ctx, cs, now())
				if err != nil {
					t.Error(err)
					return
				}
				if i%5 == 0 {
					err = s.Release(ctx, out.Reservation)
				} else {
					err = s.Commit(ctx, out.Reservation, now())
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	work.Wait()
	close(stop)
	wg.Wait()

	end := now()
	read := func(s *embedded.Store) []state.KeyUsage {
		got, err := s.Scan(ctx, "", end)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	before := read(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, embedded.Options{Path: path, Now: at(end)})
	defer s.Close()
	if after := read(s); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("after reopen:\n%v\nbefore:\n%v", after, before)
	}
}

// ObserveSync sees one fdatasync per commit that waited alone, and none
// when syncing is off or for a Remember alone.
func TestObserveSync(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			var n, longest atomic.Int64
			s := open(t, embedded.Options{Path: filepath.Join(t.TempDir(), "state.db"), Now: at(t0), NoSync: noSync,
				AttributionDelay: time.Millisecond,
				ObserveSync: func(d time.Duration) {
					n.Add(1)
					longest.Store(max(longest.Load(), int64(d)))
				}})
			defer s.Close()
			if err := s.Remember(context.Background(), "queue-id-1", "alice", t0); err != nil {
				t.Fatal(err)
			}
			for i := 0; n.Load() == 0 && i < 50; i++ {
				time.Sleep(time.Millisecond) // the attribution's own write, had it synced
			}
			cs := []state.Counter{{Key: "rate/hourly/alice", Window: time.Hour, Limit: 10}}
			for range 3 {
				commit(t, s, cs, t0)
			}
			want := int64(3)
			if noSync {
				want = 0
			}
			if got := n.Load(); got != want {
				t.Errorf("ObserveSync called %d times for a Remember and 3 commits one after another, want %d", got, want)
			}
			if !noSync && longest.Load() <= 0 {
				t.Errorf("the longest sync observed took %v", time.Duration(longest.Load()))
			}
		})
	}
}
