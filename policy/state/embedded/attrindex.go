package embedded

import (
	"hash/maphash"
	"math"
	"strings"
	"time"
)

// attrSegSize is how many attributions one segment holds. ForgetAttributions
// works on at most one segment per hold of the attributions' lock, so this
// bounds how long a Remember can wait behind it (about 0.1 ms).
const attrSegSize = 1024

// deadAcct marks an entry forgotten or replaced.
const deadAcct = math.MaxUint32

// attrEntry is one remembered id. It holds no pointer, so the garbage
// collector never scans the millions of them.
type attrEntry struct {
	at   int64  // Unix nanoseconds
	acct uint32 // index in attribIndex.accts, or deadAcct
	off  uint32 // where the id starts in its segment's ids
}

// attrSeg is attrSegSize entries in the order they were remembered, and
// their ids back to back.
type attrSeg struct {
	ents         []attrEntry
	ids          []byte
	live         int
	minAt, maxAt int64 // over the live entries; meaningless when live is 0
}

func (g *attrSeg) id(i int) []byte {
	end := len(g.ids)
	if i+1 < len(g.ents) {
		end = int(g.ents[i+1].off)
	}
	return g.ids[g.ents[i].off:end]
}

// span recomputes minAt and maxAt after entries died.
func (g *attrSeg) span() {
	g.minAt, g.maxAt = math.MaxInt64, math.MinInt64
	for _, e := range g.ents {
		if e.acct != deadAcct {
			g.minAt, g.maxAt = min(g.minAt, e.at), max(g.maxAt, e.at)
		}
	}
}

type acctRef struct {
	name string
	refs uint32
}

// attribIndex is the attributions kept in memory, compact because it may
// hold a month of messages: about 50 bytes per entry (TestMemoryPerAttribution)
// against some 150 for a map from id string to a struct.
//
//   - Entries live in segments in the order they were remembered; entry
//     number seq is in segs[(seq-base)/attrSegSize]. Every segment but the
//     last is full (a segment whose entries all died may have given its
//     arrays back, but still counts as full).
//   - byHash maps the 64-bit hash of an id to its entry's seq. A lookup
//     compares the id itself, so a hash collision can never attribute a
//     report to the wrong account; the rare id whose hash is taken by
//     another live id goes to extra instead.
//   - Accounts are interned, with a reference count, in accts: an entry
//     holds 4 bytes instead of a copy of its account.
//
// Every live entry is reachable from exactly one of byHash and extra, and
// both point at live entries only. Not safe for concurrent use: the Store
// guards it with amu.
type attribIndex struct {
	seed   maphash.Seed
	hashFn func(string) uint64 // tests replace the hash to force collisions
	byHash map[uint64]uint64
	extra  map[string]uint64
	segs   []*attrSeg
	base   uint64 // seq of the first entry of segs[0]
	next   uint64 // seq of the next entry remembered
	live   int

	accts     []acctRef
	acctIdx   map[string]uint32
	freeAccts []uint32
}

func newAttribIndex() attribIndex {
	return attribIndex{
		seed:    maphash.MakeSeed(),
		byHash:  make(map[uint64]uint64),
		extra:   make(map[string]uint64),
		acctIdx: make(map[string]uint32),
	}
}

func (x *attribIndex) hash(id string) uint64 {
	if x.hashFn != nil {
		return x.hashFn(id)
	}
	return maphash.String(x.seed, id)
}

func (x *attribIndex) hashBytes(id []byte) uint64 {
	if x.hashFn != nil {
		return x.hashFn(string(id))
	}
	return maphash.Bytes(x.seed, id) // equal to maphash.String of the same bytes
}

func (x *attribIndex) loc(seq uint64) (*attrSeg, int) {
	k := seq - x.base
	return x.segs[k/attrSegSize], int(k % attrSegSize)
}

// find returns the live entry of id.
func (x *attribIndex) find(id string) (g *attrSeg, i int, ok bool) {
	if seq, ok := x.byHash[x.hash(id)]; ok {
		if g, i := x.loc(seq); string(g.id(i)) == id {
			return g, i, true
		}
	}
	if len(x.extra) > 0 {
		if seq, ok := x.extra[id]; ok {
			g, i := x.loc(seq)
			return g, i, true
		}
	}
	return nil, 0, false
}

func (x *attribIndex) attribute(id string) (account string, at time.Time, ok bool) {
	g, i, ok := x.find(id)
	if !ok {
		return "", time.Time{}, false
	}
	e := g.ents[i]
	return x.accts[e.acct].name, time.Unix(0, e.at).UTC(), true
}

// remember records that account sent id at at (Unix ns), replacing what
// was remembered of id before. It allocates nothing in the steady state:
// the segments' arrays are amortized and a known account is not copied.
func (x *attribIndex) remember(id, account string, at int64) {
	h := x.hash(id)
	seq := x.next
	if old, ok := x.byHash[h]; ok {
		if g, i := x.loc(old); string(g.id(i)) == id {
			x.kill(g, i)
			x.byHash[h] = seq
		} else {
			// Another live id has this hash.
			if old, ok := x.extra[id]; ok {
				x.kill(x.loc(old))
			}
			x.extra[strings.Clone(id)] = seq
		}
	} else {
		if len(x.extra) > 0 {
			if old, ok := x.extra[id]; ok {
				// Its hash's owner has been forgotten since: it moves back.
				x.kill(x.loc(old))
				delete(x.extra, id)
			}
		}
		x.byHash[h] = seq
	}
	x.add(id, x.ref(account), at)
}

func (x *attribIndex) add(id string, acct uint32, at int64) {
	var g *attrSeg
	if n := len(x.segs); n > 0 && len(x.segs[n-1].ents) < attrSegSize {
		g = x.segs[n-1]
	} else {
		if n > 0 {
			// The full segment gives back the slack of its ids.
			full := x.segs[n-1]
			if cap(full.ids)-len(full.ids) > len(full.ids)/8 {
				full.ids = append([]byte(nil), full.ids...)
			}
		} else {
			x.base = x.next
		}
		g = &attrSeg{ents: make([]attrEntry, 0, attrSegSize), ids: make([]byte, 0, attrSegSize*16)}
		x.segs = append(x.segs, g)
	}
	if g.live == 0 {
		g.minAt, g.maxAt = at, at
	} else {
		g.minAt, g.maxAt = min(g.minAt, at), max(g.maxAt, at)
	}
	g.ents = append(g.ents, attrEntry{at: at, acct: acct, off: uint32(len(g.ids))})
	g.ids = append(g.ids, id...)
	g.live++
	x.live++
	x.next++
}

// kill marks an entry dead; the caller has unlinked it from byHash or
// extra. minAt and maxAt are left wide: forgetSome recomputes them.
func (x *attribIndex) kill(g *attrSeg, i int) {
	e := &g.ents[i]
	x.unref(e.acct)
	e.acct = deadAcct
	g.live--
	x.live--
}

// unlink removes the live entry seq, holding id, from byHash or extra.
func (x *attribIndex) unlink(id []byte, seq uint64) {
	h := x.hashBytes(id)
	if cur, ok := x.byHash[h]; ok && cur == seq {
		delete(x.byHash, h)
		return
	}
	delete(x.extra, string(id))
}

func (x *attribIndex) ref(account string) uint32 {
	if i, ok := x.acctIdx[account]; ok {
		x.accts[i].refs++
		return i
	}
	// Cloned: the caller's string may share memory with something large.
	account = strings.Clone(account)
	var i uint32
	if n := len(x.freeAccts); n > 0 {
		i = x.freeAccts[n-1]
		x.freeAccts = x.freeAccts[:n-1]
		x.accts[i] = acctRef{name: account, refs: 1}
	} else {
		i = uint32(len(x.accts))
		x.accts = append(x.accts, acctRef{name: account, refs: 1})
	}
	x.acctIdx[account] = i
	return i
}

func (x *attribIndex) unref(i uint32) {
	a := &x.accts[i]
	if a.refs--; a.refs == 0 {
		delete(x.acctIdx, a.name)
		*a = acctRef{}
		x.freeAccts = append(x.freeAccts, i)
	}
}

// forgetSome forgets entries remembered at before cut (Unix ns), working
// through at most about budget entries, and reports whether some may be
// left: the caller releases the lock between calls so that Remember and
// Attribute are never held up for long.
func (x *attribIndex) forgetSome(cut int64, budget int) (more bool) {
	x.dropDead()
	work := 0
	for si, g := range x.segs {
		if g.live == 0 {
			if si < len(x.segs)-1 && g.ents != nil {
				g.ents, g.ids = nil, nil // every entry died: give back the arrays
			}
			continue
		}
		if g.minAt >= cut {
			continue
		}
		if work > 0 && work+len(g.ents) > budget {
			return true
		}
		work += len(g.ents)
		seq := x.base + uint64(si)*attrSegSize
		for i, e := range g.ents {
			if e.acct != deadAcct && e.at < cut {
				x.unlink(g.id(i), seq+uint64(i))
				x.kill(g, i)
			}
		}
		g.span()
	}
	x.dropDead()
	return false
}

// dropDead drops the segments at the front whose entries all died.
func (x *attribIndex) dropDead() {
	n := 0
	for n < len(x.segs)-1 && x.segs[n].live == 0 {
		x.segs[n] = nil
		n++
	}
	if n > 0 {
		x.segs = x.segs[n:]
		x.base += uint64(n) * attrSegSize
	}
}

var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// unixNano is t.UnixNano clamped to int64 (years 1678 to 2262), where
// t.UnixNano is undefined.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}
