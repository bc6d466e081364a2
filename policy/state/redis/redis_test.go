package redis_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/redis"
	"github.com/msgate/msgate/policy/state/redis/redistest"
	"github.com/msgate/msgate/policy/state/statetest"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func open(t *testing.T, addr string, timeout time.Duration) *redis.Store {
	t.Helper()
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{addr},
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, MaxRetries: -1})
	s, err := redis.New(redis.Options{Client: c, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The conformance suite on miniredis: every part, in process.
func TestConformanceMiniredis(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		return open(t, miniredis.RunT(t).Addr(), time.Second)
	})
}

// The conformance suite on a real redis-server, each subtest with a
// database of its own.
func TestConformanceRedisServer(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	statetest.Run(t, func(t *testing.T) state.Store {
		s := open(t, srv.Addr, time.Second)
		flush(t, srv.Addr)
		return s
	})
}

// The conformance suite through a Cluster client on a one-node Redis
// Cluster: every script's keys must be in one hash slot, or Redis refuses
// them.
func TestConformanceCluster(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Cluster: true})
	statetest.Run(t, func(t *testing.T) state.Store {
		s := dialStore[*goredis.ClusterClient](t, "redis://"+srv.Addr+"?addr="+srv.Addr)
		flush(t, srv.Addr)
		return s
	})
}

// dialStore opens a store through redis.Dial, which must have made a
// client of type C for the URL.
func dialStore[C goredis.UniversalClient](t *testing.T, url string) *redis.Store {
	t.Helper()
	c, err := redis.Dial(url, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(C); !ok {
		t.Fatalf("Dial(%q) made a %T, want a %T", url, c, *new(C))
	}
	s, err := redis.New(redis.Options{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func flush(t *testing.T, addr string) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// Two daemons on one Redis share the numbers exactly: 32 sessions on each
// against a cap of 100 admit exactly 100 units between them.
func TestTwoDaemonsShareExactly(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b := open(t, srv.Addr, 5*time.Second), open(t, srv.Addr, 5*time.Second)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	counters := func(account string) []state.Counter {
		return []state.Counter{
			{Key: "rate/hourly/" + account, Window: time.Hour, Limit: 1000},
			{Key: "cap", Window: 24 * time.Hour, Limit: 100},
		}
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i, s := range []*redis.Store{a, b} {
		for g := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				account := string(rune('a'+i)) + string(rune('a'+g%8))
				for range 10 {
					out, err := s.Reserve(ctx, counters(account), t0)
					if err != nil {
						t.Error(err)
						return
					}
					if !out.Admitted {
						continue
					}
					if err := s.Commit(ctx, out.Reservation, t0); err != nil {
						t.Error(err)
						return
					}
					admitted.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if n := admitted.Load(); n != 100 {
		t.Fatalf("admitted %d units between the two daemons, want exactly the cap, 100", n)
	}
	for _, s := range []*redis.Store{a, b} {
		u, err := s.Usage(ctx, "cap", 24*time.Hour, t0)
		if err != nil || u != (state.Usage{Committed: 100}) {
			t.Fatalf("cap usage = %+v, %v; want 100 committed", u, err)
		}
	}
	// A flag set through one is the other's at once.
	if err := a.SetFlag(ctx, state.Flag{Account: "alice", Action: state.ActionDefer, Reason: "manual", Since: t0}); err != nil {
		t.Fatal(err)
	}
	if f, ok, err := b.GetFlag(ctx, "alice"); err != nil || !ok || f.Action != state.ActionDefer {
		t.Fatalf("the other daemon's GetFlag = %+v %v %v", f, ok, err)
	}
}

// Redis down or hung: every call fails with state.ErrUnavailable within
// the timeout, nothing hangs; when Redis is back the same store works
// again without a restart. Counts survive a restart with the append-only
// file.
func TestDownHungAndBack(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	s := open(t, srv.Addr, 200*time.Millisecond)
	defer s.Close()
	ctx := context.Background()
	cs := []state.Counter{{Key: "rate/hourly/alice", Window: time.Hour, Limit: 10}}
	commit := func() error {
		out, err := s.Reserve(ctx, cs, t0)
		if err != nil {
			return err
		}
		return s.Commit(ctx, out.Reservation, t0)
	}
	for range 3 {
		if err := commit(); err != nil {
			t.Fatal(err)
		}
	}

	srv.Pause()
	if _, err := s.Reserve(ctx, cs, t0); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("Reserve with Redis hung: %v, want ErrUnavailable", err)
	}
	// Many at once: one sends, the others queue behind it and are timed
	// out by the batcher's watchdog, each answered.
	var wg sync.WaitGroup
	errs := make([]error, 32)
	waited := make([]time.Duration, 32)
	for i := range errs {
		wg.Go(func() {
			start := time.Now()
			if i%2 == 0 {
				_, errs[i] = s.Reserve(ctx, cs, t0)
			} else {
				_, _, _, errs[i] = s.Account(ctx, "acct"+strconv.Itoa(i), t0)
			}
			waited[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, state.ErrUnavailable) {
			t.Fatalf("call %d with Redis hung: %v, want ErrUnavailable", i, err)
		}
	}
	t.Logf("32 calls with Redis hung and a timeout of 200ms: the longest waited %v", slices.Max(waited))
	if _, _, err := s.GetFlag(ctx, "alice"); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("GetFlag with Redis hung: %v, want ErrUnavailable", err)
	}
	srv.Resume()

	srv.Stop()
	if _, err := s.Reserve(ctx, cs, t0); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("Reserve with Redis down: %v, want ErrUnavailable", err)
	}
	srv.Restart()
	var err error
	for i := 0; i < 50; i++ { // the pool reconnects on its own
		if err = commit(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after Redis came back: %v", err)
	}
	u, err := s.Usage(ctx, "rate/hourly/alice", time.Hour, t0)
	if err != nil || u.Committed != 4 {
		t.Fatalf("usage after the restart = %+v, %v; want the 3 units from before it and 1 after", u, err)
	}
}

// lapsingStore is a store on miniredis whose reservations lapse after a
// minute.
func lapsingStore(t *testing.T) (*redis.Store, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	s, err := redis.New(redis.Options{Client: goredis.NewClient(&goredis.Options{Addr: mr.Addr()}), ReservationTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, mr
}

// A reservation of a daemon that died lapses: its unit stops counting.
func TestReservationLapses(t *testing.T) {
	s, _ := lapsingStore(t)
	ctx := context.Background()
	cs := []state.Counter{{Key: "cap", Window: 24 * time.Hour, Limit: 1}}
	out, err := s.Reserve(ctx, cs, t0)
	if err != nil || !out.Admitted {
		t.Fatalf("Reserve = %+v, %v", out, err)
	}
	if out, _ := s.Reserve(ctx, cs, t0.Add(30*time.Second)); out.Admitted {
		t.Fatal("a second unit fit while the first was reserved")
	}
	// Its daemon never comes back: after the TTL another unit fits.
	if out, err := s.Reserve(ctx, cs, t0.Add(61*time.Second)); err != nil || !out.Admitted {
		t.Fatalf("after the reservation lapsed: %+v, %v", out, err)
	}
	if u, err := s.Usage(ctx, "cap", 24*time.Hour, t0.Add(62*time.Second)); err != nil || u != (state.Usage{Reserved: 1}) {
		t.Fatalf("usage = %+v, %v; want the lapsed unit given back and the new one reserved", u, err)
	}
}

// The held set names each reservation's counters, whatever their keys
// hold: a lapsed reservation gives back its unit on each of them, and
// Expire sweeps what no reservation came to sweep.
func TestLapsedReservationsAreSwept(t *testing.T) {
	s, mr := lapsingStore(t)
	ctx := context.Background()
	odd := []state.Counter{
		{Key: "rate/hourly/a|b:3:c d", Window: time.Hour, Limit: 5},
		{Key: "rate/daily/|1:", Window: 24 * time.Hour, Limit: 5},
		{Key: "cap", Window: 24 * time.Hour, Limit: 5},
	}
	for range 3 {
		if out, err := s.Reserve(ctx, odd, t0); err != nil || !out.Admitted {
			t.Fatalf("Reserve = %+v, %v", out, err)
		}
	}
	if err := s.Expire(ctx, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if mr.Exists("{msgate}:held") {
		m, _ := mr.ZMembers("{msgate}:held")
		t.Errorf("held set after Expire: %q, want it empty", m)
	}
	for _, c := range odd {
		if r := mr.HGet("{msgate}:c:"+c.Key, "t"); r != "0" {
			t.Errorf("%q after the sweep: %q units reserved, want 0", c.Key, r)
		}
		if u, err := s.Usage(ctx, c.Key, c.Window, t0.Add(2*time.Minute)); err != nil || u != (state.Usage{}) {
			t.Errorf("%q after the sweep: %+v, %v; want nothing held", c.Key, u, err)
		}
	}
}

// A commit or release that fails (Redis gone) forgets the reservation
// locally: an outage does not grow the daemon's memory by every message it
// deferred.
func TestFailedCallsForgetReservations(t *testing.T) {
	mr := miniredis.RunT(t)
	s := open(t, mr.Addr(), 200*time.Millisecond)
	defer s.Close()
	ctx := context.Background()
	cs := []state.Counter{{Key: "cap", Window: 24 * time.Hour, Limit: 10}}
	var rs []state.Reservation
	for range 2 {
		out, err := s.Reserve(ctx, cs, t0)
		if err != nil || !out.Admitted {
			t.Fatalf("Reserve = %+v, %v", out, err)
		}
		rs = append(rs, out.Reservation)
	}
	mr.Close()
	if err := s.Commit(ctx, rs[0], t0); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("Commit with Redis gone: %v", err)
	}
	if err := s.Release(ctx, rs[1]); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("Release with Redis gone: %v", err)
	}
	if n := s.Pending(); n != 0 {
		t.Fatalf("%d reservations still held locally after failed calls", n)
	}
}

// Standings are cached between messages, and a change made through one
// daemon reaches the other's cache within a second: at once through the
// subscription, and when the subscription is cut, by not trusting the
// cache until it is back.
func TestStandingsCache(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b := open(t, srv.Addr, 5*time.Second), open(t, srv.Addr, 5*time.Second)
	defer a.Close()
	defer b.Close()
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer admin.Close()
	ctx := context.Background()
	since := t0.Add(-24 * time.Hour)

	// seenWithin polls b until ok says its standing of alice changed.
	seenWithin := func(what string, ok func(state.Flag, bool, []state.Complaint) bool) {
		t.Helper()
		start := time.Now()
		for {
			f, flagged, cs, err := b.Account(ctx, "alice", since)
			if err != nil {
				t.Fatalf("%s: Account: %v", what, err)
			}
			if ok(f, flagged, cs) {
				t.Logf("%s: seen by the other daemon after %v", what, time.Since(start))
				return
			}
			if time.Since(start) > time.Second {
				t.Fatalf("%s: not seen by the other daemon within 1s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	scripts := func() int64 {
		t.Helper()
		info, err := admin.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
				n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
				return n
			}
		}
		return 0
	}

	// Once b's subscription is up and alice read, later reads are the
	// cache's: no script runs.
	waitTrusted(t, b, "alice", since)
	before := scripts()
	for range 10 {
		if _, flagged, _, err := b.Account(ctx, "alice", since); err != nil || flagged {
			t.Fatalf("Account = %v %v", flagged, err)
		}
	}
	if n := scripts() - before; n != 0 {
		t.Errorf("10 reads of a cached standing ran %d scripts, want 0", n)
	}

	if err := a.SetFlag(ctx, state.Flag{Account: "alice", Action: state.ActionDefer, Reason: "manual", Since: t0}); err != nil {
		t.Fatal(err)
	}
	seenWithin("flag", func(_ state.Flag, flagged bool, _ []state.Complaint) bool { return flagged })

	if _, err := a.AddComplaint(ctx, state.Complaint{Account: "alice", ReportID: "r1", At: t0}); err != nil {
		t.Fatal(err)
	}
	seenWithin("complaint", func(_ state.Flag, _ bool, cs []state.Complaint) bool { return len(cs) == 1 })

	// Forgetting nothing keeps every cache; forgetting the complaint drops
	// them all.
	waitTrusted(t, a, "alice", since)
	if err := a.ForgetComplaints(ctx, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !a.Cached("alice", since) {
		t.Error("forgetting no complaint dropped the cached standings")
	}
	if err := a.ForgetComplaints(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a.Cached("alice", since) {
		t.Error("forgetting a complaint left its account's standing cached")
	}
	seenWithin("forgotten complaint", func(_ state.Flag, _ bool, cs []state.Complaint) bool { return len(cs) == 0 })

	// The subscription is cut: the unflag is published while b listens
	// to nobody, and b must still see it within the second.
	waitTrusted(t, b, "alice", since)
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ClearFlag(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	seenWithin("unflag with the subscription cut", func(_ state.Flag, flagged bool, _ []state.Complaint) bool { return !flagged })
}

// waitTrusted reads account through s until s answers from its cache.
func waitTrusted(t *testing.T, s *redis.Store, account string, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Cached(account, since) {
		if time.Now().After(deadline) {
			t.Fatal("the standings cache never became trusted")
		}
		if _, _, _, err := s.Account(context.Background(), account, since); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The conformance suite through Sentinel: Dial with master_name= finds the
// master by asking a real Sentinel.
func TestConformanceSentinel(t *testing.T) {
	master := redistest.Start(t, redistest.Options{})
	sentinel := redistest.StartSentinel(t, master, 5*time.Second)
	statetest.Run(t, func(t *testing.T) state.Store {
		s := dialStore[*goredis.Client](t, "redis://"+sentinel.Addr+"?master_name=mymaster")
		flush(t, master.Addr)
		return s
	})
}

// When the master dies, Sentinel promotes its replica and the store goes
// on against it without a restart, with the units counted before.
func TestSentinelFailover(t *testing.T) {
	master := redistest.Start(t, redistest.Options{})
	replica := redistest.Start(t, redistest.Options{ReplicaOf: master})
	sentinel := redistest.StartSentinel(t, master, time.Second)
	s := dialStore[*goredis.Client](t, "redis://"+sentinel.Addr+"?master_name=mymaster")
	defer s.Close()
	ctx := context.Background()
	cs := []state.Counter{{Key: "cap", Window: 24 * time.Hour, Limit: 5}}
	commitUnits(t, s, cs, 3)
	// The replica has every write before the master goes.
	mc := goredis.NewClient(&goredis.Options{Addr: master.Addr})
	if n, err := mc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	mc.Close()
	master.Stop()
	start := time.Now()
	for {
		if addr, err := sentinel.Master(); err == nil && addr == replica.Addr {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("Sentinel never promoted the replica:\n%s", sentinel.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Sentinel promoted the replica %v after the master stopped", time.Since(start))
	// The store follows on its own: calls may fail until its client has
	// asked Sentinel again, then the counts from before are there.
	var u state.Usage
	var err error
	for {
		u, err = s.Usage(ctx, "cap", 24*time.Hour, t0)
		if err == nil {
			break
		}
		if !errors.Is(err, state.ErrUnavailable) || time.Since(start) > 90*time.Second {
			t.Fatalf("Usage after the failover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if u != (state.Usage{Committed: 3}) {
		t.Fatalf("usage after the failover = %+v, want the 3 units from before", u)
	}
	out, err := s.Reserve(ctx, cs, t0)
	if err != nil || !out.Admitted {
		t.Fatalf("Reserve on the new master = %+v, %v", out, err)
	}
}

// Remember does not wait for Redis: with Redis down the queue id is kept,
// found by Attribute at once, and written when Redis is back, where
// another daemon finds it.
func TestRememberWaitsForRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	a := open(t, srv.Addr, 200*time.Millisecond)
	defer a.Close()
	ctx := context.Background()
	srv.Stop()
	if err := a.Remember(ctx, "4DownQ1", "alice", t0); err != nil {
		t.Fatalf("Remember with Redis down: %v", err)
	}
	if acct, at, ok, err := a.Attribute(ctx, "4DownQ1"); err != nil || !ok || acct != "alice" || !at.Equal(t0) {
		t.Fatalf("Attribute of a waiting id = %q %v %v %v", acct, at, ok, err)
	}
	srv.Restart()
	b := open(t, srv.Addr, time.Second)
	defer b.Close()
	var acct string
	var ok bool
	var err error
	for range 100 { // the writer retries after a pause of up to a second
		if acct, _, ok, err = b.Attribute(ctx, "4DownQ1"); ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ok || acct != "alice" {
		t.Fatalf("the other store's Attribute after Redis came back = %q %v %v", acct, ok, err)
	}
	// Forgetting drops waiting ids too.
	srv.Stop()
	if err := a.Remember(ctx, "4DownQ2", "bob", t0); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	if err := a.ForgetAttributions(ctx, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := a.Attribute(ctx, "4DownQ2"); ok {
		t.Fatal("a waiting id remembered before the cutoff survived ForgetAttributions")
	}
}

// Spares: a transaction takes the spares it asks for where there is room;
// another transaction refused only because of those spares waits for them
// to be settled, and is refused after the timeout when they are not.
func TestSparesWait(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := open(t, srv.Addr, 300*time.Millisecond)
	defer s.Close()
	ctx := context.Background()
	cs := []state.Counter{{Key: "rate/hourly/alice", Window: time.Hour, Limit: 20}}
	a, err := s.ReserveSpare(ctx, cs, 8, 0, t0)
	if err != nil || !a.Admitted || a.Reservation.Spare != 8 {
		t.Fatalf("ReserveSpare(8) with room = %+v %v, want 8 spares", a, err)
	}
	commitUnits(t, s, cs, 11)
	// Full now (11 committed and a's 9), though a will spend 2 of its 8
	// spares only.
	done := make(chan state.Outcome)
	go func() {
		out, err := s.ReserveSpare(ctx, cs, 0, 0, t0)
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case out := <-done:
		t.Fatalf("the other transaction did not wait for the spares: %+v", out)
	default:
	}
	r := a.Reservation
	r.Spent = 2
	if err := s.CommitAll(ctx, []state.Reservation{r}, t0); err != nil {
		t.Fatal(err)
	}
	if out := <-done; !out.Admitted {
		t.Fatalf("after the spares were settled: %+v, want admitted", out)
	}
	u, err := s.Usage(ctx, "rate/hourly/alice", time.Hour, t0)
	if err != nil || u != (state.Usage{Committed: 14, Reserved: 1}) {
		t.Fatalf("usage = %+v %v, want 14 committed (11 and a's 3) and 1 reserved", u, err)
	}

	// Spares that are never settled: the refusal stands after the timeout.
	b, err := s.ReserveSpare(ctx, []state.Counter{{Key: "cap", Window: time.Hour, Limit: 10}}, 5, 0, t0)
	if err != nil || b.Reservation.Spare != 5 {
		t.Fatalf("ReserveSpare(5) = %+v %v", b, err)
	}
	for range 4 {
		if out, err := s.Reserve(ctx, []state.Counter{{Key: "cap", Window: time.Hour, Limit: 10}}, t0); err != nil || !out.Admitted {
			t.Fatalf("filling the cap: %+v %v", out, err)
		}
	}
	start := time.Now()
	out, err := s.ReserveSpare(ctx, []state.Counter{{Key: "cap", Window: time.Hour, Limit: 10}}, 0, 0, t0)
	if err != nil || out.Admitted || out.Blocked != 0 || out.Used != 10 {
		t.Fatalf("with spares never settled: %+v %v, want refused by the cap with 10 used", out, err)
	}
	t.Logf("refused after waiting %v (timeout 300ms)", time.Since(start))
	// The transaction's own spares are not waited for.
	start = time.Now()
	if out, err := s.ReserveSpare(ctx, []state.Counter{{Key: "cap", Window: time.Hour, Limit: 10}}, 0, 5, t0); err != nil || out.Admitted {
		t.Fatalf("asking past its own spares: %+v %v, want refused", out, err)
	}
	t.Logf("refused past its own spares after %v", time.Since(start))
}

// commitUnits reserves and commits n units against cs at t0, each admitted.
func commitUnits(t *testing.T, s *redis.Store, cs []state.Counter, n int) {
	t.Helper()
	for range n {
		out, err := s.Reserve(context.Background(), cs, t0)
		if err != nil || !out.Admitted {
			t.Fatalf("Reserve = %+v, %v", out, err)
		}
		if err := s.Commit(context.Background(), out.Reservation, t0); err != nil {
			t.Fatal(err)
		}
	}
}
