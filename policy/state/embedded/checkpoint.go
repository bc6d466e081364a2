package embedded

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/msgate/msgate/policy/state"
)

// keyWALApplied, in the meta bucket, is the last epoch of the log fully
// applied to the file (8 bytes, big-endian; absent means 0).
var keyWALApplied = []byte("wal_applied")

// ckptJob is an epoch that the writer sealed: its records end at end.
type ckptJob struct {
	epoch uint64
	end   int64
}

// ckptState is what the checkpoints have done, for those who wait for one.
type ckptState struct {
	mu      sync.Mutex
	applied uint64        // the last epoch applied to the file
	err     error         // the last attempt's error; nil after a success
	changed chan struct{} // closed, and replaced, after each attempt
}

func (c *ckptState) get() (uint64, error, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied, c.err, c.changed
}

// done records an attempt to apply epoch.
func (c *ckptState) done(epoch uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && epoch > c.applied {
		c.applied = epoch
	}
	c.err = err
	close(c.changed)
	c.changed = make(chan struct{})
}

// checkpointer applies the epochs that the writer seals, one at a time,
// retrying a failed one (the writer meanwhile keeps appending to the
// active file) until it succeeds or Close stops it.
func (s *Store) checkpointer() {
	defer close(s.ckptExited)
	for {
		var job ckptJob
		select {
		case job = <-s.ckptJobs:
		case <-s.ckptQuit:
			return
		}
		for delay := 100 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
			if s.checkpointEpoch(job.epoch, job.end) == nil {
				select {
				case s.ckptDone <- struct{}{}:
				default:
				}
				break
			}
			select {
			case <-time.After(delay):
			case <-s.ckptQuit:
				return
			}
		}
	}
}

// checkpointEpoch reads epoch's records back from its file, up to end,
// and applies them to the file. Reading them back rather than keeping a
// copy means that the path recovery takes at Open runs all the time.
func (s *Store) checkpointEpoch(epoch uint64, end int64) error {
	err := s.readAndApply(epoch, end)
	if err != nil {
		err = fmt.Errorf("checkpointing epoch %d of the log %s: %w", epoch, walName(s.path, int(epoch%2)), err)
	}
	s.ckpt.done(epoch, err)
	return err
}

func (s *Store) readAndApply(epoch uint64, end int64) error {
	// Not kept between checkpoints: an idle daemon holds no epoch-sized
	// buffer, and one checkpoint every few seconds at most allocates it.
	buf := make([]byte, end)
	if _, err := s.wal.files[epoch%2].ReadAt(buf, 0); err != nil {
		return err
	}
	recs, n := scanWAL(buf, epoch)
	if int64(n) != end {
		return fmt.Errorf("%w: %d bytes of whole records where %d were written", errCorruptLog, n, end)
	}
	return s.apply(epoch, recs)
}

// Checkpoint makes the state file hold every unit committed so far: it
// asks the writer to seal the log's active epoch, then waits until that
// epoch is applied. Expire calls it before deleting records; nothing else
// needs to (the log is applied every few seconds, and Open replays what is
// left), but a benchmark may want a store at rest.
func (s *Store) Checkpoint(ctx context.Context) error {
	reply := make(chan uint64, 1)
	select {
	case s.forceCkpt <- reply:
	case <-s.exited:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	target := <-reply
	applied, _, ch := s.ckpt.get()
	for applied < target {
		select {
		case <-ch:
		case <-s.ckptExited:
			return errClosed
		case <-ctx.Done():
			return ctx.Err()
		}
		var err error
		applied, err, ch = s.ckpt.get()
		if applied < target && err != nil {
			return fmt.Errorf("%w: %w", state.ErrUnavailable, err)
		}
	}
	return nil
}

// apply applies the records of epoch to the file in one transaction that
// also sets wal_applied to epoch, unless the file has applied it already:
// applying an epoch is all or nothing, and never done twice. Each counter
// record is read and written once, however many units it gets. Checkpoints
// and recovery at Open both come here.
func (s *Store) apply(epoch uint64, recs [][]byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if walApplied(meta) >= epoch {
			return nil
		}
		cb := tx.Bucket(bucketCounters)
		ab := tx.Bucket(bucketAttribs)
		ab.FillPercent = 0.95 // keys come in time order: see putAttribs
		cut := s.attrCut.Load()
		recOf := make(map[string]*series)
		var keys arena // attribution keys: bbolt needs them until the end
		for _, p := range recs {
			err := decodePayload(p, func(op *walOp) error {
				switch op.kind {
				case opRewrite:
					sr := op.sr
					recOf[string(op.key)] = &sr
				case opUnits:
					sr, ok := recOf[string(op.key)]
					if !ok {
						sr = &series{window: op.window}
						if v := cb.Get(op.key); v != nil {
							d, err := decode(v)
							if err != nil {
								return fmt.Errorf("counter %q: %w", op.key, err)
							}
							*sr = d
						}
						recOf[string(op.key)] = sr
					}
					sr.rewindow(op.window)
					sr.trim(time.Unix(0, op.now))
					sr.addAt(op.idx, 1)
				case opAttrib:
					if op.at < cut {
						return nil // forgotten while it waited
					}
					k := keys.alloc(8 + len(op.id))
					appendAttribKey(k[:0], op.at, string(op.id))
					return ab.Put(k, op.acct)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		names := make([]string, 0, len(recOf))
		for k := range recOf {
			names = append(names, k)
		}
		slices.Sort(names) // bbolt then walks its pages in order
		for _, k := range names {
			sr := recOf[k]
			var err error
			if len(sr.buckets) == 0 {
				err = cb.Delete([]byte(k))
			} else {
				err = cb.Put([]byte(k), sr.encode())
			}
			if err != nil {
				return err
			}
		}
		if s.applyHook != nil {
			if err := s.applyHook(epoch); err != nil {
				return err
			}
		}
		return meta.Put(keyWALApplied, binary.BigEndian.AppendUint64(nil, epoch))
	})
}

// arena hands out byte slices that stay valid as long as the arena: bbolt
// keeps the keys it is given until its transaction ends.
type arena struct{ chunk []byte }

func (a *arena) alloc(n int) []byte {
	if n > cap(a.chunk)-len(a.chunk) {
		a.chunk = make([]byte, 0, max(n, 64<<10))
	}
	l := len(a.chunk)
	a.chunk = a.chunk[:l+n]
	return a.chunk[l : l+n : l+n]
}

func walApplied(meta *bolt.Bucket) uint64 {
	if v := meta.Get(keyWALApplied); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// logEpoch is an epoch found in a log file, and its records.
type logEpoch struct {
	epoch uint64
	recs  [][]byte
}

// readLog returns the epochs the log files hold, in epoch order, and the
// largest (0 when none). A file whose first record is torn holds none: it
// was never acknowledged.
func (s *Store) readLog() ([]logEpoch, uint64, error) {
	var eps []logEpoch
	var last uint64
	for i, f := range s.wal.files {
		fi, err := f.Stat()
		if err != nil {
			return nil, 0, err
		}
		buf := make([]byte, fi.Size())
		if _, err := f.ReadAt(buf, 0); err != nil && err != io.EOF {
			return nil, 0, fmt.Errorf("reading %s: %w", walName(s.path, i), err)
		}
		e := walEpoch(buf)
		if e == 0 || e%2 != uint64(i) {
			continue
		}
		if recs, _ := scanWAL(buf, e); len(recs) > 0 {
			eps = append(eps, logEpoch{e, recs})
			last = max(last, e)
		}
	}
	slices.SortFunc(eps, func(a, b logEpoch) int { return cmp.Compare(a.epoch, b.epoch) })
	return eps, last, nil
}

// replayLog applies, in order and each in its own transaction, the epochs
// that the file has not applied. They must follow applied without a gap.
func (s *Store) replayLog(eps []logEpoch, applied uint64) error {
	next := applied + 1
	for _, ep := range eps {
		if ep.epoch < next {
			continue // applied already; the file is to be reused
		}
		if ep.epoch != next {
			return fmt.Errorf("the log %s holds epoch %d, but the state file has applied epochs up to %d only: epoch %d is missing (is the log this state file's?)",
				walName(s.path, int(ep.epoch%2)), ep.epoch, applied, next)
		}
		if err := s.apply(ep.epoch, ep.recs); err != nil {
			return fmt.Errorf("replaying epoch %d of the log %s: %w", ep.epoch, walName(s.path, int(ep.epoch%2)), err)
		}
		next++
	}
	return nil
}
