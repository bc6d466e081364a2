package redis_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/redis"
	"github.com/msgate/msgate/policy/state/redis/redistest"
)

// BenchmarkMessage runs what one message with three Microsoft recipients
// asks of the store (one reservation with two spares against an account's
// two rules and the cap, one commit, the queue id), from 32 goroutines at
// once, on a real
// redis-server. Besides time per message it reports, from Redis's own
// INFO commandstats, the microseconds Redis spent in scripts per message
// (redis-µs/msg), the part of them inside the commands the scripts call
// (cmd-µs/msg), and the commands and scripts per message: what Redis
// spends, which the Go profile does not see.
//
// With MSGATE_BENCH_REDIS=HOST:PORT it runs against that Redis instead of
// one of its own, with timeouts for a slow one: callgrind.sh runs it so
// against a redis-server under valgrind, which counts the instructions
// Redis spends per message (repeatable, unlike time on a shared machine).
func BenchmarkMessage(b *testing.B) {
	addr, timeout := os.Getenv("MSGATE_BENCH_REDIS"), time.Second
	if addr == "" {
		addr = redistest.Start(b, redistest.Options{}).Addr
	} else {
		timeout = time.Minute
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: timeout})
	s, err := redis.New(redis.Options{Client: c, Timeout: timeout})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	admin := goredis.NewClient(&goredis.Options{Addr: addr})
	b.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	now := time.Now()
	counters := func(account int) []state.Counter {
		a := strconv.Itoa(account)
		return []state.Counter{
			{Key: "rate/hourly/" + a, Window: time.Hour, Limit: 1 << 40},
			{Key: "rate/daily/" + a, Window: 24 * time.Hour, Limit: 1 << 40},
			{Key: "cap/microsoft", Window: 24 * time.Hour, Limit: 1 << 40},
		}
	}
	const workers = 32
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for w := range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= b.N {
					return
				}
				cs := counters((w*7919 + i) % 1000)
				// As the engine does: the first recipient's reservation
				// takes 2 spares, the other two spend them.
				out, err := s.ReserveSpare(ctx, cs, 2, 0, now)
				if err != nil || !out.Admitted || out.Reservation.Spare != 2 {
					b.Errorf("reserve: %+v %v", out, err)
					return
				}
				r := out.Reservation
				r.Spent = 2
				if err := s.CommitAll(ctx, []state.Reservation{r}, now); err != nil {
					b.Error(err)
					return
				}
				if err := s.Remember(ctx, fmt.Sprintf("Q%dX%d", w, i), "account", now); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	info, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var scripts, scriptUsec, calls, callUsec float64
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		var n, usec float64
		for f := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "calls":
				n, _ = strconv.ParseFloat(v, 64)
			case "usec":
				usec, _ = strconv.ParseFloat(v, 64)
			}
		}
		switch {
		case name == "evalsha" || name == "eval":
			scripts, scriptUsec = scripts+n, scriptUsec+usec
		case strings.HasPrefix(name, "config") || name == "info" || name == "ping" || name == "subscribe" || name == "script|load":
		default:
			calls, callUsec = calls+n, callUsec+usec
		}
	}
	n := float64(b.N)
	b.ReportMetric(scriptUsec/n, "redis-µs/msg")
	b.ReportMetric(callUsec/n, "cmd-µs/msg")
	b.ReportMetric(calls/n, "cmds/msg")
	b.ReportMetric(scripts/n, "scripts/msg")
}
