package state

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// The table behaves as a map from key to value, whatever the keys look
// like, including past the bound on prefixes.
func TestKeyTableIsAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := []string{"cap", "a", "", "/", "//", "a/b", "rate/hourly/", "rate/hourly/alice", "rate/daily/alice",
		"rate/hourly/a/b@x", "rate//alice", "x/y/z/w"}
	for i := range 1500 {
		keys = append(keys, fmt.Sprintf("p%d/r/acct%d", i, i%7)) // more prefixes than the bound
	}
	tab := NewKeyTable[int]()
	ref := map[string]*int{}
	for step := range 50000 {
		k := keys[r.IntN(len(keys))]
		switch r.IntN(4) {
		case 0, 1:
			v := step
			tab.Put(k, &v)
			ref[k] = &v
		case 2:
			if got, want := tab.Delete(k), ref[k] != nil; got != want {
				t.Fatalf("step %d: Delete(%q) = %v, want %v", step, k, got, want)
			}
			delete(ref, k)
		}
		got, ok := tab.Get(k)
		if want := ref[k]; ok != (want != nil) || ok && got != want {
			t.Fatalf("step %d: Get(%q) = %v %v, want %v", step, k, got, ok, want)
		}
		if tab.Len() != len(ref) {
			t.Fatalf("step %d: Len %d, want %d", step, tab.Len(), len(ref))
		}
	}
	var seen []string
	tab.Range(func(k Key, v *int) bool {
		if ref[k.String()] != v {
			t.Errorf("Range gave %q with a value the map does not have", k)
		}
		seen = append(seen, k.String())
		return true
	})
	if len(seen) != len(ref) {
		t.Errorf("Range visited %d keys, want %d", len(seen), len(ref))
	}
	// Deleting every key while ranging visits each once.
	visits := map[string]int{}
	tab.Range(func(k Key, _ *int) bool {
		visits[k.String()]++
		if !tab.DeleteKey(k) {
			t.Errorf("DeleteKey(%q) found nothing", k)
		}
		return true
	})
	for k, n := range visits {
		if n != 1 {
			t.Errorf("%q visited %d times", k, n)
		}
	}
	if len(visits) != len(ref) || tab.Len() != 0 {
		t.Errorf("deleting while ranging: %d visited of %d, %d left", len(visits), len(ref), tab.Len())
	}
}

func TestKeyHasPrefix(t *testing.T) {
	k := Key{Prefix: "rate/hourly/", Suffix: "alice"}
	for p, want := range map[string]bool{"": true, "rate/": true, "rate/hourly/": true, "rate/hourly/al": true,
		"rate/hourly/alice": true, "rate/hourly/alicex": false, "rate/daily/": false, "cap": false} {
		if got := k.HasPrefix(p); got != want {
			t.Errorf("HasPrefix(%q) = %v", p, got)
		}
	}
	keys := []string{}
	tab := NewKeyTable[int]()
	for _, s := range []string{"rate/hourly/alice", "rate/daily/alice", "cap"} {
		tab.Put(s, new(int))
	}
	tab.Range(func(k Key, _ *int) bool { keys = append(keys, k.String()); return true })
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"cap", "rate/daily/alice", "rate/hourly/alice"}) {
		t.Errorf("keys %q", keys)
	}
}

// TestKeyTableMemory measures what the table itself costs per account with
// two rule counters each (the counters not included), against a map with
// one entry per key, and fails past 110 bytes (a map of keys costs 120-170).
func TestKeyTableMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200,000 accounts")
	}
	const n = 200_000
	accts := make([]string, n)
	for i := range accts {
		accts[i] = fmt.Sprintf("user%07d@example.org", i)
	}
	var one int
	perAccount := func(fill func(hourly, daily string)) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, a := range accts {
			fill("rate/hourly/"+a, "rate/daily/"+a)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		return float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	tab := NewKeyTable[int]()
	got := perAccount(func(h, d string) { tab.Put(h, &one); tab.Put(d, &one) })
	runtime.KeepAlive(tab)
	m := map[string]*int{}
	plain := perAccount(func(h, d string) { m[h], m[d] = &one, &one })
	runtime.KeepAlive(m)
	t.Logf("per account with two keys: KeyTable %.0f bytes, map %.0f bytes", got, plain)
	if got > 110 {
		t.Errorf("KeyTable costs %.0f bytes per account, want at most 110", got)
	}
}
