package state

import (
	"slices"
	"strings"
	"sync"
)

// FlagTable is the in-memory copy of account flags that both backends
// keep: reads are on the per-message path and never touch a disk. The zero
// value is ready to use.
type FlagTable struct {
	mu sync.RWMutex
	m  map[string]Flag
}

// Set records f.
func (t *FlagTable) Set(f Flag) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]Flag)
	}
	t.m[f.Account] = f
}

// Delete removes an account's flag; it reports whether there was one.
func (t *FlagTable) Delete(account string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[account]
	delete(t.m, account)
	return ok
}

// Get returns an account's flag.
func (t *FlagTable) Get(account string) (Flag, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	f, ok := t.m[account]
	return f, ok
}

// List returns every flag, ordered by account.
func (t *FlagTable) List() []Flag {
	t.mu.RLock()
	fs := make([]Flag, 0, len(t.m))
	for _, f := range t.m {
		fs = append(fs, f)
	}
	t.mu.RUnlock()
	slices.SortFunc(fs, func(a, b Flag) int { return strings.Compare(a.Account, b.Account) })
	return fs
}
