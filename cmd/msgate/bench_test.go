package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/state/redis/redistest"
)

// benchDaemon runs the daemon on loopback with limits and cap far above
// what the benchmark sends, so every decision does the full work and none
// triggers.
func benchDaemon(b *testing.B, backend, redisURL string) string {
	b.Helper()
	cfg := config.Default()
	cfg.Microsoft.Resolver = "127.0.0.1:9" // never asked: only consumer domains
	cfg.State.Backend = backend
	cfg.State.Path = filepath.Join(b.TempDir(), "state.db")
	cfg.State.RedisURL = redisURL
	cfg.Mitigation.Enabled, cfg.Mitigation.DailyCap = true, 1<<40
	for i := range cfg.Rate {
		cfg.Rate[i].Limit = 1 << 40
	}
	d, err := newDaemon(cfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx, ln, nil) }()
	b.Cleanup(func() {
		cancel()
		<-done
		d.close()
	})
	return ln.Addr().String()
}

// BenchmarkServe drives msgate serve's daemon with 32 concurrent milter
// sessions, each reusing its connection, on each state backend (redis on a
// redis-server of its own for each run), with
// one and three Microsoft recipients per message, each message with its
// queue id. It reports messages/s and per-message latency percentiles;
// compare backends by their ratio in one run.
func BenchmarkServe(b *testing.B) {
	for _, backend := range []string{"memory", "embedded", "redis"} {
		for _, rcpts := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/rcpts=%d", backend, rcpts), func(b *testing.B) {
				url := ""
				if backend == "redis" {
					url = "redis://" + redistest.Start(b, redistest.Options{}).Addr + "/0"
				}
				benchServe(b, benchDaemon(b, backend, url), rcpts)
			})
		}
	}
}

func benchServe(b *testing.B, addr string, rcpts int) {
	const sessions = 32
	per := (b.N + sessions - 1) / sessions
	lat := make([][]time.Duration, sessions)
	to := []string{"x@outlook.com", "y@hotmail.com", "z@live.com"}[:rcpts]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for s := range sessions {
		wg.Go(func() {
			c, err := milter.Dial("tcp", addr, 30*time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			c.Connect("client.test", "192.0.2.1", 40000)
			for i := range per {
				t0 := time.Now()
				n := s*per + i
				rs, err := c.Send(milter.Message{From: fmt.Sprintf("user%d@example.org", n%1000),
					Rcpts: to, QueueID: fmt.Sprintf("B%X", n)})
				if err != nil || len(rs) != 2+rcpts || slices.ContainsFunc(rs[1:], milter.Reply.Refused) {
					b.Errorf("send: %v %v", rs, err)
					return
				}
				lat[s] = append(lat[s], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
