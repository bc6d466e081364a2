package memory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/memory"
	"github.com/msgate/msgate/policy/state/statetest"
)

func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store { return memory.New() })
}

func TestExpireDropsIdleKeys(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		cs := []state.Counter{{Key: fmt.Sprint("acct", i), Window: time.Hour, Limit: 10}}
		out, err := s.Reserve(ctx, cs, t0)
		if err != nil || !out.Admitted {
			t.Fatalf("Reserve: %+v %v", out, err)
		}
		if err := s.Commit(ctx, out.Reservation, t0); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got != 1000 {
		t.Fatalf("Len = %d, want 1000", got)
	}
	if err := s.Expire(ctx, t0.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != 1000 {
		t.Fatalf("Len inside the window = %d, want 1000", got)
	}
	if err := s.Expire(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != 0 {
		t.Fatalf("Len after the window = %d, want 0", got)
	}
}

func TestReleaseDropsUnusedKey(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	out, err := s.Reserve(ctx, []state.Counter{{Key: "k", Window: time.Hour, Limit: 1}}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, out.Reservation); err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != 0 {
		t.Fatalf("Len = %d after releasing the only unit, want 0", got)
	}
}
