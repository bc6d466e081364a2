package policy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/detect"
	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/embedded"
	"github.com/msgate/msgate/policy/state/memory"
)

// BenchmarkDecisionScale measures one RCPT decision (detection, flag and
// complaint standing, reserve against two rules and the cap, then release)
// with 10k, 100k and 1M distinct accounts already counted, on each
// backend, and reports the heap each tracked account costs.
func BenchmarkDecisionScale(b *testing.B) {
	sizes := []int{10_000, 100_000, 1_000_000}
	if testing.Short() {
		sizes = sizes[:1]
	}
	for _, backend := range []string{"memory", "embedded"} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/accounts=%d", backend, n), func(b *testing.B) {
				benchScale(b, backend, n)
			})
		}
	}
}

func benchScale(b *testing.B, backend string, n int) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	det, err := detect.New(detect.Config{Resolver: "127.0.0.1:9"})
	if err != nil {
		b.Fatal(err)
	}
	accounts := make([]string, n)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("user%07d@example.org", i)
	}
	var store state.Store
	switch backend {
	case "memory":
		store = memory.New()
	default:
		// Populating a million accounts with an fsync each would take
		// hours; the decision path never touches the disk anyway.
		s, err := embedded.Open(embedded.Options{Path: filepath.Join(b.TempDir(), "state.db"), NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		store = s
	}
	defer store.Close()
	cfg := policy.Config{
		Rules: []policy.Rule{
			{Name: "hourly", Window: time.Hour, Limit: 1 << 40},
			{Name: "daily", Window: 24 * time.Hour, Limit: 1 << 40},
		},
		Cap:        policy.Cap{Enabled: true, Daily: 1 << 40, Window: 24 * time.Hour},
		Thresholds: []policy.Threshold{{Complaints: 1, Within: 72 * time.Hour, Action: policy.RuleDefer}},
	}
	e := policy.NewEngine(cfg, det, store)
	// One committed message per account, in batches so that the embedded
	// writer coalesces them.
	populate := func(from, to int) {
		const batch = 256
		for i := from; i < to; i += batch {
			done := make(chan struct{}, batch)
			for j := i; j < min(i+batch, to); j++ {
				go func() {
					tx := e.Begin(policy.Envelope{Sender: accounts[j]})
					e.Recipient(ctx, tx, "x@outlook.com", now)
					e.EndOfMessage(ctx, tx, now)
					done <- struct{}{}
				}()
			}
			for j := i; j < min(i+batch, to); j++ {
				<-done
			}
		}
	}
	// The heap per account is the slope between a tenth of the accounts
	// and all of them: what the store holds whatever its size (buffers,
	// the cap's counter, the detection cache) cancels out.
	heap := func() uint64 {
		if s, ok := store.(*embedded.Store); ok {
			// Measured at rest: no checkpoint holding its epoch meanwhile.
			if err := s.Checkpoint(ctx); err != nil {
				b.Fatal(err)
			}
		}
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	populate(0, n/10)
	mid := heap()
	populate(n/10, n)
	perAccount := float64(heap()-mid) / float64(n-n/10)
	runtime.KeepAlive(accounts)

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx := e.Begin(policy.Envelope{Sender: accounts[(i*7919)%n]})
		if d := e.Recipient(ctx, tx, "y@outlook.com", now); d.Verdict != policy.Accept {
			b.Fatalf("%+v", d)
		}
		e.Abort(ctx, tx)
	}
	b.StopTimer()
	b.ReportMetric(perAccount, "heap-B/account")
}
