package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/msgate/msgate/policy/state"
)

type bucket struct {
	idx   int64
	count int64
}

// series is one counter's committed units: its window and its buckets in
// ascending order. The in-memory mirror and the on-disk record share it, so
// that both bucket, trim and re-window units the same way.
type series struct {
	window  time.Duration
	buckets []bucket
}

// trim drops the buckets that left the window ending at now and returns the
// units they held.
func (s *series) trim(now time.Time) int64 {
	oldest := state.Oldest(now, s.window)
	n := 0
	var dropped int64
	for n < len(s.buckets) && s.buckets[n].idx < oldest {
		dropped += s.buckets[n].count
		n++
	}
	switch {
	case n == len(s.buckets):
		s.buckets = nil // an idle counter keeps no array behind it
	case n > 0:
		s.buckets = append(s.buckets[:0], s.buckets[n:]...)
	}
	return dropped
}

// rewindow re-buckets the units for a new window (state.Rebucket), merging
// the old buckets that land in one new bucket, as the memory backend does.
func (s *series) rewindow(w time.Duration) {
	if s.window == w {
		return
	}
	from := s.window
	s.window = w
	out := s.buckets[:0] // new indexes never decrease, so in place is safe
	for _, b := range s.buckets {
		j := state.Rebucket(b.idx, from, w)
		if l := len(out); l > 0 && out[l-1].idx >= j {
			out[l-1].count += b.count
		} else {
			out = append(out, bucket{idx: j, count: b.count})
		}
	}
	s.buckets = out
}

// add counts one unit at now and returns the bucket it went to. A clock that
// stepped back counts in the newest bucket so the order stays ascending (as
// the memory backend does).
func (s *series) add(now time.Time) int64 {
	idx := state.BucketOf(now, s.window)
	if l := len(s.buckets); l > 0 && s.buckets[l-1].idx >= idx {
		s.buckets[l-1].count++
		return s.buckets[l-1].idx
	}
	s.buckets = append(s.buckets, bucket{idx: idx, count: 1})
	return idx
}

// addAt counts n units in bucket idx, wherever it falls.
func (s *series) addAt(idx, n int64) {
	i := len(s.buckets)
	for i > 0 && s.buckets[i-1].idx > idx {
		i--
	}
	if i > 0 && s.buckets[i-1].idx == idx {
		s.buckets[i-1].count += n
		return
	}
	s.buckets = append(s.buckets, bucket{})
	copy(s.buckets[i+1:], s.buckets[i:])
	s.buckets[i] = bucket{idx: idx, count: n}
}

func (s *series) sum() int64 {
	var n int64
	for _, b := range s.buckets {
		n += b.count
	}
	return n
}

// The record of one counter on disk:
//
//	uvarint window (ns), uvarint bucket count,
//	then per bucket: the index (varint for the first, uvarint delta from the
//	previous one after that) and the uvarint count.
func (s series) encode() []byte {
	return s.appendTo(make([]byte, 0, 2*binary.MaxVarintLen64+len(s.buckets)*6))
}

// appendTo appends the record to buf.
func (s *series) appendTo(buf []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(s.window))
	buf = binary.AppendUvarint(buf, uint64(len(s.buckets)))
	var prev int64
	for i, b := range s.buckets {
		if i == 0 {
			buf = binary.AppendVarint(buf, b.idx)
		} else {
			buf = binary.AppendUvarint(buf, uint64(b.idx-prev))
		}
		prev = b.idx
		buf = binary.AppendUvarint(buf, uint64(b.count))
	}
	return buf
}

var errCorrupt = errors.New("corrupt counter record")

// decode reads a record written by encode. It copies: v may be bbolt's
// memory, valid only inside its transaction.
func decode(v []byte) (series, error) {
	r := reader{buf: v}
	s, err := readSeries(&r)
	if err != nil {
		return series{}, err
	}
	if len(r.buf) != 0 {
		return series{}, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(r.buf))
	}
	return s, nil
}

// readSeries reads a record laid out by appendTo from r.
func readSeries(r *reader) (series, error) {
	s := series{window: time.Duration(r.uvarint())}
	nb := r.uvarint()
	if r.bad || s.window < 0 || nb > uint64(len(r.buf)) {
		return series{}, errCorrupt
	}
	if nb > 0 {
		s.buckets = make([]bucket, nb)
	}
	for i := range s.buckets {
		if i == 0 {
			s.buckets[0].idx = r.varint()
		} else {
			d := int64(r.uvarint())
			if d <= 0 {
				r.bad = true
			}
			s.buckets[i].idx = s.buckets[i-1].idx + d
		}
		s.buckets[i].count = int64(r.uvarint())
		if r.bad || s.buckets[i].count <= 0 {
			return series{}, errCorrupt
		}
	}
	return s, nil
}

type reader struct {
	buf []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	x, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.buf = r.buf[n:]
	return x
}

func (r *reader) varint() int64 {
	x, n := binary.Varint(r.buf)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.buf = r.buf[n:]
	return x
}

// bytes reads a length-prefixed byte string, without copying.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.buf)) {
		r.bad = true
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}
