package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, s := range []series{
		{window: time.Hour},
		{window: time.Minute, buckets: []bucket{{idx: -5, count: 1}}},
		{window: 24 * time.Hour, buckets: []bucket{{idx: 29_500_000, count: 3}, {idx: 29_500_001, count: 1 << 40}, {idx: 29_500_060, count: 7}}},
	} {
		got, err := decode(s.encode())
		if err != nil || got.window != s.window || !slices.Equal(got.buckets, s.buckets) {
			t.Errorf("decode(encode(%+v)) = %+v, %v", s, got, err)
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	good := series{window: time.Hour, buckets: []bucket{{idx: 10, count: 1}, {idx: 12, count: 2}}}.encode()
	for name, v := range map[string][]byte{
		"empty":           {},
		"truncated":       good[:len(good)-1],
		"trailing":        append(slices.Clone(good), 0),
		"too many":        {0x01, 0x7f},
		"zero count":      {0x01, 0x01, 0x02, 0x00},
		"not ascending":   {0x01, 0x02, 0x02, 0x01, 0x00, 0x01},
		"unterminated":    {0xff},
		"negative window": {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00},
	} {
		if s, err := decode(v); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decode(%x) = %+v, %v; want errCorrupt", name, v, s, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(series{window: time.Hour, buckets: []bucket{{idx: 10, count: 1}, {idx: 12, count: 2}}}.encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		s, err := decode(v)
		if err != nil {
			return
		}
		for i, b := range s.buckets {
			if b.count <= 0 || i > 0 && b.idx <= s.buckets[i-1].idx {
				t.Fatalf("decode(%x) accepted %+v", v, s)
			}
		}
		if again, err := decode(s.encode()); err != nil || !slices.Equal(again.buckets, s.buckets) {
			t.Fatalf("re-encoding %+v: %+v, %v", s, again, err)
		}
	})
}

func TestRewindow(t *testing.T) {
	hour := state.BucketWidth(time.Hour) // 1 minute
	at := func(minute int) time.Time { return time.Unix(0, 0).Add(time.Duration(minute) * hour) }
	s := series{window: time.Hour}
	for _, m := range []int{0, 1, 2, 3, 59} {
		s.add(at(m))
	}
	s.rewindow(2 * time.Hour) // 2-minute buckets: minutes 0-1, 2-3, ..., 58-59
	want := []bucket{{0, 2}, {1, 2}, {29, 1}}
	if !slices.Equal(s.buckets, want) {
		t.Fatalf("to 2h: %v, want %v", s.buckets, want)
	}
	// Back to 1h: each 2-minute bucket goes to its last minute, so no unit
	// is forgotten earlier than its own minute would be.
	s.rewindow(time.Hour)
	want = []bucket{{1, 2}, {3, 2}, {59, 1}}
	if !slices.Equal(s.buckets, want) {
		t.Fatalf("back to 1h: %v, want %v", s.buckets, want)
	}
	if s.sum() != 5 {
		t.Fatalf("units lost: %d", s.sum())
	}
}

func TestAddAt(t *testing.T) {
	var s series
	for _, idx := range []int64{5, 2, 9, 5, 1} {
		s.addAt(idx, 1)
	}
	want := []bucket{{1, 1}, {2, 1}, {5, 2}, {9, 1}}
	if !slices.Equal(s.buckets, want) {
		t.Fatalf("%v, want %v", s.buckets, want)
	}
}

// A record that a commit refilled after Expire found its key idle stays on
// disk.
func TestDeleteExpiredKeepsLiveRecords(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s, err := Open(Options{Path: filepath.Join(t.TempDir(), "state.db"), Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Reserve(ctx, []state.Counter{{Key: "k", Window: time.Hour, Limit: 5}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, out.Reservation, t0); err != nil {
		t.Fatal(err)
	}
	// The unit is in the log; the file holds it once a checkpoint applied it.
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	cands := []candidate{{key: "k", window: time.Hour}, {key: "absent", window: time.Hour}}
	deleted, err := s.deleteExpired(cands, t0.Add(30*time.Minute))
	if err != nil || !slices.Equal(deleted, []bool{false, true}) {
		t.Fatalf("inside the window: deleted %v, %v; want [false true]", deleted, err)
	}
	deleted, err = s.deleteExpired(cands, t0.Add(2*time.Hour))
	if err != nil || !slices.Equal(deleted, []bool{true, true}) {
		t.Fatalf("after the window: deleted %v, %v; want [true true]", deleted, err)
	}
	if n, _ := s.DiskKeys(); n != 0 {
		t.Fatalf("%d records left", n)
	}
}
