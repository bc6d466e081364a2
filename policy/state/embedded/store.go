package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/msgate/msgate/policy/state"
)

// Options configures Open.
type Options struct {
	// Path is the state file. Its directory must exist; the file is created
	// (mode 0600) when missing.
	Path string
	// Now is the clock Open uses to skip and delete buckets that expired
	// while the daemon was down. Nil means time.Now.
	Now func() time.Time
	// LockTimeout is how long Open waits for another process to let go of
	// the file before failing. Zero means one second.
	LockTimeout time.Duration
	// NoSync skips fsync and fdatasync, of the log and of the file:
	// commits are no longer durable. For benchmarks and tests that measure
	// something else only.
	NoSync bool
	// ExpireBatch is how many keys Expire and Scan examine per hold of the
	// lock that decisions need, and how many records Expire deletes per
	// transaction. Zero means 1024.
	ExpireBatch int
	// AttributionDelay is how long attributions (Remember) wait in memory
	// for a commit to carry them to the log before the writer writes them
	// alone, without fdatasync. Zero means 100ms.
	AttributionDelay time.Duration
	// ObserveSync, when set, is called by the writer with the time each
	// fdatasync of the log took: the wait that every commit of its batch
	// shares (a disk slower at syncing shows here first). It must not
	// block.
	ObserveSync func(time.Duration)

	// openFile replaces os.OpenFile for the file and the log (tests make
	// them fail under the store).
	openFile func(string, int, os.FileMode) (*os.File, error)
	// The log's size when created, how much of it makes the writer seal
	// the epoch, and how long after its first record; zero means 4 MiB,
	// 1 MiB and 5s (tests make epochs small).
	walSize   int64
	ckptBytes int64
	ckptAfter time.Duration
	// applyHook runs in each checkpoint's transaction, before wal_applied
	// is set; an error aborts the transaction (tests).
	applyHook func(epoch uint64) error
}

var (
	bucketCounters = []byte("counters")
	bucketMeta     = []byte("meta")
	keyFormat      = []byte("format")
)

// format is the on-disk layout version, stored in the meta bucket. Format
// 2 is format 1 with a log beside the file: a file of format 1 is upgraded
// at Open, and a msgate that reads format 1 only refuses one that may
// count on a log it would not read.
const format = "2"

// counter is the in-memory mirror of one key. Kept small: memory per tracked
// account is bounded (see TestMemoryPerKey).
type counter struct {
	series         // committed units, as on disk
	total    int64 // sum of the buckets' counts
	reserved int32 // units reserved or being committed
	// onDisk means the file may hold a record for this key: the key is
	// dropped from memory only after Expire deleted that record, so that
	// no record is left behind that nothing would ever delete.
	onDisk bool
}

func (c *counter) trim(now time.Time) { c.total -= c.series.trim(now) }

func (c *counter) idle() bool { return c.total == 0 && c.reserved == 0 }

// unit is one counter of a reservation.
type unit struct {
	key    string
	c      *counter
	window time.Duration // the window the unit is written under (set by write)
	idx    int64         // the bucket it is written to (set by write)
}

// Store is the embedded durable backend. Make one with Open.
type Store struct {
	db   *bolt.DB
	path string

	// mu guards the mirror. It is never held across disk I/O.
	mu       sync.Mutex
	counters *state.KeyTable[counter]
	pending  map[uint64][]unit
	nextID   uint64
	// rewindowed holds the keys on disk whose window changed: the writer
	// rewrites their records from memory.
	rewindowed map[string]struct{}

	// flags is a copy of the file's flags: GetFlag is on the per-message
	// path and reads memory only. flagWriteMu orders the writers, which
	// hold it across their disk write.
	flags       state.FlagTable
	flagWriteMu sync.Mutex

	// Complaints in memory, guarded by cmu; complaintWriteMu orders the
	// writers (AddComplaint, ForgetComplaints), which hold it across their
	// disk writes, never cmu.
	cmu              sync.RWMutex
	compl            complaints
	complaintWriteMu sync.Mutex

	// Attributions in memory, guarded by amu, which is never held across
	// disk I/O. attrCut is the cutoff of the last ForgetAttributions (Unix
	// ns): the writer skips queued attributions older than that.
	amu     sync.Mutex
	attr    attribIndex
	attrCut atomic.Int64

	expireBatch int
	closed      atomic.Bool

	// The group-commit queue: Commit appends to queue and waits for its
	// batch; the writer goroutine writes whole batches.
	qmu    sync.Mutex
	queue  *batch
	wake   chan struct{}
	stop   chan struct{}
	exited chan struct{}

	// Attributions waiting for the writer's next write, under qmu.
	// attrWake tells the writer the queue is no longer empty, so that it
	// writes them attrDelay later if no commit comes first.
	attrQueue []attrRec
	attrWake  chan struct{}
	attrDelay time.Duration

	// The log: the writer's (wal), and the checkpointer's, which applies
	// the epochs the writer seals (ckptJobs) and tells it (ckptDone).
	// forceCkpt asks the writer to seal the active epoch: it replies with
	// the last epoch that holds records.
	wal        wal
	ckpt       ckptState
	ckptJobs   chan ckptJob
	ckptDone   chan struct{}
	forceCkpt  chan chan uint64
	ckptQuit   chan struct{}
	ckptExited chan struct{}
	applyHook  func(epoch uint64) error
}

var _ state.Store = (*Store)(nil)

// Open opens or creates the state file and loads every counter that has not
// expired into memory. Another process holding the file makes Open fail
// after LockTimeout.
func Open(opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("opening embedded state: no path")
	}
	dir := filepath.Dir(opts.Path)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opening state file %s: directory %s does not exist", opts.Path, dir)
		}
		return nil, fmt.Errorf("opening state file %s: %w", opts.Path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("opening state file %s: %s is not a directory", opts.Path, dir)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.ExpireBatch <= 0 {
		opts.ExpireBatch = 1024
	}
	if opts.AttributionDelay <= 0 {
		opts.AttributionDelay = 100 * time.Millisecond
	}
	if opts.walSize <= 0 {
		opts.walSize = defaultWALSize
	}
	if opts.ckptBytes <= 0 {
		opts.ckptBytes = defaultCkptBytes
	}
	if opts.ckptAfter <= 0 {
		opts.ckptAfter = defaultCkptAfter
	}
	if opts.openFile == nil {
		opts.openFile = os.OpenFile
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		// The freelist is rebuilt by a scan at open instead of being
		// rewritten by every commit: commits stay small however
		// fragmented churn leaves the file.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		NoSync:         opts.NoSync,
		OpenFile:       opts.openFile,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("opening state file %s: it is locked by another process (is another msgate running?)", opts.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening state file %s: %w", opts.Path, err)
	}
	s := &Store{
		db:          db,
		path:        opts.Path,
		counters:    state.NewKeyTable[counter](),
		pending:     make(map[uint64][]unit),
		rewindowed:  make(map[string]struct{}),
		compl:       newComplaints(),
		attr:        newAttribIndex(),
		expireBatch: opts.ExpireBatch,
		queue:       newBatch(),
		wake:        make(chan struct{}, 1),
		attrWake:    make(chan struct{}, 1),
		attrDelay:   opts.AttributionDelay,
		stop:        make(chan struct{}),
		exited:      make(chan struct{}),
		ckpt:        ckptState{changed: make(chan struct{})},
		ckptJobs:    make(chan ckptJob, 1),
		ckptDone:    make(chan struct{}, 1),
		forceCkpt:   make(chan chan uint64),
		ckptQuit:    make(chan struct{}),
		ckptExited:  make(chan struct{}),
		applyHook:   opts.applyHook,
	}
	s.wal = wal{noSync: opts.NoSync, observeSync: opts.ObserveSync, ckptBytes: opts.ckptBytes, ckptAfter: opts.ckptAfter, last: make(map[*counter]int64)}
	s.attrCut.Store(math.MinInt64)
	if err := s.load(opts, opts.Now()); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("opening state file %s: %w", opts.Path, err)
	}
	go s.run()
	go s.checkpointer()
	return s, nil
}

// closeFiles closes the log files and the file, and returns the first
// error.
func (s *Store) closeFiles() error {
	var first error
	for i, f := range s.wal.files {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil && first == nil {
			first = fmt.Errorf("closing %s: %w", walName(s.path, i), err)
		}
	}
	if err := s.db.Close(); err != nil && first == nil {
		first = fmt.Errorf("closing state file %s: %w", s.path, err)
	}
	return first
}

// load opens the log, creating it when missing; creates the layout of a
// new file, or checks it; replays into the file what the log holds that the
// file has not applied; then reads the file into memory. Records
// that expired while the daemon was down are deleted.
func (s *Store) load(opts Options, now time.Time) error {
	for i := range s.wal.files {
		f, err := openWAL(walName(s.path, i), opts.walSize, opts.openFile, opts.NoSync)
		if err != nil {
			return fmt.Errorf("opening the log: %w", err)
		}
		s.wal.files[i] = f
	}
	eps, last, err := s.readLog()
	if err != nil {
		return err
	}
	var applied uint64
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyFormat); {
		case v == nil, string(v) == "1":
			// No log came with this file: what the log files hold, if
			// anything, is another state file's, never to be replayed.
			if err := meta.Put(keyFormat, []byte(format)); err != nil {
				return err
			}
			if err := meta.Put(keyWALApplied, binary.BigEndian.AppendUint64(nil, last)); err != nil {
				return err
			}
		case string(v) != format:
			return fmt.Errorf("state file format %q, this msgate reads %q", v, format)
		}
		applied = walApplied(meta)
		for _, name := range [][]byte{bucketCounters, bucketFlags, bucketComplaints, bucketAttribs} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.replayLog(eps, applied); err != nil {
		return err
	}
	last = max(last, applied)
	s.ckpt.applied = last
	s.wal.epoch = last + 1
	if err := s.loadFlags(); err != nil {
		return err
	}
	if err := s.loadComplaints(); err != nil {
		return err
	}
	if err := s.loadAttribs(); err != nil {
		return err
	}
	var expired []candidate
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			sr, err := decode(v)
			if err != nil {
				return fmt.Errorf("counter %q: %w", k, err)
			}
			key := string(k)
			c := &counter{series: sr, onDisk: true}
			c.total = c.sum()
			c.trim(now)
			if c.total == 0 {
				expired = append(expired, candidate{key: key, window: sr.window})
				return nil
			}
			s.counters.Put(key, c)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for len(expired) > 0 {
		n := min(len(expired), s.expireBatch)
		if _, err := s.deleteExpired(expired[:n], now); err != nil {
			return err
		}
		expired = expired[n:]
	}
	return nil
}

var errClosed = fmt.Errorf("%w: store closed", state.ErrUnavailable)

func (s *Store) get(key string, window time.Duration, now time.Time) *counter {
	c, ok := s.counters.Get(key)
	if !ok {
		c = &counter{series: series{window: window}}
		s.counters.Put(key, c)
		return c
	}
	if c.window != window {
		// A rule re-declared with another window (config reload) keeps its
		// units and judges them by the new window.
		c.rewindow(window)
		if c.onDisk {
			s.rewindowed[key] = struct{}{}
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
	c.trim(now)
	return c
}

func (s *Store) dropIfIdle(key string, c *counter) {
	if c.idle() && !c.onDisk {
		s.counters.Delete(key)
	}
}

// Reserve implements state.Store. It touches memory only.
func (s *Store) Reserve(_ context.Context, counters []state.Counter, now time.Time) (state.Outcome, error) {
	for _, k := range counters {
		if len(k.Key) == 0 || len(k.Key) > bolt.MaxKeySize {
			return state.Outcome{}, fmt.Errorf("reserving: counter key %q must be 1 to %d bytes long", k.Key, bolt.MaxKeySize)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return state.Outcome{}, fmt.Errorf("reserving: %w", errClosed)
	}
	units := make([]unit, len(counters))
	for i, k := range counters {
		c := s.get(k.Key, k.Window, now)
		units[i] = unit{key: k.Key, c: c}
		if k.Soft {
			continue
		}
		if used := c.total + int64(c.reserved); used+1 > k.Limit {
			for _, u := range units[:i+1] {
				s.dropIfIdle(u.key, u.c)
			}
			return state.Outcome{Blocked: i, Used: used}, nil
		}
	}
	out := state.Outcome{Admitted: true, Blocked: -1}
	for i, k := range counters {
		c := units[i].c
		c.reserved++
		if k.Soft && c.total+int64(c.reserved) > k.Limit {
			out.OverSoft = append(out.OverSoft, i)
		}
	}
	s.nextID++
	s.pending[s.nextID] = units
	out.Reservation = state.Reservation{ID: s.nextID}
	return out, nil
}

// ReserveSpare implements state.Store: this backend admits no spares;
// each unit is one decision in memory.
func (s *Store) ReserveSpare(ctx context.Context, counters []state.Counter, _, _ int, now time.Time) (state.Outcome, error) {
	return s.Reserve(ctx, counters, now)
}

// Commit implements state.Store: it returns nil only once the unit is on
// disk (in the log, fdatasync'd). Until then the unit stays reserved, so it holds its place
// under every limit. When the write fails the reservation is released and
// the error wraps state.ErrUnavailable. When ctx ends first, Commit returns
// an error wrapping both state.ErrUnavailable and ctx.Err(), but the write
// goes on and the unit may still end up counted: a unit is counted too
// often rather than lost.
func (s *Store) Commit(ctx context.Context, r state.Reservation, now time.Time) error {
	return s.CommitAll(ctx, []state.Reservation{r}, now)
}

// CommitAll implements state.Store: the units of a message's
// reservations ride one write and one wait instead of one each. Either all
// reservations are known and committed together, or none is touched.
func (s *Store) CommitAll(ctx context.Context, rs []state.Reservation, now time.Time) error {
	if len(rs) == 0 {
		return nil
	}
	s.mu.Lock()
	var units []unit
	for _, r := range rs {
		if _, ok := s.pending[r.ID]; !ok {
			s.mu.Unlock()
			return fmt.Errorf("committing reservation %d: %w", r.ID, state.ErrUnknownReservation)
		}
		if err := state.CheckSpent(r); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	for _, r := range rs {
		if len(rs) == 1 {
			units = s.pending[r.ID]
		} else {
			units = append(units, s.pending[r.ID]...)
		}
		delete(s.pending, r.ID)
	}
	s.mu.Unlock()

	req := &commitReq{units: units, now: now}
	s.qmu.Lock()
	if s.closed.Load() {
		s.qmu.Unlock()
		s.giveBack(units)
		return fmt.Errorf("committing reservation %d: %w", rs[0].ID, errClosed)
	}
	b := s.queue
	b.reqs = append(b.reqs, req)
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // the writer is already due to look at the queue
	}
	select {
	case <-b.done:
		if req.err != nil {
			return fmt.Errorf("committing reservation %d: %w", rs[0].ID, req.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("committing reservation %d: %w: %w", rs[0].ID, state.ErrUnavailable, ctx.Err())
	}
}

// giveBack releases units whose commit did not happen.
func (s *Store) giveBack(units []unit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range units {
		u.c.reserved--
		s.dropIfIdle(u.key, u.c)
	}
}

// Release implements state.Store.
func (s *Store) Release(_ context.Context, r state.Reservation) error {
	s.mu.Lock()
	units, ok := s.pending[r.ID]
	if ok {
		delete(s.pending, r.ID)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("releasing reservation %d: %w", r.ID, state.ErrUnknownReservation)
	}
	s.giveBack(units)
	return nil
}

// Usage implements state.Store. It reads memory only.
func (s *Store) Usage(_ context.Context, key string, _ time.Duration, now time.Time) (state.Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return state.Usage{}, fmt.Errorf("reading usage of %s: %w", key, errClosed)
	}
	c, ok := s.counters.Get(key)
	if !ok {
		return state.Usage{}, nil
	}
	// Like the memory backend, a read judges by the window the counter was
	// last reserved under: a caller asking with another window does not
	// re-bucket (lossily) what the rules counted.
	c.trim(now)
	u := state.Usage{Committed: c.total, Reserved: int64(c.reserved)}
	s.dropIfIdle(key, c)
	return u, nil
}

// Len is the number of keys tracked in memory.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters.Len()
}

// candidate is a key that Expire found idle and may delete from disk.
type candidate struct {
	key    string
	c      *counter // nil when the key is not in memory
	window time.Duration
}

// Expire implements state.Store. It trims every counter in memory, drops
// idle keys, and deletes the records of idle keys from the file. It holds
// the mirror's lock for at most ExpireBatch keys at a time and never during
// disk I/O, so decisions keep flowing while it runs. Before it deletes
// records it waits for a checkpoint to apply the log: a record is never
// deleted while units for it wait in the log, which would bring it back
// with nothing left in memory to delete it again.
func (s *Store) Expire(ctx context.Context, now time.Time) error {
	if s.closed.Load() {
		return fmt.Errorf("expiring: %w", errClosed)
	}
	var cands []candidate
	flush := func() error {
		if len(cands) == 0 {
			return nil
		}
		if err := s.Checkpoint(ctx); err != nil {
			return fmt.Errorf("expiring: %w", err)
		}
		deleted, err := s.deleteExpired(cands, now)
		if err != nil {
			return fmt.Errorf("expiring: %w", err)
		}
		s.mu.Lock()
		for i, cd := range cands {
			// Still idle and still the same counter: nothing was reserved
			// or committed for the key since it was found idle.
			if c, ok := s.counters.Get(cd.key); deleted[i] && ok && c == cd.c && cd.c.idle() {
				s.counters.Delete(cd.key)
			}
		}
		s.mu.Unlock()
		cands = cands[:0]
		return nil
	}
	s.mu.Lock()
	seen := 0
	var err error
	// The range goes on across the unlocked pauses below. That is sound:
	// every access to the table, the iteration's included, happens under
	// mu, and KeyTable.Range follows Go's rules for a map that changes
	// meanwhile (an entry added may or may not be visited; one deleted is
	// not).
	s.counters.Range(func(k state.Key, c *counter) bool {
		c.trim(now)
		if c.idle() {
			if c.onDisk {
				cands = append(cands, candidate{key: k.String(), c: c, window: c.window})
			} else {
				s.counters.DeleteKey(k)
			}
		}
		full := len(cands) >= s.expireBatch
		if seen++; seen%s.expireBatch != 0 && !full {
			return true
		}
		s.mu.Unlock()
		if full {
			if err = flush(); err != nil {
				s.mu.Lock()
				return false
			}
		}
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("expiring: %w", cerr)
			s.mu.Lock()
			return false
		}
		s.mu.Lock()
		return true
	})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	return flush()
}

// deleteExpired deletes the records of the candidates that hold no unit
// inside the window ending at now, judged by the window the mirror had when
// it found them idle. A record that a commit refilled meanwhile stays.
func (s *Store) deleteExpired(cands []candidate, now time.Time) ([]bool, error) {
	deleted := make([]bool, len(cands))
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCounters)
		for i, cd := range cands {
			k := []byte(cd.key)
			v := b.Get(k)
			if v == nil {
				deleted[i] = true
				continue
			}
			sr, err := decode(v)
			if err != nil {
				continue // left for an operator to look at; never guessed
			}
			sr.rewindow(cd.window)
			sr.trim(now)
			if len(sr.buckets) > 0 {
				continue
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			deleted[i] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: deleting expired counters from %s: %w", state.ErrUnavailable, s.path, err)
	}
	return deleted, nil
}

// Close implements state.Store. Commits and attributions already queued are
// written first, then everything the log holds is applied to the file;
// later calls that write fail with an error wrapping state.ErrUnavailable.
// When that last checkpoint fails, Close says so, and the next Open
// replays the log.
func (s *Store) Close() error { return s.close(true) }

// close stops the writer, then the checkpointer; with checkpoint, it
// applies what the log holds that the file does not; then it closes the
// files.
func (s *Store) close(checkpoint bool) error {
	s.qmu.Lock()
	if s.closed.Swap(true) {
		s.qmu.Unlock()
		return nil
	}
	s.qmu.Unlock()
	close(s.stop)
	<-s.exited
	close(s.ckptQuit)
	<-s.ckptExited
	var err error
	if checkpoint {
		err = s.finalCheckpoint()
	}
	if cerr := s.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

// finalCheckpoint applies the sealed epoch, if the checkpointer did not,
// then the active one. The writer and the checkpointer have exited.
func (s *Store) finalCheckpoint() error {
	w := &s.wal
	applied, _, _ := s.ckpt.get()
	if w.sealed > applied {
		if err := s.checkpointEpoch(w.sealed, w.sealedEnd); err != nil {
			return err
		}
	}
	if w.off > 0 {
		return s.checkpointEpoch(w.epoch, w.off)
	}
	return nil
}
