package embedded

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
)

// TestDiskFailure closes the file under the store, so that writes fail as
// they would on a dead disk: Commit must say the backend is unavailable and
// the unit must not be counted.
func TestDiskFailure(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var file *os.File
	s, err := Open(Options{
		Path: filepath.Join(t.TempDir(), "state.db"),
		Now:  func() time.Time { return now },
		openFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close() // fails too: the file is gone
	cs := []state.Counter{{Key: "k", Window: time.Hour, Limit: 2}}
	reserve := func() state.Outcome {
		t.Helper()
		out, err := s.Reserve(ctx, cs, now)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := s.Commit(ctx, reserve().Reservation, now); err != nil {
		t.Fatal(err)
	}

	file.Close()
	out := reserve()
	err = s.Commit(ctx, out.Reservation, now)
	if !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("Commit with the file closed: %v, want ErrUnavailable", err)
	}
	t.Logf("Commit: %v", err)
	// The failed commit released its reservation.
	if err := s.Release(ctx, out.Reservation); !errors.Is(err, state.ErrUnknownReservation) {
		t.Errorf("Release after a failed Commit: %v, want ErrUnknownReservation", err)
	}
	if u, err := s.Usage(ctx, "k", time.Hour, now); err != nil || u != (state.Usage{Committed: 1}) {
		t.Errorf("Usage = %+v, %v; want only the unit committed before the failure", u, err)
	}
	if out := reserve(); !out.Admitted {
		t.Errorf("the failed unit still takes room under the limit: %+v", out)
	}
}
