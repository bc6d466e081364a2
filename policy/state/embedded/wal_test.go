//go:build linux

package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/msgate/msgate/policy/state"
)

var walT0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// openT opens a store whose epochs are sealed by size or on demand only,
// not by the clock: the tests read the writer's place in the log between
// commits.
// crashAndReopen leaves s as kill -9 would (nothing flushed, nothing
// checkpointed) and opens its file again.
func crashAndReopen(t *testing.T, s *Store, path string) *Store {
	t.Helper()
	if err := s.Abandon(); err != nil {
		t.Fatal(err)
	}
	return openT(t, Options{Path: path})
}

func openT(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return walT0 }
	}
	if opts.ckptAfter == 0 {
		opts.ckptAfter = time.Hour
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func commitT(t *testing.T, s *Store, key string, now time.Time) error {
	t.Helper()
	ctx := context.Background()
	out, err := s.Reserve(ctx, []state.Counter{{Key: key, Window: time.Hour, Limit: 1 << 40}, {Key: "cap", Window: 24 * time.Hour, Limit: 1 << 40}}, now)
	if err != nil || !out.Admitted {
		t.Fatalf("Reserve: %+v %v", out, err)
	}
	return s.Commit(ctx, out.Reservation, now)
}

func committed(t *testing.T, s *Store, key string) int64 {
	t.Helper()
	u, err := s.Usage(context.Background(), key, time.Hour, walT0)
	if err != nil {
		t.Fatal(err)
	}
	return u.Committed
}

// appliedOnDisk reads wal_applied from the file.
func (s *Store) appliedOnDisk(t *testing.T) uint64 {
	t.Helper()
	var e uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		e = walApplied(tx.Bucket(bucketMeta))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

// A record torn by a crash (cut short, or with bytes that never reached the
// disk) is not replayed, and every record before it is.
func TestLogTornRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, f string, off int64)
	}{
		{"cut in the header", func(t *testing.T, f string, off int64) {
			if err := os.Truncate(f, off+7); err != nil {
				t.Fatal(err)
			}
		}},
		{"cut in the payload", func(t *testing.T, f string, off int64) {
			if err := os.Truncate(f, off+walHeader+3); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage in the payload", func(t *testing.T, f string, off int64) {
			fh, err := os.OpenFile(f, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			if _, err := fh.WriteAt([]byte{0xde, 0xad}, off+walHeader+4); err != nil {
				t.Fatal(err)
			}
		}},
		{"zeros from the header on", func(t *testing.T, f string, off int64) {
			fh, err := os.OpenFile(f, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			if _, err := fh.WriteAt(make([]byte, 64), off); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			s := openT(t, Options{Path: path})
			const n = 5
			var last int64
			for range n {
				last = s.wal.off // where the commit's record goes
				if err := commitT(t, s, "k", walT0); err != nil {
					t.Fatal(err)
				}
			}
			file := walName(path, int(s.wal.epoch%2))
			if err := s.Abandon(); err != nil {
				t.Fatal(err)
			}
			tc.tear(t, file, last)
			s = openT(t, Options{Path: path})
			defer s.Close()
			if got := committed(t, s, "k"); got != n-1 {
				t.Errorf("%d units after the last record was torn, want %d", got, n-1)
			}
			// The next epoch starts cleanly after the torn one.
			if err := commitT(t, s, "k", walT0); err != nil {
				t.Fatal(err)
			}
			s = crashAndReopen(t, s, path)
			defer s.Close()
			if got := committed(t, s, "k"); got != n {
				t.Errorf("%d units after one more commit, want %d", got, n)
			}
		})
	}
}

// A file reused for a later epoch still holds records of the epoch it held
// before, past the new epoch's: they must not be replayed.
func TestLogStaleEpochNotReplayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openT(t, Options{Path: path})
	first := s.wal.epoch
	for range 20 {
		if err := commitT(t, s, "k", walT0); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the first epoch's file comes back
		if err := s.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := commitT(t, s, "k", walT0); err != nil {
			t.Fatal(err)
		}
	}
	if s.wal.epoch != first+2 {
		t.Fatalf("writing epoch %d, want %d", s.wal.epoch, first+2)
	}
	file := walName(path, int(first%2))
	if err := s.Abandon(); err != nil {
		t.Fatal(err)
	}
	buf, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Every record is the same size here: the new epoch's one record
	// ends where the old epoch's second one starts.
	recs, end := scanWAL(buf, first+2)
	if len(recs) != 1 {
		t.Fatalf("the reused file holds %d records of its epoch, want 1", len(recs))
	}
	if e := walEpoch(buf[end:]); e != first {
		t.Fatalf("offset %d holds a header of epoch %d, want a stale one of epoch %d", end, e, first)
	}
	s = openT(t, Options{Path: path})
	defer s.Close()
	if got := committed(t, s, "k"); got != 22 {
		t.Errorf("%d units after reopen, want 22", got)
	}
	if got := committed(t, s, "cap"); got != 22 {
		t.Errorf("cap: %d units after reopen, want 22", got)
	}
}

// A checkpoint that dies before its transaction commits (here: aborted by
// the hook) leaves wal_applied where it was, and the epoch is applied again
// from scratch, by the checkpointer's retry or by the next Open: the counts
// come out the same.
func TestCheckpointInterruptedIsReplayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	var fail atomic.Bool
	fail.Store(true)
	hook := func(uint64) error {
		if fail.Load() {
			return errors.New("crash in the middle of the checkpoint")
		}
		return nil
	}
	s := openT(t, Options{Path: path, applyHook: hook})
	for i := range 10 {
		if err := commitT(t, s, fmt.Sprint("k", i%3), walT0); err != nil {
			t.Fatal(err)
		}
	}
	before := s.appliedOnDisk(t)
	if err := s.Checkpoint(context.Background()); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("Checkpoint with the transaction aborted: %v, want ErrUnavailable", err)
	}
	if got := s.appliedOnDisk(t); got != before {
		t.Errorf("wal_applied %d after an aborted checkpoint, want %d", got, before)
	}
	if n, _ := s.DiskKeys(); n != 0 {
		t.Errorf("%d counter records in the file after an aborted checkpoint", n)
	}
	if err := s.Abandon(); err != nil {
		t.Fatal(err)
	}
	// Open replays through the same function: aborted again, Open fails
	// and nothing is half applied.
	if _, err := Open(Options{Path: path, applyHook: hook}); err == nil {
		t.Fatal("Open succeeded with its replay aborted")
	}
	fail.Store(false)
	s = openT(t, Options{Path: path, applyHook: hook})
	defer s.Close()
	want := map[string]int64{"k0": 4, "k1": 3, "k2": 3, "cap": 10}
	for k, n := range want {
		if got := committed(t, s, k); got != n {
			t.Errorf("%s: %d units after replay, want %d", k, got, n)
		}
	}
	if n, _ := s.DiskKeys(); n != 4 {
		t.Errorf("%d counter records in the file after replay, want 4", n)
	}

	// Applying an epoch the file holds already changes nothing.
	epoch := s.appliedOnDisk(t)
	buf, err := os.ReadFile(walName(path, int(epoch%2)))
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := scanWAL(buf, epoch)
	if len(recs) == 0 {
		t.Fatalf("no records of epoch %d left in its file", epoch)
	}
	if err := s.apply(epoch, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Path: path})
	defer s.Close()
	for k, n := range want {
		if got := committed(t, s, k); got != n {
			t.Errorf("%s: %d units after applying an epoch again, want %d", k, got, n)
		}
	}
}

// With the checkpointer failing, the sealed epoch stays in its file and the
// writer goes on in the other: a crash then leaves two unapplied epochs,
// which Open replays in order.
func TestOpenTwoUnappliedEpochs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	hook := func(uint64) error { return errors.New("checkpoint fails") }
	s := openT(t, Options{Path: path, applyHook: hook})
	for range 3 {
		if err := commitT(t, s, "k", walT0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Checkpoint(context.Background()); err == nil {
		t.Fatal("Checkpoint succeeded")
	}
	for range 4 {
		if err := commitT(t, s, "k", walT0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	applied, sealed, active := s.appliedOnDisk(t), s.wal.sealed, s.wal.epoch
	if sealed != applied+1 || active != applied+2 {
		t.Fatalf("applied %d, sealed %d, active %d: want two epochs unapplied", applied, sealed, active)
	}
	s = crashAndReopen(t, s, path)
	defer s.Close()
	if got := committed(t, s, "k"); got != 7 {
		t.Errorf("%d units after replaying two epochs, want 7", got)
	}
	if got := s.appliedOnDisk(t); got != active {
		t.Errorf("wal_applied %d after Open, want %d", got, active)
	}
	if s.wal.epoch != active+1 {
		t.Errorf("writing epoch %d after Open, want %d", s.wal.epoch, active+1)
	}
}

// An epoch missing between what the file applied and what the log holds
// (the log of another state file, or a lost file) makes Open fail rather
// than forget it.
func TestOpenEpochMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openT(t, Options{Path: path, applyHook: func(uint64) error { return errors.New("no") }})
	if err := commitT(t, s, "k", walT0); err != nil {
		t.Fatal(err)
	}
	s.Checkpoint(context.Background())
	if err := commitT(t, s, "k", walT0); err != nil {
		t.Fatal(err)
	}
	sealed := s.wal.sealed
	if err := s.Abandon(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(walName(path, int(sealed%2))); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: path}); err == nil {
		t.Fatal("Open succeeded with an epoch missing")
	} else {
		t.Log(err)
	}
}

// fdOf runs fn with f's descriptor.
func fdOf(t *testing.T, f *os.File, fn func(fd int)) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

// A write to the log that fails fails its commits and leaves no trace: the
// next write goes where it would have, over whatever it left half written,
// and recovery reads what was acknowledged, nothing else. The failure is a
// real one: the log file's descriptor is swapped for a read-only one of
// the same file for a while.
func TestLogWriteFailureThenRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openT(t, Options{Path: path})
	for range 3 {
		if err := commitT(t, s, "k", walT0); err != nil {
			t.Fatal(err)
		}
	}
	f := s.wal.files[s.wal.epoch%2]
	off := s.wal.off
	var saved int
	fdOf(t, f, func(fd int) {
		ro, err := syscall.Open(f.Name(), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(ro)
		if saved, err = syscall.Dup(fd); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Dup3(ro, fd, syscall.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()
	out, err := s.Reserve(ctx, []state.Counter{{Key: "k", Window: time.Hour, Limit: 1 << 40}}, walT0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, out.Reservation, walT0); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("Commit with the log read-only: %v, want ErrUnavailable", err)
	}
	// What a write that failed half way could leave: a long record of the
	// epoch, chained right, whose end the next, shorter, record does not
	// cover.
	var enc walEncoder
	enc.reset(s.wal.epoch, s.wal.crc)
	us := make([]unit, 50)
	for i := range us {
		us[i] = unit{key: "k", window: time.Hour, idx: state.BucketOf(walT0, time.Hour)}
	}
	for range 3 {
		enc.units(walT0.UnixNano(), us)
	}
	enc.finish()
	half := enc.buf[:len(enc.buf)*2/3]
	w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(half, off); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fdOf(t, f, func(fd int) {
		if err := syscall.Dup3(saved, fd, syscall.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		syscall.Close(saved)
	})
	if s.wal.off != off {
		t.Fatalf("the offset moved from %d to %d on a failed write", off, s.wal.off)
	}
	for range 2 {
		if err := commitT(t, s, "k", walT0); err != nil {
			t.Fatal(err)
		}
	}
	if got := committed(t, s, "k"); got != 5 {
		t.Fatalf("%d units in memory, want 5", got)
	}
	s = crashAndReopen(t, s, path)
	defer s.Close()
	if got := committed(t, s, "k"); got != 5 {
		t.Errorf("%d units after recovery, want the 5 acknowledged", got)
	}
}

// Many small epochs, files that grow past their preallocated size and are
// reused, checkpoints asked for at random and rewindowed keys: after an
// abandon, Open finds exactly what memory counted.
func TestLogRecycling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	opts := Options{Path: path, walSize: 4 << 10, ckptBytes: 600}
	s := openT(t, opts)
	const workers, rounds = 8, 150
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range rounds {
				window := time.Hour
				if i%11 == 0 {
					window = 2 * time.Hour
				}
				now := walT0.Add(time.Duration(i) * time.Second)
				out, err := s.Reserve(ctx, []state.Counter{
					{Key: fmt.Sprint("k", (w+i)%5), Window: window, Limit: 1 << 40},
					{Key: "cap", Window: 24 * time.Hour, Limit: 1 << 40},
				}, now)
				if err == nil {
					err = s.Commit(ctx, out.Reservation, now)
				}
				if err == nil && i%7 == 0 {
					err = s.Remember(ctx, fmt.Sprintf("%dQ%d", w, i), fmt.Sprint("acct", w), now)
				}
				if err == nil && w == 0 && i%25 == 0 {
					err = s.Checkpoint(context.Background())
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	end := walT0.Add(rounds * time.Second)
	before, err := s.Scan(context.Background(), "", end)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Abandon(); err != nil {
		t.Fatal(err)
	}
	epochs := s.wal.epoch // the writer has exited
	for i := range 2 {
		if fi, err := os.Stat(walName(path, i)); err != nil || fi.Size() < 4<<10 {
			t.Fatalf("log %d: %v %v", i, fi, err)
		}
	}
	opts.Now = func() time.Time { return end }
	s = openT(t, opts)
	defer s.Close()
	after, err := s.Scan(context.Background(), "", end)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("after recovery:\n%v\nbefore:\n%v", after, before)
	}
	var total int64
	for _, ku := range after {
		if ku.Key == "cap" {
			total = ku.Committed
		}
	}
	if total != workers*rounds {
		t.Errorf("cap: %d units, want %d", total, workers*rounds)
	}
	for w := range workers {
		for i := 0; i < rounds; i += 7 {
			if acct, _, ok, _ := s.Attribute(context.Background(), fmt.Sprintf("%dQ%d", w, i)); !ok || acct != fmt.Sprint("acct", w) {
				t.Fatalf("%dQ%d: %q %v after recovery", w, i, acct, ok)
			}
		}
	}
	t.Logf("%d epochs", epochs)
}

// The records a checkpoint writes to the file are the buckets memory holds.
func TestCheckpointMatchesMirror(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openT(t, Options{Path: path})
	defer s.Close()
	// Clocks that step back and forth, windows re-declared.
	steps := []time.Duration{0, 5 * time.Minute, 2 * time.Minute, 90 * time.Minute, 89 * time.Minute, 3 * time.Hour, 3*time.Hour + time.Second}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			ctx := context.Background()
			for i := range 60 {
				now := walT0.Add(steps[(w+i)%len(steps)])
				window := time.Hour
				if i%13 == 5 {
					window = 30 * time.Minute
				}
				out, err := s.Reserve(ctx, []state.Counter{{Key: "k", Window: window, Limit: 1 << 40}, {Key: "k", Window: window, Limit: 1 << 40}}, now)
				if err == nil {
					err = s.Commit(ctx, out.Reservation, now)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	c, _ := s.counters.Get("k")
	mem := c.series
	mem.buckets = slices.Clone(mem.buckets)
	s.mu.Unlock()
	var disk series
	if err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		disk, err = decode(tx.Bucket(bucketCounters).Get([]byte("k")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Memory may have trimmed more (Reserve trims): compare what both
	// hold inside the window at the latest time used.
	last := walT0.Add(3*time.Hour + time.Second)
	mem.trim(last)
	disk.trim(last)
	if !slices.Equal(mem.buckets, disk.buckets) || mem.window != disk.window {
		t.Errorf("file %v, memory %v", disk, mem)
	}
}

// Log files left beside a state file that is gone belong to no state file:
// a new state file does not replay them, and its epochs start after theirs.
func TestNewStateFileIgnoresOldLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openT(t, Options{Path: path})
	for range 3 {
		if err := commitT(t, s, "k", walT0); err != nil {
			t.Fatal(err)
		}
	}
	old := s.wal.epoch
	if err := s.Abandon(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Path: path})
	if got := committed(t, s, "k"); got != 0 {
		t.Errorf("%d units in a new state file, want 0", got)
	}
	if s.wal.epoch != old+1 {
		t.Errorf("writing epoch %d, want %d: after the old log's", s.wal.epoch, old+1)
	}
	if err := commitT(t, s, "k", walT0); err != nil {
		t.Fatal(err)
	}
	s = crashAndReopen(t, s, path)
	defer s.Close()
	if got := committed(t, s, "k"); got != 1 {
		t.Errorf("%d units after a crash, want 1", got)
	}
}

// A state file of format 1 (no log) is read as it was and upgraded.
func TestOpenFormat1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	sr := series{window: time.Hour, buckets: []bucket{{idx: state.BucketOf(walT0, time.Hour), count: 4}}}
	if err := db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte("1")); err != nil {
			return err
		}
		cb, err := tx.CreateBucket(bucketCounters)
		if err != nil {
			return err
		}
		return cb.Put([]byte("k"), sr.encode())
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openT(t, Options{Path: path})
	defer s.Close()
	if got := committed(t, s, "k"); got != 4 {
		t.Errorf("%d units from a format 1 file, want 4", got)
	}
	var f string
	s.db.View(func(tx *bolt.Tx) error {
		f = string(tx.Bucket(bucketMeta).Get(keyFormat))
		return nil
	})
	if f != format {
		t.Errorf("format %q after Open, want %q", f, format)
	}
}
