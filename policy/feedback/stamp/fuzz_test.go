package stamp

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary strings to Open. It must not panic, must fail only
// with the package's errors, and may succeed only with claims that were
// really sealed: the seeds' accounts at t0, under the current or the retired
// key. Every other success would be a forgery.
func FuzzOpen(f *testing.F) {
	notAfter := t0.Add(time.Hour)
	s := newTestSealer(f, Key{Secret: secretA}, []Key{{Secret: collidingSecret, NotAfter: notAfter}}, 0)
	old := newTestSealer(f, Key{Secret: collidingSecret}, nil, 0)
	other := newTestSealer(f, Key{Secret: secretB}, nil, 0)
	sealed := map[string]bool{}
	for _, account := range []string{"alice@example.com", "ü", "\x00", strings.Repeat("m", MaxAccountLen)} {
		sealed[account] = true
		for _, sl := range []*Sealer{s, old, other} {
			tok, err := sl.Seal(account, t0)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(tok)
			f.Add(tok[:len(tok)-1])
			f.Add(" " + tok + "\n")
		}
		// Genuine, but refused for its time.
		tok, err := old.Seal(account, notAfter.Add(time.Second))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	for _, g := range []string{"", "v1.", "v2.AAAA", "v1." + strings.Repeat("A", 67), "v1." + strings.Repeat("_", 400), "v1.\r\n"} {
		f.Add(g)
	}
	now := t0.Add(time.Minute)
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Open(tok, now)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForged) && !errors.Is(err, ErrRetired) {
				t.Fatalf("Open(%q): unexpected error %v", tok, err)
			}
			if c != (Claims{}) {
				t.Fatalf("Open(%q) = %+v with error %v", tok, c, err)
			}
			return
		}
		if !sealed[c.Account] || !c.At.Equal(t0.Truncate(time.Second)) {
			t.Fatalf("Open(%q) = %+v: claims that were never sealed", tok, c)
		}
		if !headerSafe.MatchString(strings.TrimSpace(tok)) {
			t.Fatalf("Open(%q) accepted a token that is not header-safe", tok)
		}
		if again, err := s.Open(tok, now); err != nil || again != c {
			t.Fatalf("Open(%q) again = %+v, %v; want %+v", tok, again, err, c)
		}
	})
}
