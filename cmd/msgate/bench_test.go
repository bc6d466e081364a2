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
)

// benchDaemon runs the daemon on loopback with limits and cap far above
// what the benchmark sends, so every decision does the full work and none
// triggers.
func benchDaemon(b *testing.B, backend string) string {
	b.Helper()
	cfg := config.Default()
	cfg.Microsoft.Resolver = "127.0.0.1:9" // never asked: only consumer domains
	cfg.State.Backend = backend
	cfg.State.Path = filepath.Join(b.TempDir(), "state.db")
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
// sessions, each reusing its connection, one Microsoft recipient per
// message, on each state backend. It reports messages/s and per-message
// latency percentiles; compare backends by their ratio in one run.
func BenchmarkServe(b *testing.B) {
	for _, backend := range []string{"memory", "embedded"} {
		b.Run(backend, func(b *testing.B) {
			addr := benchDaemon(b, backend)
			const sessions = 32
			per := (b.N + sessions - 1) / sessions
			lat := make([][]time.Duration, sessions)
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
						rs, err := c.Send(milter.Message{From: fmt.Sprintf("user%d@example.org", (s*per+i)%1000),
							Rcpts: []string{"x@outlook.com"}})
						if err != nil || len(rs) != 3 || rs[1].Refused() || rs[2].Refused() {
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
		})
	}
}
