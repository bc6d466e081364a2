package redis

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/msgate/msgate/policy/state"
)

// TestBatchOfKinds: calls of several kinds queued behind a batch go out
// together, one script each in one pipeline, and each gets its answer,
// also when Redis lost the scripts meanwhile (NOSCRIPT: each is run
// again, which loads it).
func TestBatchOfKinds(t *testing.T) {
	srv := miniredis.RunT(t)
	s, err := New(Options{Client: goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	now := time.Now()
	counters := []state.Counter{{Key: "rate/hourly/a", Window: time.Hour, Limit: 10}}
	first, err := s.Reserve(ctx, counters, now)
	if err != nil || !first.Admitted {
		t.Fatalf("reserve: %+v %v", first, err)
	}

	// A batch is out: the next calls queue.
	s.batch.mu.Lock()
	s.batch.busy = true
	s.batch.mu.Unlock()
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 3)
	go func() {
		out, err := s.Reserve(ctx, counters, now)
		if err == nil && !out.Admitted {
			err = errRefused
		}
		results <- result{"reserve", err}
	}()
	go func() { results <- result{"commit", s.Commit(ctx, first.Reservation, now)} }()
	go func() {
		_, flagged, _, err := s.Account(ctx, "a", now.Add(-time.Hour))
		if err == nil && flagged {
			err = errFlagged
		}
		results <- result{"account", err}
	}()
	for deadline := time.Now().Add(5 * time.Second); ; {
		s.batch.mu.Lock()
		n := len(s.batch.queue)
		s.batch.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want 3", n)
		}
		time.Sleep(time.Millisecond)
	}
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	go s.batch.drain()
	for range 3 {
		r := <-results
		if r.err != nil {
			t.Errorf("%s: %v", r.what, r.err)
		}
	}
	u, err := s.Usage(ctx, counters[0].Key, time.Hour, now)
	if err != nil || u.Committed != 1 || u.Reserved != 1 {
		t.Errorf("usage %+v %v, want 1 committed and 1 reserved", u, err)
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const (
	errRefused testError = "refused"
	errFlagged testError = "flagged"
)
