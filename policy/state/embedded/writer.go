package embedded

import (
	"fmt"
	"os"
	"time"

	"github.com/msgate/msgate/policy/state"
)

// commitReq is one Commit waiting for its batch.
type commitReq struct {
	units []unit
	now   time.Time
	err   error // set by the writer before the batch's done closes
}

// batch is the commits written by one write and one fdatasync.
type batch struct {
	reqs []*commitReq
	done chan struct{}
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// wal is the log's files and the writer's place in them. Only the writer
// goroutine touches it, and Close once the writer has exited; the
// checkpointer only reads the file of a sealed epoch, which the writer
// does not write.
type wal struct {
	files       [2]*os.File
	noSync      bool
	observeSync func(time.Duration) // Options.ObserveSync

	epoch    uint64 // the active epoch, written in files[epoch%2]
	off      int64  // where its next record goes
	crc      uint32 // the CRC of its last record, which the next one chains to
	unsynced bool   // records written since the last fdatasync

	// sealed is the epoch handed to the checkpointer and not known to be
	// applied yet (0: none), and sealedEnd where its records end. Its
	// file is not written until it is applied.
	sealed    uint64
	sealedEnd int64

	ckptBytes int64
	ckptAfter time.Duration
	enc       walEncoder
	// last is, for each counter of the batch being encoded, the bucket
	// its latest unit went to.
	last map[*counter]int64
}

// run is the writer: group commit without a timer. While one batch is being
// written and fdatasync'd, the commits that arrive queue up and become the
// next batch, so a busy server shares each fdatasync among all the commits
// that waited for it, and an idle one pays no added latency.
//
// Attributions (Remember) wait in their own queue, and nobody waits for
// them: every write takes the whole queue along. When no commit comes, a
// queue that became non-empty arms a timer (attrWake), and attrDelay later
// the writer writes the queue alone, without fdatasync (the next commit's
// covers it); so does it at once when attrFlushAt of them wait.
//
// Between writes the writer seals the active epoch of the log when it
// holds ckptBytes, ckptAfter after its first record, or when Expire asks
// (forceCkpt), provided the checkpointer is done with the previous one;
// until then the active file just grows.
func (s *Store) run() {
	defer close(s.exited)
	w := &s.wal
	newTimer := func() *time.Timer {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	attrTimer, ckptTimer := newTimer(), newTimer()
	var attrC, ckptC <-chan time.Time // nil when the timer is not armed
	armAttr := func() {
		if attrC == nil {
			attrTimer.Reset(s.attrDelay)
			attrC = attrTimer.C
		}
	}
	wantSeal := false
	var spare []attrRec // the queue's previous array, to reuse
	for {
		due := false
		select {
		case <-s.wake:
		case <-s.stop:
		case <-s.attrWake:
			armAttr()
			continue
		case <-attrC:
			attrC = nil
			due = true
		case <-ckptC:
			ckptC = nil
			wantSeal = true
		case <-s.ckptDone:
		case reply := <-s.forceCkpt:
			// Every unit that memory counts is in an epoch up to the
			// active one; an empty active epoch needs no sealing.
			if w.off > 0 {
				reply <- w.epoch
				wantSeal = true
			} else {
				reply <- w.epoch - 1
			}
		}
		var b *batch
		s.qmu.Lock()
		if len(s.queue.reqs) > 0 {
			b, s.queue = s.queue, newBatch()
		}
		closed := s.closed.Load()
		many := len(s.attrQueue) >= attrFlushAt
		s.qmu.Unlock()
		s.mu.Lock()
		rewrites := len(s.rewindowed) > 0
		s.mu.Unlock()
		var attrs []attrRec
		if b != nil || rewrites || due || many || closed {
			s.qmu.Lock()
			attrs, s.attrQueue = s.attrQueue, spare[:0]
			s.qmu.Unlock()
			spare = nil
		}
		if len(attrs) > 0 && attrC != nil {
			attrTimer.Stop() // what it waited for is in this write
			attrC = nil
		}
		if b != nil || rewrites || len(attrs) > 0 {
			wasEmpty := w.off == 0
			if s.write(b, attrs) {
				if cap(attrs) <= 4096 { // a burst's array is let go
					clear(attrs) // and so are the strings
					spare = attrs
				}
			} else if len(attrs) > 0 {
				armAttr() // requeued by write: retried attrDelay later
			}
			if wasEmpty && w.off > 0 {
				ckptTimer.Reset(w.ckptAfter)
				ckptC = ckptTimer.C
			}
		}
		if closed {
			// Close set closed under qmu before stop: nothing can be
			// queued after the batch just taken. Close checkpoints what
			// is left.
			return
		}
		if w.sealed != 0 {
			if applied, _, _ := s.ckpt.get(); applied >= w.sealed {
				w.sealed = 0
			}
		}
		if (wantSeal || w.off >= w.ckptBytes) && w.off > 0 && w.sealed == 0 {
			if err := s.seal(); err == nil {
				wantSeal = false
				ckptTimer.Stop()
				ckptC = nil
			}
		}
	}
}

// seal hands the active epoch to the checkpointer and starts the next one
// at the start of the other file, whose epoch is applied.
func (s *Store) seal() error {
	w := &s.wal
	if w.unsynced && !w.noSync {
		// Attributions written alone: they go to disk before any record
		// of the next epoch can, so that no epoch is ever missing.
		if err := fdatasync(w.files[w.epoch%2]); err != nil {
			return err
		}
	}
	w.unsynced = false
	w.sealed, w.sealedEnd = w.epoch, w.off
	s.ckptJobs <- ckptJob{epoch: w.epoch, end: w.off} // room for one; at most one is sealed
	w.epoch++
	w.off, w.crc = 0, 0
	return nil
}

// takeRewindowed encodes the counters re-declared with another window since
// the last write, and returns their keys. Every unit of earlier batches is
// in memory by now and those of this batch are encoded after, so the
// record becomes what memory holds: the units that the new window
// re-bucketed and the old one may have trimmed meanwhile. Without this, a
// window shortened then widened again would bring back, after a restart,
// units that memory had already forgotten. s.mu is held.
func (s *Store) takeRewindowed() []string {
	if len(s.rewindowed) == 0 {
		return nil
	}
	keys := make([]string, 0, len(s.rewindowed))
	for key := range s.rewindowed {
		if c, ok := s.counters.Get(key); ok {
			s.wal.enc.rewrite(key, &c.series)
			keys = append(keys, key)
		}
		delete(s.rewindowed, key)
	}
	return keys
}

// placeUnits chooses the bucket of each unit of reqs from the mirror, as
// series.add would put it after trimming: the bucket of its time, or the
// newest one when the clock stepped back. The mirror does not count the
// units yet, so each counter's newest bucket within the batch is kept in
// w.last. The checkpoint then puts each unit in that same bucket, so that
// the file and memory agree bucket for bucket. s.mu is held.
func (s *Store) placeUnits(reqs []*commitReq) {
	last := s.wal.last
	defer clear(last)
	for _, r := range reqs {
		for i := range r.units {
			u := &r.units[i]
			c := u.c
			u.window = c.window
			c.trim(r.now)
			newest, ok := last[c]
			if ok && newest < state.Oldest(r.now, c.window) {
				ok = false // the batch's earlier unit left the window
			} else if !ok && len(c.buckets) > 0 {
				newest, ok = c.buckets[len(c.buckets)-1].idx, true
			}
			u.idx = state.BucketOf(r.now, c.window)
			if ok && newest >= u.idx {
				u.idx = newest
			}
			last[c] = u.idx
		}
	}
}

// write appends the rewrites, a batch (nil when there is none) and
// attributions to the log in one write, in that order, fdatasyncs it when
// it holds a commit or a rewrite, then counts the batch's units in memory
// in the same order, then wakes the waiting commits. It reports whether
// the write succeeded; when not, the attributions are queued again, and the
// next write goes to the same offset, so that nothing follows a record
// the failure may have left half written.
func (s *Store) write(b *batch, attrs []attrRec) bool {
	w := &s.wal
	var reqs []*commitReq
	if b != nil {
		reqs = b.reqs
	}
	w.enc.reset(w.epoch, w.crc)
	s.mu.Lock()
	rw := s.takeRewindowed()
	s.placeUnits(reqs)
	s.mu.Unlock()
	for _, r := range reqs {
		w.enc.units(r.now.UnixNano(), r.units)
	}
	cut := s.attrCut.Load()
	for _, a := range attrs {
		if a.at >= cut { // else forgotten while it waited
			w.enc.attrib(a)
		}
	}
	w.enc.finish()
	sync := len(reqs) > 0 || len(rw) > 0
	var err error
	if len(w.enc.buf) > 0 {
		f := w.files[w.epoch%2]
		_, err = f.WriteAt(w.enc.buf, w.off)
		if err == nil && sync && !w.noSync {
			start := time.Now()
			err = fdatasync(f)
			if w.observeSync != nil {
				w.observeSync(time.Since(start))
			}
		}
		if err == nil {
			w.off += int64(len(w.enc.buf))
			w.crc = w.enc.crc
			w.unsynced = !sync
		}
	}
	if err != nil {
		err = fmt.Errorf("%w: writing the log of %s: %w", state.ErrUnavailable, s.path, err)
		for _, r := range reqs {
			r.err = err
		}
		if len(attrs) > 0 {
			s.requeueAttribs(attrs)
		}
	}
	s.mu.Lock()
	if err != nil {
		for _, key := range rw {
			s.rewindowed[key] = struct{}{} // for the next write
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
				idx = state.Rebucket(idx, u.window, c.window)
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
