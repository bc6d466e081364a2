package stamp

import (
	"testing"
	"time"
)

var (
	secretA = []byte("0123456789abcdef0123456789abcdef")
	secretB = []byte("fedcba9876543210fedcba9876543210")
	t0      = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
)

func newTestSealer(tb testing.TB, current Key, retired []Key, maxAge time.Duration) *Sealer {
	tb.Helper()
	s, err := New(current, retired, maxAge)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return s
}
