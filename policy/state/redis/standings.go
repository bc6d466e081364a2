package redis

import (
	"context"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/msgate/msgate/policy/state"
)

// Standings (an account's flag and complaints) are read at the first
// Microsoft recipient of every message, and change only when an account is
// flagged, unflagged or complained about. Each daemon keeps the standings
// it read, and every write of one publishes the account on a channel that
// all daemons subscribe to; a daemon drops what it kept of that account
// when the message arrives. The cache is used only while the subscription
// is known to be alive: it answered a ping within staleAfter. So a change
// made through any daemon is seen by every other within staleAfter, and
// without the subscription every read goes to Redis as before. A change
// written to Redis by hand (redis-cli) is not published: it is seen when
// the account's entry is dropped for another reason, or after a restart.
// The cache was measured only together with the key layout of the same
// day (README "Performance"), not on its own.

const (
	// pingEvery is how often the subscriber pings; staleAfter how long
	// after the last sign of life the cache is no longer trusted.
	pingEvery  = 250 * time.Millisecond
	staleAfter = time.Second
	maxPause   = 5 * time.Second
	// maxStandings bounds the cache; when full it starts again empty.
	maxStandings = 100_000
	// allAccounts is published when every account's standing may have
	// changed (complaints forgotten).
	allAccounts = "*"
)

type standing struct {
	since      time.Time // complaints from since on are in complaints
	flag       state.Flag
	flagged    bool
	complaints []state.Complaint
}

type standings struct {
	mu      sync.Mutex
	gen     uint64 // bumped by every drop, so a read that raced one keeps nothing
	alive   time.Time
	entries map[string]standing
}

func (s *Store) channel() string { return s.p + "standings" }

// cached returns the standing of account from since on, when the cache
// holds it and may be trusted; and the generation a read from Redis must
// still find to keep what it read.
func (s *Store) cached(account string, since time.Time) (standing, bool, uint64) {
	c := &s.standings
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.alive) > staleAfter {
		return standing{}, false, c.gen
	}
	e, ok := c.entries[account]
	if !ok || e.since.After(since) {
		return standing{}, false, c.gen
	}
	i := 0
	for i < len(e.complaints) && e.complaints[i].At.Before(since) {
		i++
	}
	e.complaints = e.complaints[i:]
	return e, true, c.gen
}

// keep stores a standing read from Redis, unless a drop came meanwhile.
func (s *Store) keep(account string, gen uint64, e standing) {
	c := &s.standings
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || time.Since(c.alive) > staleAfter {
		return
	}
	if c.entries == nil || len(c.entries) >= maxStandings {
		c.entries = make(map[string]standing)
	}
	c.entries[account] = e
}

// drop forgets what the cache holds of account (allAccounts: of all).
func (s *Store) drop(account string) {
	c := &s.standings
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if account == allAccounts {
		c.entries = nil
	} else {
		delete(c.entries, account)
	}
}

// lived records a sign of life of the subscription; a subscription that
// starts (again) may have missed messages, so it starts empty.
func (s *Store) lived(fresh bool) {
	c := &s.standings
	c.mu.Lock()
	defer c.mu.Unlock()
	if fresh {
		c.gen++
		c.entries = nil
	}
	c.alive = time.Now()
}

// publish tells every daemon (this one at once) that account's standing
// changed. A failed publish is not an error of the write: the others then
// see the change within staleAfter only if their subscription also broke;
// the write itself succeeded.
func (s *Store) publish(ctx context.Context, account string) {
	s.drop(account)
	_ = s.c.Publish(ctx, s.channel(), account).Err()
}

// subscribe keeps the subscription until ctx ends: messages drop entries,
// pongs and confirmations keep the cache trusted, and a broken connection
// is replaced (go-redis subscribes again on the next receive).
func (s *Store) subscribe(ctx context.Context) {
	ps := s.c.Subscribe(ctx, s.channel())
	defer ps.Close()
	go func() {
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = ps.Ping(ctx)
			}
		}
	}()
	pause := pingEvery
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, staleAfter)
		if err != nil {
			// Not trusted until a new subscription confirms. A Redis
			// that stays down is dialled less and less often, at
			// least every maxPause: until then the cache is not used.
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			pause = min(2*pause, maxPause)
			continue
		}
		pause = pingEvery
		switch m := msg.(type) {
		case *goredis.Subscription:
			s.lived(m.Kind == "subscribe")
		case *goredis.Message:
			s.drop(m.Payload)
			s.lived(false)
		case *goredis.Pong:
			s.lived(false)
		}
	}
}
