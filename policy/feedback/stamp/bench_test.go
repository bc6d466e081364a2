package stamp

import (
	"testing"
	"time"
)

// BenchmarkSeal measures the per-message cost: one token for a typical login.
func BenchmarkSeal(b *testing.B) {
	s := newTestSealer(b, Key{Secret: secretA}, nil, 0)
	at := time.Unix(1767225600, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal("alice.smith@customer-example.com", at); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures reading a token back from a complaint copy, with a
// retired key configured besides the current one.
func BenchmarkOpen(b *testing.B) {
	s := newTestSealer(b, Key{Secret: secretA}, []Key{{Secret: secretB, NotAfter: t0}}, 0)
	at := time.Unix(1767225600, 0)
	tok, err := s.Seal("alice.smith@customer-example.com", at)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(tok, at); err != nil {
			b.Fatal(err)
		}
	}
}
