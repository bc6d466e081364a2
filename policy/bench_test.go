package policy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/detect"
	"github.com/msgate/msgate/policy/state/memory"
)

// BenchmarkDecision is one message with one Microsoft recipient: MAIL
// (Begin), RCPT (detection, reserve against two rules and the cap) and end
// of message (commit), on the in-memory store, across 1000 accounts.
func BenchmarkDecision(b *testing.B) {
	det, err := detect.New(detect.Config{Resolver: "127.0.0.1:9"})
	if err != nil {
		b.Fatal(err)
	}
	cfg := policy.Config{
		Rules: []policy.Rule{
			{Name: "hourly", Window: time.Hour, Limit: 1 << 40},
			{Name: "daily", Window: 24 * time.Hour, Limit: 1 << 40},
		},
		Cap: policy.Cap{Enabled: true, Daily: 1 << 40, Window: 24 * time.Hour},
	}
	e := policy.NewEngine(cfg, det, memory.New())
	accounts := make([]string, 1000)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("user%d@example.org", i)
	}
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx := e.Begin(policy.Envelope{Sender: accounts[i%len(accounts)], ClientIP: "192.0.2.1"})
		if d := e.Recipient(ctx, tx, "someone@outlook.com", now); d.Verdict != policy.Accept || !d.Microsoft {
			b.Fatalf("%+v", d)
		}
		if d := e.EndOfMessage(ctx, tx, now); d.Verdict != policy.Accept {
			b.Fatalf("%+v", d)
		}
	}
}
