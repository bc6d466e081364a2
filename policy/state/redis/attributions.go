package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/msgate/msgate/policy/state"
)

// Attributions: a hash of queue id to account and time, and the ids by
// time for forgetting.
//
// Remember does not wait for Redis, as the embedded store does not wait
// for its disk: the ids join a queue that one goroutine of the store
// writes, everything queued while the write before was out in one
// transaction of two commands (HSET and ZADD of all of them), after
// letting them gather for attrLinger. A message's end no longer waits for
// a round trip of its own, and Redis runs two commands per batch instead
// of a script with two per id. Attribute finds
// the ids that wait; an id is lost only when the daemon dies before its
// write (attrLinger and a round trip), or when Redis stays away so long that
// maxWaitingAttribs wait: Remember then reports that it kept nothing.

func (s *Store) attributionsKey() string       { return s.p + "queue-ids" }
func (s *Store) attributionsByTimeKey() string { return s.p + "queue-ids-by-time" }

// maxWaitingAttribs bounds the queue ids waiting for Redis; attrLinger is
// how long the writer lets ids gather once one waits: with it a 32x3 run
// of 20,000 messages sent 700 batches instead of about 3,400, and msgate
// spent 80-88 us of CPU a message instead of 90-94 (three same-run pairs,
// 2026-12-03).
const (
	maxWaitingAttribs = 1 << 16
	attrLinger        = 10 * time.Millisecond
)

type attribution struct {
	id, account string
	at          time.Time
}

// attrWriter writes the queue ids that Remember queued.
type attrWriter struct {
	s *Store

	mu    sync.Mutex
	queue []attribution // not yet sent
	out   []attribution // being written
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	// writing is held while a batch is written, so that forgetting
	// does not run between a batch's filtering and its write.
	writing sync.Mutex
}

func (w *attrWriter) start(s *Store) {
	w.s = s
	w.wake = make(chan struct{}, 1)
	w.quit = make(chan struct{})
	w.done = make(chan struct{})
	go w.run()
}

func (w *attrWriter) run() {
	defer close(w.done)
	pause := time.Duration(0)
	for {
		select {
		case <-w.wake:
		case <-w.quit:
			w.flush() // one last try, within the timeout
			return
		}
		// Let the ids of the next milliseconds join the batch.
		select {
		case <-time.After(attrLinger):
		case <-w.quit:
		}
		if err := w.flush(); err != nil {
			// Redis is away: the ids stay queued; try again after a
			// pause that doubles up to a second.
			pause = min(max(2*pause, 50*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
			case <-w.quit:
				return
			}
			w.poke()
			continue
		}
		pause = 0
	}
}

func (w *attrWriter) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// flush writes what is queued, batch after batch, until nothing is; after
// a failure the batch goes back to the head of the queue.
func (w *attrWriter) flush() error {
	for {
		w.writing.Lock()
		w.mu.Lock()
		batch := w.queue
		w.queue, w.out = nil, batch
		w.mu.Unlock()
		if len(batch) == 0 {
			w.writing.Unlock()
			return nil
		}
		err := w.write(batch)
		w.mu.Lock()
		w.out = nil
		if err != nil {
			w.queue = append(batch, w.queue...)
		}
		w.mu.Unlock()
		w.writing.Unlock()
		if err != nil {
			return err
		}
	}
}

func (w *attrWriter) write(batch []attribution) error {
	ctx, cancel := w.s.ctx(context.Background())
	defer cancel()
	fields := make([]any, 0, 2*len(batch))
	members := make([]goredis.Z, 0, len(batch))
	for _, a := range batch {
		fields = append(fields, a.id, strconv.FormatInt(a.at.UnixNano(), 10)+" "+a.account)
		members = append(members, goredis.Z{Score: float64(scoreOf(a.at)), Member: a.id})
	}
	_, err := w.s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.HSet(ctx, w.s.attributionsKey(), fields...)
		p.ZAdd(ctx, w.s.attributionsByTimeKey(), members...)
		return nil
	})
	return unavailable(err)
}

// find returns the waiting attribution of id.
func (w *attrWriter) find(id string) (attribution, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, q := range [][]attribution{w.queue, w.out} {
		for i := len(q) - 1; i >= 0; i-- {
			if q[i].id == id {
				return q[i], true
			}
		}
	}
	return attribution{}, false
}

// close writes what waits, within the timeout, and stops the writer.
func (w *attrWriter) close() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
}

// Remember implements state.Store: the id is queued for the writer, and
// found by Attribute at once.
func (s *Store) Remember(_ context.Context, id, account string, at time.Time) error {
	w := &s.attrs
	w.mu.Lock()
	if n := len(w.queue) + len(w.out); n >= maxWaitingAttribs {
		w.mu.Unlock()
		return fmt.Errorf("%w: redis: %d queue ids already wait for Redis; %s is not remembered", state.ErrUnavailable, n, id)
	}
	w.queue = append(w.queue, attribution{id: id, account: account, at: at})
	first := len(w.queue) == 1
	w.mu.Unlock()
	if first {
		w.poke()
	}
	return nil
}

// Attribute implements state.Store.
func (s *Store) Attribute(ctx context.Context, id string) (string, time.Time, bool, error) {
	if a, ok := s.attrs.find(id); ok {
		return a.account, a.at.UTC(), true, nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	v, err := s.c.HGet(ctx, s.attributionsKey(), id).Result()
	if errors.Is(err, goredis.Nil) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, unavailable(err)
	}
	ns, account, ok := strings.Cut(v, " ")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil {
		return "", time.Time{}, false, fmt.Errorf("redis: queue id %q: malformed record %q", id, v)
	}
	return account, time.Unix(0, n).UTC(), true, nil
}

// ForgetAttributions implements state.Store. Waiting ids remembered before
// the cutoff are dropped too; no batch is written meanwhile.
func (s *Store) ForgetAttributions(ctx context.Context, before time.Time) error {
	w := &s.attrs
	w.writing.Lock()
	defer w.writing.Unlock()
	w.mu.Lock()
	kept := w.queue[:0]
	for _, a := range w.queue {
		if !a.at.Before(before) {
			kept = append(kept, a)
		}
	}
	w.queue = kept
	w.mu.Unlock()
	_, err := s.forgetBefore(ctx, forgetAttributionsScript, []string{s.attributionsKey(), s.attributionsByTimeKey()}, before)
	return err
}
