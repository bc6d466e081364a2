package embedded_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/embedded"
	"github.com/msgate/msgate/policy/state/memory"
)

// BenchmarkCommit runs the same body against each backend: each goroutine is
// a session committing units for its own account and the server-wide cap,
// one Reserve then one Commit per op. It reports commits per second and the
// p50/p99 latency of Commit alone (what the MTA waits for at end of
// message).
func BenchmarkCommit(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) state.Store
	}{
		{"memory", func(*testing.B) state.Store { return memory.New() }},
		{"embedded", func(b *testing.B) state.Store {
			return open(b, embedded.Options{Path: filepath.Join(b.TempDir(), "state.db")})
		}},
		{"embedded-nosync", func(b *testing.B) state.Store {
			return open(b, embedded.Options{Path: filepath.Join(b.TempDir(), "state.db"), NoSync: true})
		}},
	}
	for _, be := range backends {
		for _, g := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", be.name, g), func(b *testing.B) {
				s := be.open(b)
				defer s.Close()
				benchCommit(b, s, g)
			})
		}
	}
}

func benchCommit(b *testing.B, s state.Store, goroutines int) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((goroutines + procs - 1) / procs)
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		cs := []state.Counter{
			{Key: account(int(next.Add(1))), Window: time.Hour, Limit: 1 << 62},
			{Key: "cap", Window: 24 * time.Hour, Limit: 1 << 62},
		}
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			now := time.Now()
			out, err := s.Reserve(ctx, cs, now)
			if err != nil || !out.Admitted {
				b.Errorf("Reserve: %+v %v", out, err)
				return
			}
			t := time.Now()
			if err := s.Commit(ctx, out.Reservation, now); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkFsync is the floor under a durable commit on this machine: one
// small write and one fdatasync (bbolt does two per transaction: data
// pages, then the meta page).
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for b.Loop() {
		if _, err := f.WriteAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
	}
}
