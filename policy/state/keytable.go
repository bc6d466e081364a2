package state

import "strings"

// KeyTable maps counter keys to a backend's counters, in less memory than a
// map with one entry per key: keys that differ only in their prefix share
// one entry. The prefix is a key up to and including its second '/'
// ("rate/hourly/"), the rest its suffix (the account): an account's rule
// counters, "rate/hourly/alice" and "rate/daily/alice", are one map entry
// to a 32-byte group in a slab, and one copy of "alice". A key with fewer
// than two '/' is all suffix. TestKeyTableMemory measures it.
//
// A KeyTable is not safe for concurrent use; the backends hold their lock.
type KeyTable[T any] struct {
	groups   map[string]uint32 // suffix -> group index in the slab
	slab     [][]group[T]      // chunks of slabChunk groups
	free     []uint32          // indexes of unused groups
	prefixes []string
	prefixID map[string]uint16
	n        int
}

// group is the keys of one suffix: two inline, more in a slice.
type group[T any] struct {
	v    [2]*T
	p    [2]uint16
	n    uint8
	more *[]keyItem[T]
}

type keyItem[T any] struct {
	prefix uint16
	v      *T
}

const slabChunk = 1024

// maxPrefixes bounds the interned prefixes; keys past it are kept whole
// as suffixes. Prefixes come from the rules, so a few are expected.
const maxPrefixes = 1024

// NewKeyTable returns an empty table.
func NewKeyTable[T any]() *KeyTable[T] {
	return &KeyTable[T]{
		groups:   make(map[string]uint32),
		prefixes: []string{""},
		prefixID: map[string]uint16{"": 0},
	}
}

// Key is a key as the table holds it, for Range and DeleteKey.
type Key struct {
	Prefix, Suffix string
}

func (k Key) String() string { return k.Prefix + k.Suffix }

// HasPrefix reports whether the whole key starts with p.
func (k Key) HasPrefix(p string) bool {
	if len(p) <= len(k.Prefix) {
		return strings.HasPrefix(k.Prefix, p)
	}
	return strings.HasPrefix(p, k.Prefix) && strings.HasPrefix(k.Suffix, p[len(k.Prefix):])
}

func splitKey(key string) (prefix, suffix string) {
	i := strings.IndexByte(key, '/')
	if i < 0 {
		return "", key
	}
	j := strings.IndexByte(key[i+1:], '/')
	if j < 0 {
		return "", key
	}
	n := i + 1 + j + 1
	return key[:n], key[n:]
}

// lookup finds the prefix's id without adding it.
func (t *KeyTable[T]) lookup(key string) (id uint16, suffix string, ok bool) {
	p, s := splitKey(key)
	if id, ok := t.prefixID[p]; ok {
		return id, s, true
	}
	return 0, key, false
}

func (t *KeyTable[T]) group(i uint32) *group[T] { return &t.slab[i/slabChunk][i%slabChunk] }

// find returns the position of prefix id in g: 0 or 1 inline, 2+j in more.
func (g *group[T]) find(id uint16) int {
	for i := range int(min(g.n, 2)) {
		if g.p[i] == id {
			return i
		}
	}
	if g.more != nil {
		for j, it := range *g.more {
			if it.prefix == id {
				return 2 + j
			}
		}
	}
	return -1
}

func (g *group[T]) at(i int) (uint16, *T) {
	if i < 2 {
		return g.p[i], g.v[i]
	}
	it := (*g.more)[i-2]
	return it.prefix, it.v
}

// len is the number of keys in g.
func (g *group[T]) len() int {
	if g.more != nil {
		return 2 + len(*g.more)
	}
	return int(g.n)
}

// Get returns the key's value.
func (t *KeyTable[T]) Get(key string) (*T, bool) {
	id, s, ok := t.lookup(key)
	if !ok {
		// A prefix never interned: the key, if here, was kept whole.
		id, s = 0, key
	}
	gi, ok := t.groups[s]
	if !ok {
		return nil, false
	}
	g := t.group(gi)
	i := g.find(id)
	if i < 0 {
		return nil, false
	}
	_, v := g.at(i)
	return v, true
}

// Put sets the key's value.
func (t *KeyTable[T]) Put(key string, v *T) {
	p, s := splitKey(key)
	id, ok := t.prefixID[p]
	if !ok {
		if len(t.prefixes) < maxPrefixes {
			id = uint16(len(t.prefixes))
			p = strings.Clone(p)
			t.prefixes = append(t.prefixes, p)
			t.prefixID[p] = id
		} else {
			id, s = 0, key
		}
	}
	gi, found := t.groups[s]
	if !found {
		gi = t.alloc()
		// The map keeps its own copy: s may point into a larger string.
		t.groups[strings.Clone(s)] = gi
	}
	g := t.group(gi)
	switch i := g.find(id); {
	case i >= 2:
		(*g.more)[i-2].v = v
		return
	case i >= 0:
		g.v[i] = v
		return
	case g.n < 2:
		g.p[g.n], g.v[g.n] = id, v
		g.n++
	default:
		if g.more == nil {
			g.more = new([]keyItem[T])
		}
		*g.more = append(*g.more, keyItem[T]{prefix: id, v: v})
	}
	t.n++
}

func (t *KeyTable[T]) alloc() uint32 {
	if n := len(t.free); n > 0 {
		gi := t.free[n-1]
		t.free = t.free[:n-1]
		return gi
	}
	last := len(t.slab) - 1
	if last < 0 || len(t.slab[last]) == slabChunk {
		t.slab = append(t.slab, make([]group[T], 0, slabChunk))
		last++
	}
	t.slab[last] = t.slab[last][:len(t.slab[last])+1]
	return uint32(last*slabChunk + len(t.slab[last]) - 1)
}

// Delete removes the key; it reports whether it was there.
func (t *KeyTable[T]) Delete(key string) bool {
	id, s, ok := t.lookup(key)
	if !ok {
		id, s = 0, key
	}
	return t.remove(id, s)
}

// DeleteKey removes a key that Range gave.
func (t *KeyTable[T]) DeleteKey(k Key) bool {
	id, ok := t.prefixID[k.Prefix]
	if !ok {
		return false
	}
	return t.remove(id, k.Suffix)
}

// remove deletes prefix id from the suffix's group: the group's last key
// takes its place.
func (t *KeyTable[T]) remove(id uint16, s string) bool {
	gi, ok := t.groups[s]
	if !ok {
		return false
	}
	g := t.group(gi)
	i := g.find(id)
	if i < 0 {
		return false
	}
	last := g.len() - 1
	lp, lv := g.at(last)
	if i < 2 {
		g.p[i], g.v[i] = lp, lv
	} else {
		(*g.more)[i-2] = keyItem[T]{prefix: lp, v: lv}
	}
	if last >= 2 {
		m := *g.more
		m[len(m)-1] = keyItem[T]{}
		if len(m) == 1 {
			g.more = nil
		} else {
			*g.more = m[:len(m)-1]
		}
	} else {
		g.n--
		g.v[g.n] = nil
	}
	t.n--
	if g.len() == 0 {
		*g = group[T]{}
		delete(t.groups, s)
		t.free = append(t.free, gi)
	}
	return true
}

// Len is the number of keys.
func (t *KeyTable[T]) Len() int { return t.n }

// Range calls fn for each key until fn returns false. fn may delete the
// key it is given, and may release and retake the caller's lock: Range
// then follows Go's rules for a map that changes during iteration (a key
// added meanwhile may or may not be visited, one deleted is not, one moved
// within its group by a deletion may be visited twice).
func (t *KeyTable[T]) Range(fn func(k Key, v *T) bool) {
	for s := range t.groups {
		gi, ok := t.groups[s]
		if !ok {
			continue
		}
		for i := t.group(gi).len() - 1; i >= 0; i-- {
			gi, ok := t.groups[s]
			if !ok {
				break
			}
			g := t.group(gi)
			if i >= g.len() {
				continue
			}
			p, v := g.at(i)
			if !fn(Key{Prefix: t.prefixes[p], Suffix: s}, v) {
				return
			}
		}
	}
}
