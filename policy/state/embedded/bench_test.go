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
// message). The +remember backends also remember a queue id after each
// commit, as the engine does for mail to Microsoft: the attributions ride
// in the commits' transactions, and Commit's figures show what that costs
// the commits.
func BenchmarkCommit(b *testing.B) {
	backends := []struct {
		name     string
		open     func(b *testing.B) state.Store
		remember bool
	}{
		{"memory", func(*testing.B) state.Store { return memory.New() }, false},
		{"embedded", func(b *testing.B) state.Store {
			return open(b, embedded.Options{Path: filepath.Join(b.TempDir(), "state.db")})
		}, false},
		{"embedded-nosync", func(b *testing.B) state.Store {
			return open(b, embedded.Options{Path: filepath.Join(b.TempDir(), "state.db"), NoSync: true})
		}, false},
		{"embedded+remember", func(b *testing.B) state.Store {
			return open(b, embedded.Options{Path: filepath.Join(b.TempDir(), "state.db")})
		}, true},
	}
	for _, be := range backends {
		for _, g := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", be.name, g), func(b *testing.B) {
				s := be.open(b)
				defer s.Close()
				benchCommit(b, s, g, be.remember)
			})
		}
	}
}

// benchIDs are queue ids for the benchmarks, benchIDs[session][i]: made
// before the timer starts, as the engine has its queue id already.
func benchIDs(sessions int) [][]string {
	ids := make([][]string, sessions)
	for g := range ids {
		ids[g] = make([]string, 1<<13)
		for i := range ids[g] {
			ids[g][i] = fmt.Sprintf("%02d%s", g, postfixID(i))
		}
	}
	return ids
}

func benchCommit(b *testing.B, s state.Store, goroutines int, remember bool) {
	procs := runtime.GOMAXPROCS(0)
	par := (goroutines + procs - 1) / procs
	b.SetParallelism(par)
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
		ids  [][]string
	)
	if remember {
		ids = benchIDs(procs * par)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		g := int(next.Add(1))
		cs := []state.Counter{
			{Key: account(g), Window: time.Hour, Limit: 1 << 62},
			{Key: "cap", Window: 24 * time.Hour, Limit: 1 << 62},
		}
		local := make([]time.Duration, 0, 1024)
		for i := 0; pb.Next(); i++ {
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
			if remember {
				mine := ids[g-1]
				if err := s.(state.Attributions).Remember(ctx, mine[i%len(mine)], cs[0].Key, now); err != nil {
					b.Error(err)
					return
				}
			}
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
// small write and one fdatasync, from one goroutine, as the log's writer
// does them. p50-ns and p99-ns are of the pair; msgate cannot answer a
// message that waits for a commit faster than that, and at one session
// its p99 follows the disk's.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.WriteAt(buf, 0); err != nil { // allocated: overwrites from here on
		b.Fatal(err)
	}
	if err := fdatasync(f); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for b.Loop() {
		t := time.Now()
		if _, err := f.WriteAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkRemember measures Remember alone, from 1 and 32 sessions. For
// the embedded store ns/op is the rate the writer sustains (sessions pause
// when 64k attributions wait, which real mail never comes near: each
// follows a commit), and p50/p99 are the latency of the call, which never
// waits for the disk.
func BenchmarkRemember(b *testing.B) {
	for _, be := range []struct {
		name string
		open func(b *testing.B) state.Store
	}{
		{"memory", func(*testing.B) state.Store { return memory.New() }},
		{"embedded", func(b *testing.B) state.Store {
			return open(b, embedded.Options{Path: filepath.Join(b.TempDir(), "state.db")})
		}},
	} {
		for _, goroutines := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", be.name, goroutines), func(b *testing.B) {
				s := be.open(b)
				defer s.Close()
				as := s.(state.Attributions)
				es, _ := s.(*embedded.Store)
				procs := runtime.GOMAXPROCS(0)
				par := (goroutines + procs - 1) / procs
				b.SetParallelism(par)
				ids := benchIDs(procs * par)
				var (
					next atomic.Int64
					mu   sync.Mutex
					lat  []time.Duration
				)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					g := int(next.Add(1))
					mine, acct := ids[g-1], account(g)
					local := make([]time.Duration, 0, 1024)
					for i := 0; pb.Next(); i++ {
						if es != nil && i%1024 == 0 {
							for es.PendingAttributions() > 1<<16 {
								time.Sleep(100 * time.Microsecond)
							}
						}
						t := time.Now()
						if err := as.Remember(ctx, mine[i%len(mine)], acct, t); err != nil {
							b.Error(err)
							return
						}
						local = append(local, time.Since(t))
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				})
				b.StopTimer()
				if len(lat) > 0 {
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
					b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
				}
			})
		}
	}
}
