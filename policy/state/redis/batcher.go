package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// call is one request waiting for its batch: its script (kind), its keys
// and arguments in the batch's script, and the reply to it.
type call struct {
	kind     *kind
	now      time.Time
	deadline time.Time // when the store's timeout ends for it
	keys     []string
	// args are the call's arguments. With rules, the batch sends each
	// distinct rule once and the call its counters' rule numbers: args
	// are then lead arguments, per values per counter (each after its
	// counter's rule number) and the rest.
	args      []any
	rules     []rule
	lead, per int
	reply     []any
	err       error
	done      chan struct{} // closed when reply or err is set
	// state is pending, answered (reply or err set, done closed) or
	// abandoned (the caller stopped waiting); whoever moves it from
	// pending first decides. undo, when set, takes back what a batch did
	// for a call that was not answered with it.
	state atomic.Int32
	undo  func(reply []any)
}

// rule is what the counters of one rule share in a batch, sent once per
// batch (see the scripts); the scripts that take rules say what its
// values are.
type rule [5]int64

const (
	pending int32 = iota
	answered
	abandoned
)

func newCall(k *kind, now time.Time) *call {
	return &call{kind: k, now: now, done: make(chan struct{})}
}

func (c *call) reset() {
	c.reply, c.err = nil, nil
	c.done = make(chan struct{})
	c.state.Store(pending)
}

// answer hands the call its reply; false when it was answered (timed
// out) or abandoned before.
func (c *call) answer(reply []any, err error) bool {
	if !c.state.CompareAndSwap(pending, answered) {
		return false
	}
	c.reply, c.err = reply, err
	close(c.done)
	return true
}

var errTimeout = errors.New("no answer within the timeout")

// kind is one of the scripts that calls are batched for.
type kind struct {
	script *goredis.Script
	// head is the script's arguments before the calls', keys its keys
	// before theirs; with ruleLen > 0 the rule table (its length, then
	// ruleLen values per rule) follows head.
	head    func(batch []*call) []any
	keys    []string
	ruleLen int
}

// batcher sends calls to Redis, at once when no batch is out; otherwise a
// call waits with the others that queue meanwhile, and the batches that
// follow go from a goroutine of their own, each with everything queued
// while the one before was out. Under load one round trip and one script
// per kind serve many sessions, each call checked and applied in order,
// all-or-none as on its own; alone, a call pays nothing for it. A batch
// with calls of several kinds (reservations, commits, standings) sends
// their scripts in one pipeline: one round trip where there were one per
// kind.
//
// A call waits at most the store's timeout. The caller that finds no batch
// out sends its own and is bounded by the client's read timeout; the calls
// that queue share one timer, the watchdog, set for the earliest deadline
// among them and the batch out, rather than a timer each: the timer per
// call (context.WithTimeout) was 7% of msgate's CPU in a perf profile of
// msgate serve on one Redis under msgate-load at 32x3 (2026-12-03).
type batcher struct {
	s *Store

	mu    sync.Mutex
	busy  bool    // a batch is out; the next waits
	out   []*call // the batch out, when drain sent it
	queue []*call
	dog   *time.Timer
	armed time.Time // when dog fires; zero when it is not set
}

func (b *batcher) do(ctx context.Context, c *call) ([]any, error) {
	c.deadline = time.Now().Add(b.s.timeout)
	b.mu.Lock()
	if b.busy {
		b.queue = append(b.queue, c)
		b.watch(c.deadline)
		b.mu.Unlock()
		select {
		case <-c.done:
			return c.reply, c.err
		case <-ctx.Done():
			if c.state.CompareAndSwap(pending, abandoned) {
				return nil, unavailable(ctx.Err())
			}
			<-c.done // answered meanwhile
			return c.reply, c.err
		}
	}
	b.busy = true
	b.mu.Unlock()
	b.send([]*call{c})
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.busy = false
		b.mu.Unlock()
		return c.reply, c.err
	}
	b.mu.Unlock()
	go b.drain()
	return c.reply, c.err
}

// watch sets the watchdog for deadline unless it fires earlier; b.mu is
// held.
func (b *batcher) watch(deadline time.Time) {
	if !b.armed.IsZero() && !deadline.Before(b.armed) {
		return
	}
	b.armed = deadline
	d := time.Until(deadline)
	if b.dog == nil {
		b.dog = time.AfterFunc(d, b.expire)
	} else {
		b.dog.Reset(d)
	}
}

// expire answers every waiting call whose deadline passed with a timeout,
// drops them (and the abandoned) from the queue, and sets the watchdog for
// the next deadline.
func (b *batcher) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.armed = time.Time{}
	var next time.Time
	// gone answers c when it is late; it reports whether c is done with.
	gone := func(c *call) bool {
		if c.state.Load() != pending {
			return true
		}
		if !c.deadline.After(now) {
			c.answer(nil, unavailable(fmt.Errorf("redis: %w (%v)", errTimeout, b.s.timeout)))
			return true
		}
		if next.IsZero() || c.deadline.Before(next) {
			next = c.deadline
		}
		return false
	}
	for _, c := range b.out {
		gone(c)
	}
	b.queue = slices.DeleteFunc(b.queue, gone)
	if !next.IsZero() {
		b.watch(next)
	}
}

// drain sends the queued calls, batch after batch, until none is left.
func (b *batcher) drain() {
	for {
		b.mu.Lock()
		batch := b.queue
		b.queue = nil
		b.out = batch
		if len(batch) == 0 {
			b.busy = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.send(batch)
		b.mu.Lock()
		b.out = nil
		b.mu.Unlock()
	}
}

// send runs one batch and hands every call its reply. A call answered
// (timed out) or abandoned meanwhile gets nothing; what the batch did for
// it is taken back by its undo.
func (b *batcher) send(batch []*call) {
	if slices.ContainsFunc(batch, func(c *call) bool { return c.state.Load() != pending }) {
		batch = slices.DeleteFunc(slices.Clone(batch), func(c *call) bool { return c.state.Load() != pending })
		if len(batch) == 0 {
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.s.timeout)
	defer cancel()
	k := batch[0].kind
	if !slices.ContainsFunc(batch, func(c *call) bool { return c.kind != k }) {
		keys, args := encode(k, batch)
		answer(batch, k.script.Run(ctx, b.s.c, keys, args...))
		return
	}
	// Several kinds: one script each, in one pipeline, in the order of
	// their first calls. Calls of different kinds come from different
	// sessions, which any order serves.
	var groups [][]*call
	for _, c := range batch {
		i := slices.IndexFunc(groups, func(g []*call) bool { return g[0].kind == c.kind })
		if i < 0 {
			groups = append(groups, []*call{c})
		} else {
			groups[i] = append(groups[i], c)
		}
	}
	type sent struct {
		keys []string
		args []any
		cmd  *goredis.Cmd
	}
	pipe := b.s.c.Pipeline()
	out := make([]sent, len(groups))
	for i, g := range groups {
		o := &out[i]
		o.keys, o.args = encode(g[0].kind, g)
		o.cmd = g[0].kind.script.EvalSha(ctx, pipe, o.keys, o.args...)
	}
	_, _ = pipe.Exec(ctx) // each command's error is its own
	for i, g := range groups {
		o := &out[i]
		if goredis.HasErrorPrefix(o.cmd.Err(), "NOSCRIPT") {
			// Redis lost its scripts (a restart, SCRIPT FLUSH): this
			// one again, which loads it.
			o.cmd = g[0].kind.script.Run(ctx, b.s.c, o.keys, o.args...)
		}
		answer(g, o.cmd)
	}
}

// answer hands each call of a batch its reply in a script's replies.
func answer(batch []*call, cmd *goredis.Cmd) {
	replies, err := cmd.Slice()
	if err == nil && len(replies) != len(batch) {
		err = fmt.Errorf("redis: %d replies to %d calls", len(replies), len(batch))
	}
	for i, c := range batch {
		var reply []any
		if err == nil {
			reply, _ = replies[i].([]any)
		}
		if !c.answer(reply, unavailable(err)) && err == nil && c.undo != nil {
			go c.undo(reply)
		}
	}
}

// encode lays out a batch's keys and arguments: the batcher's, then each
// call's. The rules of the calls' counters go once each in a table after
// the head, and each counter names its rule by number: in a batch of
// messages from many accounts most counters share a few rules, and what
// Redis spends on a script grows with the arguments it parses (405k ->
// 382k instructions a message in Redis, callgrind.sh, 2026-12-04).
func encode(k *kind, batch []*call) ([]string, []any) {
	nk, na := len(k.keys), 0
	var table []rule
	for _, c := range batch {
		nk, na = nk+len(c.keys), na+len(c.args)+len(c.rules)
		for _, r := range c.rules {
			if !slices.Contains(table, r) {
				table = append(table, r)
			}
		}
	}
	keys := append(make([]string, 0, nk), k.keys...)
	args := k.head(batch)
	if k.ruleLen > 0 {
		args = slices.Grow(args, 1+k.ruleLen*len(table)+na)
		args = append(args, len(table))
		for _, r := range table {
			for _, v := range r[:k.ruleLen] {
				args = append(args, v)
			}
		}
	} else {
		args = slices.Grow(args, na)
	}
	for _, c := range batch {
		keys = append(keys, c.keys...)
		if len(c.rules) == 0 {
			args = append(args, c.args...)
			continue
		}
		args = append(args, c.args[:c.lead]...)
		at := c.lead
		for _, r := range c.rules {
			args = append(args, slices.Index(table, r)+1)
			args = append(args, c.args[at:at+c.per]...)
			at += c.per
		}
		args = append(args, c.args[at:]...)
	}
	return keys, args
}

// latest is the latest time of a batch's calls.
func latest(batch []*call) time.Time {
	now := batch[0].now
	for _, c := range batch[1:] {
		if c.now.After(now) {
			now = c.now
		}
	}
	return now
}
