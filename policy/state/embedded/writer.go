package embedded

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/msgate/msgate/policy/state"
)

// commitReq is one Commit waiting for its batch.
type commitReq struct {
	units []unit
	now   time.Time
	err   error // set by the writer before the batch's done closes
}

// batch is the commits written by one transaction and one fsync.
type batch struct {
	reqs []*commitReq
	done chan struct{}
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// rewrite is a copy of a counter whose window changed, to replace its
// record with.
type rewrite struct {
	key string
	series
}

// run is the writer: group commit without a timer. While one batch is being
// written and fsync'd, the commits that arrive queue up and become the next
// batch, so a busy server shares each fsync among all the commits that
// waited for it, and an idle one pays no added latency.
//
// Attributions (Remember) wait in their own queue, and nobody waits for
// them. A queue that becomes non-empty arms a timer (attrWake); when it
// fires, attrDelay later, the writer writes the queue, in the transaction
// of the commits at hand if any, else in one of its own; so does it when
// attrFlushAt of them wait. Writing them with every commit instead would
// add their pages (a leaf and its parents, rewritten whole) to every
// transaction: a single session's commits would be 20-25% slower
// (BenchmarkCommit).
func (s *Store) run() {
	defer close(s.exited)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var timerC <-chan time.Time // nil when the timer is not armed
	arm := func() {
		if timerC == nil {
			timer.Reset(s.attrDelay)
			timerC = timer.C
		}
	}
	var spare []attrRec // the queue's previous array, to reuse
	for {
		due := false
		select {
		case <-s.wake:
		case <-s.stop:
		case <-s.attrWake:
			arm()
			continue
		case <-timerC:
			timerC = nil
			due = true
		}
		var b *batch
		var attrs []attrRec
		s.qmu.Lock()
		if len(s.queue.reqs) > 0 {
			b, s.queue = s.queue, newBatch()
		}
		closed := s.closed.Load()
		many := len(s.attrQueue) >= attrFlushAt
		s.qmu.Unlock()
		rw := s.takeRewindowed()
		if due || many || closed {
			s.qmu.Lock()
			attrs, s.attrQueue = s.attrQueue, spare[:0]
			s.qmu.Unlock()
			spare = nil
		}
		if len(attrs) > 0 && timerC != nil {
			timer.Stop() // what it waited for is in this transaction
			timerC = nil
		}
		if b != nil || len(rw) > 0 || len(attrs) > 0 {
			if s.write(b, rw, attrs) {
				if cap(attrs) <= 4096 { // a burst's array is let go
					clear(attrs) // and so are the strings
					spare = attrs
				}
			} else if len(attrs) > 0 {
				arm() // requeued by write: retried attrDelay later
			}
		}
		if closed {
			// Close set closed under qmu before stop: nothing can be
			// queued after the batch just taken.
			return
		}
	}
}

// takeRewindowed copies the counters re-declared with another window since
// the last batch. Every unit of earlier batches is in memory by now and
// those of this batch are written after the copy, so the record becomes
// what memory holds: the units that the new window re-bucketed and the
// old one may have trimmed meanwhile. Without this, a window shortened then
// widened again would bring back, after a restart, units that memory had
// already forgotten.
func (s *Store) takeRewindowed() []rewrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rewindowed) == 0 {
		return nil
	}
	rw := make([]rewrite, 0, len(s.rewindowed))
	for key := range s.rewindowed {
		if c, ok := s.counters[key]; ok {
			rw = append(rw, rewrite{key: key, series: series{window: c.window, buckets: append([]bucket(nil), c.buckets...)}})
		}
		delete(s.rewindowed, key)
	}
	return rw
}

// write persists the rewrites, a batch (nil when there is none) and
// attributions in one transaction, then counts the batch's units in memory
// in the same order, then wakes the waiting commits. It reports whether the
// transaction was written; when not, the attributions are queued again.
func (s *Store) write(b *batch, rw []rewrite, attrs []attrRec) bool {
	var reqs []*commitReq
	if b != nil {
		reqs = b.reqs
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketCounters)
		for _, r := range rw {
			var err error
			if len(r.buckets) == 0 {
				err = bk.Delete([]byte(r.key))
			} else {
				err = bk.Put([]byte(r.key), r.encode())
			}
			if err != nil {
				return err
			}
		}
		for _, r := range reqs {
			if err := persist(bk, r); err != nil {
				return err
			}
		}
		return s.putAttribs(tx, attrs)
	})
	if err != nil {
		err = fmt.Errorf("%w: writing %s: %w", state.ErrUnavailable, s.path, err)
		for _, r := range reqs {
			r.err = err
		}
		if len(attrs) > 0 {
			s.requeueAttribs(attrs)
		}
	}
	s.mu.Lock()
	if err != nil {
		for _, r := range rw {
			s.rewindowed[r.key] = struct{}{} // for the next transaction
		}
	}
	for _, r := range reqs {
		for _, u := range r.units {
			c := u.c
			c.reserved--
			if r.err != nil {
				s.dropIfIdle(u.key, c)
				continue
			}
			idx := u.idx
			if c.window != u.window {
				// Re-declared while the unit was being written: place it as
				// rewindow would have, and rewrite the record (written
				// under the old window) next time.
				tmp := series{window: u.window, buckets: []bucket{{idx: idx, count: 1}}}
				tmp.rewindow(c.window)
				idx = tmp.buckets[0].idx
				s.rewindowed[u.key] = struct{}{}
			}
			c.trim(r.now)
			c.addAt(idx, 1)
			c.total++
			c.onDisk = true
		}
	}
	s.mu.Unlock()
	if b != nil {
		close(b.done)
	}
	return err == nil
}

// persist adds one commit's units to their records inside the batch's
// transaction. A record that cannot be read fails this commit alone, before
// anything of it is written; an error returned fails the whole transaction.
func persist(bk *bolt.Bucket, r *commitReq) error {
	recs := make([]series, len(r.units))
	for i, u := range r.units {
		v := bk.Get([]byte(u.key))
		if v == nil {
			recs[i] = series{window: u.window}
			continue
		}
		sr, err := decode(v)
		if err != nil {
			r.err = fmt.Errorf("%w: counter %q: %w", state.ErrUnavailable, u.key, err)
			return nil
		}
		recs[i] = sr
	}
	for i := range r.units {
		u := &r.units[i]
		rec := &recs[i]
		for j := range i {
			if r.units[j].key == u.key {
				rec = &recs[j] // the same key twice: both units on one record
				break
			}
		}
		rec.rewindow(u.window)
		rec.trim(r.now)
		u.idx = rec.add(r.now)
		if err := bk.Put([]byte(u.key), rec.encode()); err != nil {
			return err
		}
	}
	return nil
}
