package embedded

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

type modelAttr struct {
	account string
	at      int64
}

// checkIndex compares the index with a plain map and checks its
// invariants.
func checkIndex(t *testing.T, x *attribIndex, want map[string]modelAttr) {
	t.Helper()
	if x.live != len(want) {
		t.Fatalf("live = %d, want %d", x.live, len(want))
	}
	if n := len(x.byHash) + len(x.extra); n != len(want) {
		t.Fatalf("byHash+extra hold %d entries, want %d", n, len(want))
	}
	for id, w := range want {
		acct, at, ok := x.attribute(id)
		if !ok || acct != w.account || at.UnixNano() != w.at {
			t.Fatalf("attribute(%s) = %q %v %v, want %q %v", id, acct, at.UnixNano(), ok, w.account, w.at)
		}
	}
	live, refs := 0, map[uint32]int{}
	for si, g := range x.segs {
		if si < len(x.segs)-1 && g.ents != nil && len(g.ents) != attrSegSize {
			t.Fatalf("segment %d of %d holds %d entries", si, len(x.segs), len(g.ents))
		}
		n := 0
		for _, e := range g.ents {
			if e.acct != deadAcct {
				n++
				refs[e.acct]++
				if e.at < g.minAt || e.at > g.maxAt {
					t.Fatalf("segment %d: entry at %d outside [%d, %d]", si, e.at, g.minAt, g.maxAt)
				}
			}
		}
		if n != g.live {
			t.Fatalf("segment %d: %d live entries, counted %d", si, n, g.live)
		}
		live += n
	}
	if live != x.live {
		t.Fatalf("segments hold %d live entries, index says %d", live, x.live)
	}
	for i, a := range x.accts {
		if int(a.refs) != refs[uint32(i)] {
			t.Fatalf("account %d (%q): %d refs, %d entries", i, a.name, a.refs, refs[uint32(i)])
		}
		if a.refs > 0 && x.acctIdx[a.name] != uint32(i) {
			t.Fatalf("account %q not interned at %d", a.name, i)
		}
	}
	if len(x.acctIdx)+len(x.freeAccts) != len(x.accts) {
		t.Fatalf("%d accounts interned, %d free, %d slots", len(x.acctIdx), len(x.freeAccts), len(x.accts))
	}
}

// TestAttribIndexModel runs random remembers (new ids, ids again, times
// out of order) and forgets against a map, with a real hash and with one
// that collides all the time.
func TestAttribIndexModel(t *testing.T) {
	for name, hashFn := range map[string]func(string) uint64{
		"maphash":  nil,
		"collides": func(id string) uint64 { return uint64(len(id) % 3) },
	} {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			x := newAttribIndex()
			x.hashFn = hashFn
			want := map[string]modelAttr{}
			var clock, cut int64
			for round := range 40 {
				for range 1 + rng.IntN(3*attrSegSize) {
					clock += rng.Int64N(int64(time.Second))
					at := clock
					if rng.IntN(50) == 0 {
						at -= rng.Int64N(int64(time.Hour)) // a clock stepped back
					}
					var id string
					if len(want) > 0 && rng.IntN(20) == 0 {
						for id = range want { // remembered again
							break
						}
					} else {
						id = fmt.Sprintf("4Q%dz%d", round, rng.Uint64()%1e9)
					}
					acct := fmt.Sprint("user", rng.IntN(50), "@example.com")
					x.remember(id, acct, at)
					want[id] = modelAttr{acct, at}
				}
				checkIndex(t, &x, want)
				if rng.IntN(3) > 0 {
					cut += rng.Int64N(clock-cut+1) + 1
					for x.forgetSome(cut, attrSegSize) {
					}
					for id, w := range want {
						if w.at < cut {
							delete(want, id)
						}
					}
					checkIndex(t, &x, want)
				}
			}
			cut = clock + 1
			for x.forgetSome(cut, attrSegSize) {
			}
			checkIndex(t, &x, map[string]modelAttr{})
			if len(x.segs) != 1 || len(x.acctIdx) != 0 {
				t.Errorf("after forgetting all: %d segments, %d accounts", len(x.segs), len(x.acctIdx))
			}
		})
	}
}

// forgetSome works through at most about one budget of entries per call.
func TestForgetSomeBounded(t *testing.T) {
	x := newAttribIndex()
	for i := range 10 * attrSegSize {
		x.remember(fmt.Sprint("id", i), "alice", int64(i))
	}
	calls := 0
	for x.forgetSome(int64(10*attrSegSize), attrSegSize) {
		calls++
	}
	if calls != 9 || x.live != 0 {
		t.Errorf("forgot 10 segments in %d calls with more (want 9), %d left", calls, x.live)
	}
}
