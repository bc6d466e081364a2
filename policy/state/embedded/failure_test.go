package embedded

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
)

// TestDiskFailure closes the files under the store, so that writes fail as
// they would on a dead disk: Commit must say the backend is unavailable and
// the unit must not be counted. The log fails commits; the file fails the
// writes that go to it directly (complaints).
func TestDiskFailure(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	files := map[string]*os.File{} // by base name
	s, err := Open(Options{
		Path: filepath.Join(t.TempDir(), "state.db"),
		Now:  func() time.Time { return now },
		openFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			mu.Lock()
			files[filepath.Base(name)] = f
			mu.Unlock()
			return f, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close() // fails too: the files are gone
	closeFile := func(name string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if f := files[name]; f == nil {
			t.Fatalf("%s was not opened through openFile", name)
		} else {
			f.Close()
		}
	}
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

	closeFile("state.db-wal.0")
	closeFile("state.db-wal.1")
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

	// A complaint that could not be written is not recorded, not even as
	// a known report.
	closeFile("state.db")
	c := state.Complaint{Account: "alice", ReportID: "r1", At: now}
	for range 2 {
		if added, err := s.AddComplaint(ctx, c); added || !errors.Is(err, state.ErrUnavailable) {
			t.Errorf("AddComplaint with the file closed: %v, %v; want ErrUnavailable", added, err)
		}
	}
	if got, err := s.ComplaintsSince(ctx, "alice", time.Time{}); got != nil || err != nil {
		t.Errorf("ComplaintsSince = %+v, %v; want nothing", got, err)
	}
	// An attribution is remembered in memory and stays queued for the
	// log while writes fail.
	if err := s.Remember(ctx, "4Q1", "alice", now); err != nil {
		t.Errorf("Remember with the file closed: %v", err)
	}
	out, err = s.Reserve(ctx, []state.Counter{{Key: "other", Window: time.Hour, Limit: 2}}, now)
	if err != nil || !out.Admitted {
		t.Fatalf("Reserve = %+v, %v", out, err)
	}
	if err := s.Commit(ctx, out.Reservation, now); !errors.Is(err, state.ErrUnavailable) {
		t.Errorf("Commit with the file closed: %v, want ErrUnavailable", err)
	}
	if acct, _, ok, err := s.Attribute(ctx, "4Q1"); acct != "alice" || !ok || err != nil {
		t.Errorf("Attribute = %q %v %v", acct, ok, err)
	}
	s.qmu.Lock()
	queued := len(s.attrQueue)
	s.qmu.Unlock()
	if queued != 1 {
		t.Errorf("%d attributions queued after a failed write, want 1", queued)
	}
}
