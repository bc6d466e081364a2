package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

// Lines from many goroutines all arrive, whole and in each goroutine's
// order, by Close; Sync writes what is pending.
func TestLineWriterKeepsEveryLine(t *testing.T) {
	var dst lockedBuffer
	w := newLineWriter(&dst)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				fmt.Fprintf(w, "g%d line %d\n", g, i)
			}
		}()
	}
	wg.Wait()
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	dst.mu.Lock()
	n := strings.Count(dst.b.String(), "\n")
	dst.mu.Unlock()
	if n != 8000 {
		t.Fatalf("after Sync: %d lines written, want 8000", n)
	}
	fmt.Fprintf(w, "last\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "after close\n")
	next := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(dst.b.String(), "\n"), "\n") {
		var g, i int
		if _, err := fmt.Sscanf(line, "g%d line %d", &g, &i); err != nil {
			continue
		}
		key := fmt.Sprint(g)
		if i != next[key] {
			t.Fatalf("goroutine %d: line %d after line %d", g, i, next[key]-1)
		}
		next[key]++
	}
	if !strings.HasSuffix(dst.b.String(), "last\nafter close\n") {
		t.Errorf("lines around Close lost: ...%q", dst.b.String()[dst.b.Len()-30:])
	}
	t.Logf("8,000 lines in %d writes", dst.writes)
}
