package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWritePendingDoneKeep(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Unix(1_800_000_000, 0)
	p1, err := Write(dir, Incoming, []byte("one"), t0)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Write(dir, Incoming, []byte("two"), t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Pending(dir)
	if err != nil || len(got) != 2 || got[0] != p1 || got[1] != p2 {
		t.Fatalf("Pending = %v, %v", got, err)
	}
	if b, _ := os.ReadFile(p1); string(b) != "one" {
		t.Fatalf("content %q", b)
	}
	if err := Done(p1); err != nil {
		t.Fatal(err)
	}
	kept, err := Keep(dir, p2)
	if err != nil || filepath.Dir(kept) != filepath.Join(dir, Unparseable) {
		t.Fatalf("Keep = %q, %v", kept, err)
	}
	if got, _ := Pending(dir); len(got) != 0 {
		t.Fatalf("left pending: %v", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, Incoming))
	if len(entries) != 0 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestWriteFailsClearly(t *testing.T) {
	dir := t.TempDir()
	// A file where the spool directory should be.
	os.WriteFile(filepath.Join(dir, "blocked"), nil, 0o644)
	if _, err := Write(filepath.Join(dir, "blocked"), Incoming, []byte("x"), time.Now()); err == nil {
		t.Fatal("Write into a file succeeded")
	}
	if got, err := Pending(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Fatalf("Pending of a missing spool = %v, %v", got, err)
	}
}
