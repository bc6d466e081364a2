package detect

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

const (
	maxShards      = 64
	minShardLength = 256 // below this many entries per shard, fewer shards
)

// entry is a cached DNS decision; expires is in Unix nanoseconds.
type entry struct {
	res     Result
	expires int64
}

// cache is a map sharded by key hash so that hits on different domains take
// different read locks. The bound is hard: the shards' limits add up to the
// configured maximum.
type cache struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

type shard struct {
	mu    sync.RWMutex
	m     map[string]entry
	limit int
	hits  atomic.Uint64
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

func newCache(maxEntries int) *cache {
	n := 1
	for n < maxShards && maxEntries/(n*2) >= minShardLength {
		n *= 2
	}
	c := &cache{
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]shard, n),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]entry)
		c.shards[i].limit = maxEntries / n
		if i < maxEntries%n {
			c.shards[i].limit++
		}
	}
	return c
}

func (c *cache) shard(key string) *shard {
	if c.mask == 0 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, key)&c.mask]
}

// get returns the unexpired entry for key at now.
func (c *cache) get(key string, now int64) (Result, bool) {
	s := c.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	if !ok || now >= e.expires {
		return Result{}, false
	}
	s.hits.Add(1)
	e.res.Cached = true
	return e.res, true
}

// put stores res until expires, making room in a full shard first.
func (c *cache) put(key string, res Result, now, expires int64) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= s.limit {
		s.evict(now)
	}
	s.m[key] = entry{res: res, expires: expires}
}

// evict drops every expired entry and then, if fewer than an eighth of the
// shard was freed, the entries closest to expiry (the ones that would have
// been queried again soonest anyway) down to seven eighths. Freeing an
// eighth at a time keeps the cost of the scan amortised over many inserts
// when the shard stays full.
func (s *shard) evict(now int64) {
	for k, e := range s.m {
		if now >= e.expires {
			delete(s.m, k)
		}
	}
	target := s.limit - max(s.limit/8, 1)
	if len(s.m) <= target {
		return
	}
	type kv struct {
		key     string
		expires int64
	}
	all := make([]kv, 0, len(s.m))
	for k, e := range s.m {
		all = append(all, kv{k, e.expires})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Compare(a.expires, b.expires) })
	for _, e := range all[:len(all)-target] {
		delete(s.m, e.key)
	}
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

func (c *cache) hits() uint64 {
	var n uint64
	for i := range c.shards {
		n += c.shards[i].hits.Load()
	}
	return n
}
