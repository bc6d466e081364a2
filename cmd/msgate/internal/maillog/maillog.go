// Package maillog reads delivery outcomes from an MTA's log: Postfix's
// smtp lines ("QUEUEID: to=<...>, relay=..., dsn=4.7.650,
// status=deferred (host ... said: ...)") and Sendmail's ("QUEUEID:
// to=<...>, ..., dsn=4.7.650, stat=Deferred: 451 4.7.650 ..."), and follows
// a log file across rotation. It decides nothing about what an outcome
// means.
package maillog

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// Entry is one delivery outcome.
type Entry struct {
	QueueID string
	Rcpt    string
	DSN     string // enhanced status, e.g. "4.7.650"
	Status  string // Postfix: sent, deferred, bounced...; Sendmail: Sent, Deferred...
	Text    string // what the remote server said, as the MTA logged it
}

// Key is the entry as Postfix's smtp_delivery_status_filter sees it:
// "<enhanced status> <text>".
func (e Entry) Key() string { return e.DSN + " " + e.Text }

// maxLine bounds a line; longer ones are not delivery lines worth reading.
const maxLine = 16 << 10

// ParseLine reads one log line; ok is false for lines that are not a
// delivery outcome.
func ParseLine(line string) (e Entry, ok bool) {
	if len(line) > maxLine {
		return e, false
	}
	// "... postfix/smtp[123]: 4jgCsW4sDbz5flr: to=<a@b>, ..."
	i := strings.Index(line, ": to=<")
	if i <= 0 {
		return e, false
	}
	head := line[:i]
	j := strings.LastIndex(head, " ")
	e.QueueID = head[j+1:]
	if e.QueueID == "" || !isQueueID(e.QueueID) {
		return e, false
	}
	rest := line[i+len(": to=<"):]
	k := strings.IndexByte(rest, '>')
	if k < 0 {
		return e, false
	}
	e.Rcpt, rest = rest[:k], rest[k+1:]
	fields := rest
	if dsn, ok := field(fields, "dsn="); ok {
		e.DSN = dsn
	}
	switch {
	case strings.Contains(fields, " status="):
		s := fields[strings.Index(fields, " status=")+len(" status="):]
		p := strings.IndexByte(s, ' ')
		if p < 0 {
			e.Status = s
		} else {
			e.Status = s[:p]
			if t := strings.TrimSpace(s[p:]); strings.HasPrefix(t, "(") && strings.HasSuffix(t, ")") {
				e.Text = t[1 : len(t)-1]
			}
		}
	case strings.Contains(fields, " stat="):
		s := fields[strings.Index(fields, " stat=")+len(" stat="):]
		status, text, _ := strings.Cut(s, ": ")
		e.Status, e.Text = strings.TrimSuffix(status, ","), text
	default:
		return e, false
	}
	if e.DSN == "" || e.Status == "" {
		return e, false
	}
	return e, true
}

// field finds "name" followed by a value up to the next comma.
func field(s, name string) (string, bool) {
	i := strings.Index(s, " "+name)
	if i < 0 {
		return "", false
	}
	v := s[i+1+len(name):]
	if k := strings.IndexByte(v, ','); k >= 0 {
		v = v[:k]
	}
	return v, v != ""
}

func isQueueID(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// Follow calls fn with every line appended to the file at path from now
// on, until ctx ends. It reopens the file when it is rotated (replaced or
// truncated) and waits for it when it is missing; poll is how often it
// looks.
func Follow(ctx context.Context, path string, poll time.Duration, fn func(line string), onErr func(error)) {
	var f *os.File
	var r *bufio.Reader
	var partial strings.Builder
	first := true
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if f == nil {
			var err error
			f, err = os.Open(path)
			if err == nil {
				if first {
					// Start at the end: what was logged before msgate
					// ran is not news.
					_, err = f.Seek(0, io.SeekEnd)
				}
				r = bufio.NewReaderSize(f, 64<<10)
			}
			if err != nil {
				if f != nil {
					f.Close()
					f = nil
				}
				if !errors.Is(err, os.ErrNotExist) && onErr != nil {
					onErr(err)
				}
			}
			first = false
		}
		for f != nil {
			s, err := r.ReadString('\n')
			if partial.Len()+len(s) <= maxLine {
				partial.WriteString(s)
			}
			if err != nil {
				break
			}
			fn(strings.TrimRight(partial.String(), "\r\n"))
			partial.Reset()
		}
		if f != nil && rotated(f, path) {
			f.Close()
			f, r = nil, nil
			partial.Reset()
			continue // read the new file from its start at once
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// rotated reports whether path no longer is the open file, or the file
// shrank under the read position.
func rotated(f *os.File, path string) bool {
	st, err := os.Stat(path)
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	fst, err := f.Stat()
	if err != nil {
		return true
	}
	a, ok1 := st.Sys().(*syscall.Stat_t)
	b, ok2 := fst.Sys().(*syscall.Stat_t)
	if ok1 && ok2 && (a.Ino != b.Ino || a.Dev != b.Dev) {
		return true
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	return err == nil && fst.Size() < pos
}
