// Package spool keeps complaint reports on disk: reports that msgate fbl
// could not hand to the daemon wait in incoming/ until the daemon takes
// them, and reports nobody could parse are kept in unparseable/ for the
// admin. Files are written whole (temporary name, fsync, rename, fsync of
// the directory), so a crash leaves either the whole report or nothing.
package spool

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Subdirectories of a spool.
const (
	Incoming    = "incoming"
	Unparseable = "unparseable"
)

// Write stores raw as a new file in dir/sub and returns its path.
func Write(dir, sub string, raw []byte, now time.Time) (string, error) {
	d := filepath.Join(dir, sub)
	if err := os.MkdirAll(d, 0o750); err != nil {
		return "", fmt.Errorf("creating the spool: %w", err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%d-%s.eml", now.UnixNano(), hex.EncodeToString(rnd[:]))
	tmp, err := os.CreateTemp(d, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing to the spool: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing to the spool: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing to the spool: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("writing to the spool: %w", err)
	}
	path := filepath.Join(d, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("writing to the spool: %w", err)
	}
	if err := syncDir(d); err != nil {
		return "", fmt.Errorf("writing to the spool: %w", err)
	}
	return path, nil
}

func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Pending lists the reports waiting in dir/incoming, oldest first.
func Pending(dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, Incoming))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".eml") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, Incoming, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Done removes a report that has been ingested.
func Done(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// Keep moves an incoming report to dir/unparseable.
func Keep(dir, path string) (string, error) {
	d := filepath.Join(dir, Unparseable)
	if err := os.MkdirAll(d, 0o750); err != nil {
		return "", err
	}
	dst := filepath.Join(d, filepath.Base(path))
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	return dst, syncDir(d)
}
