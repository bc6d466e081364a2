package state

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Rebucket puts an old bucket's last instant inside the new bucket, and
// keeps ascending indexes ascending.
func TestRebucket(t *testing.T) {
	windows := []time.Duration{time.Nanosecond, time.Minute, time.Hour, 90 * time.Minute, 24 * time.Hour, 7 * 24 * time.Hour}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		from, to := windows[r.IntN(len(windows))], windows[r.IntN(len(windows))]
		ow, nw := int64(BucketWidth(from)), int64(BucketWidth(to))
		idx := BucketOf(time.Unix(0, r.Int64N(4e18)), from) // up to 2096
		j := Rebucket(idx, from, to)
		last := (idx+1)*ow - 1
		if last < j*nw || last >= (j+1)*nw {
			t.Fatalf("Rebucket(%d, %v, %v) = %d: [%d, %d) does not hold the old bucket's last instant %d",
				idx, from, to, j, j*nw, (j+1)*nw, last)
		}
		if k := Rebucket(idx+1, from, to); k < j {
			t.Fatalf("Rebucket(%d, %v, %v) = %d, below %d for the bucket before", idx+1, from, to, k, j)
		}
	}
	if got := Rebucket(5, time.Hour, time.Hour); got != 5 {
		t.Errorf("same window moved bucket 5 to %d", got)
	}
}
