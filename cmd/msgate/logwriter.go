package main

import (
	"io"
	"sync"
	"time"
)

// lineWriter writes the daemon's log lines from a goroutine of its own,
// each write taking every line that accumulated meanwhile, at most one
// write a millisecond: idle, a line is written at once; under load, the
// decision lines of many sessions share a system call instead of paying
// one each (which cost 4% of msgate's CPU at 32 sessions, measured with
// perf). Sync writes what is pending before it
// returns. A crash loses only the lines not yet written, which is the
// lines logged in the moment before it.
type lineWriter struct {
	w io.Writer

	mu      sync.Mutex // guards buf and closed
	buf     []byte
	closed  bool
	writeMu sync.Mutex // orders the writes to w
	spare   []byte     // the writer's previous buffer, under writeMu
	wake    chan struct{}
	done    chan struct{}
}

// maxPending is how much may wait for the writer: past it, Write writes
// itself, so a blocked log destination slows logging down instead of
// filling memory.
const maxPending = 1 << 20

func newLineWriter(w io.Writer) *lineWriter {
	l := &lineWriter{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.writeMu.Lock()
		defer l.writeMu.Unlock()
		return l.w.Write(p)
	}
	l.buf = append(l.buf, p...)
	full := len(l.buf) >= maxPending
	if !full {
		// Under mu, so that Close cannot close wake meanwhile.
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	l.mu.Unlock()
	if full {
		return len(p), l.flush()
	}
	return len(p), nil
}

// coalesce is how long the writer waits after a write before the next:
// under load, the lines logged meanwhile share one write.
const coalesce = time.Millisecond

func (l *lineWriter) run() {
	defer close(l.done)
	for range l.wake {
		l.flush()
		time.Sleep(coalesce)
	}
}

// flush writes what is pending.
func (l *lineWriter) flush() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	b := l.buf
	l.buf = l.spare[:0]
	l.mu.Unlock()
	if len(b) == 0 {
		l.spare = b
		return nil
	}
	_, err := l.w.Write(b)
	if cap(b) <= 4*maxPending {
		l.spare = b
	} else {
		l.spare = nil
	}
	return err
}

// Sync writes what is pending.
func (l *lineWriter) Sync() error { return l.flush() }

// Close writes what is pending and stops the writer; later lines are
// written directly.
func (l *lineWriter) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.wake)
	l.mu.Unlock()
	<-l.done
	return l.flush()
}
