package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"time"
)

// The write-ahead log: what makes a commit durable. See the package
// documentation for the design; this file holds its files and its record
// format.
//
// A record is a 16-byte header then its payload:
//
//	uint32 payload length (little-endian, > 0)
//	uint32 CRC-32C over the epoch and the payload, chained: seeded with the
//	       CRC of the epoch's previous record (0 for its first)
//	uint64 epoch
//	payload: a version byte (walVersion), then operations
//
// Operations, varint-encoded:
//
//	opUnits:   varint now (Unix ns), uvarint n, then n times:
//	           key (uvarint length, bytes), uvarint window (ns), varint bucket
//	opRewrite: key, then the counter's record as series.appendTo lays it out
//	           (no buckets: delete the record)
//	opAttrib:  varint time (Unix ns), id, account (each uvarint length, bytes)
const (
	walHeader  = 16
	walVersion = 1

	opUnits   = 1
	opRewrite = 2
	opAttrib  = 3

	// maxRecordPayload is where the writer starts a new record within one
	// write: a burst (a config reload re-windowing many keys, thousands of
	// attributions) becomes a few records of bounded size.
	maxRecordPayload = 1 << 20
	// maxRecordLen bounds what a header may claim when the log is read back.
	maxRecordLen = 1 << 28

	// An epoch of 4 MiB holds about 25,000 messages' units: at thousands
	// of messages a second a checkpoint (one bbolt transaction, two
	// fsyncs) every few seconds; with 1 MiB epochs checkpoints took 2% of
	// msgate's CPU at 32 sessions (perf).
	defaultWALSize   = 8 << 20
	defaultCkptBytes = 4 << 20
	defaultCkptAfter = 30 * time.Second
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walName is the name of log file i (0 or 1) of the state file path.
func walName(path string, i int) string { return fmt.Sprintf("%s-wal.%d", path, i) }

// openWAL opens log file name, creating it when missing, and fills it with
// zeros up to size: the writer then overwrites blocks that are already
// allocated and written, so that its fdatasync flushes data only.
func openWAL(name string, size int64, open func(string, int, os.FileMode) (*os.File, error), noSync bool) (*os.File, error) {
	f, err := open(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() >= size {
		return f, nil
	}
	zeros := make([]byte, 64<<10)
	for off := fi.Size(); off < size; {
		n := int(min(int64(len(zeros)), size-off))
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			f.Close()
			return nil, err
		}
		off += int64(n)
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
		if err := syncDir(filepath.Dir(name)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// walEncoder lays out the records of one write in buf.
type walEncoder struct {
	buf   []byte
	epoch uint64
	crc   uint32 // the CRC of the last record finished: the chain's seed
	start int    // where the open record starts; -1 when none is open
}

// reset starts the records of a write in epoch, after a record whose CRC
// was prev (0 at the start of the epoch).
func (e *walEncoder) reset(epoch uint64, prev uint32) {
	if cap(e.buf) > 4*maxRecordPayload {
		e.buf = nil // a burst's buffer is let go
	}
	e.buf, e.epoch, e.crc, e.start = e.buf[:0], epoch, prev, -1
}

// op opens a record for the next operation, unless the open one has room.
func (e *walEncoder) op(kind byte) {
	if e.start < 0 || len(e.buf)-e.start-walHeader >= maxRecordPayload {
		e.finish()
		e.start = len(e.buf)
		e.buf = append(e.buf, make([]byte, walHeader)...)
		e.buf = append(e.buf, walVersion)
	}
	e.buf = append(e.buf, kind)
}

// finish fills the header of the open record.
func (e *walEncoder) finish() {
	if e.start < 0 {
		return
	}
	h := e.buf[e.start : e.start+walHeader]
	binary.LittleEndian.PutUint32(h[0:], uint32(len(e.buf)-e.start-walHeader))
	binary.LittleEndian.PutUint64(h[8:], e.epoch)
	// The epoch and the payload are contiguous.
	e.crc = crc32.Update(e.crc, castagnoli, e.buf[e.start+8:])
	binary.LittleEndian.PutUint32(h[4:], e.crc)
	e.start = -1
}

func appendBytes(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// units adds the units of one commit, with the buckets write chose.
func (e *walEncoder) units(now int64, us []unit) {
	e.op(opUnits)
	e.buf = binary.AppendVarint(e.buf, now)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(us)))
	for _, u := range us {
		e.buf = appendBytes(e.buf, u.key)
		e.buf = binary.AppendUvarint(e.buf, uint64(u.window))
		e.buf = binary.AppendVarint(e.buf, u.idx)
	}
}

// rewrite adds the replacement of key's record by sr.
func (e *walEncoder) rewrite(key string, sr *series) {
	e.op(opRewrite)
	e.buf = appendBytes(e.buf, key)
	e.buf = sr.appendTo(e.buf)
}

func (e *walEncoder) attrib(a attrRec) {
	e.op(opAttrib)
	e.buf = binary.AppendVarint(e.buf, a.at)
	e.buf = appendBytes(e.buf, a.id)
	e.buf = appendBytes(e.buf, a.account)
}

// walEpoch is the epoch that the header at the start of buf claims, or 0.
func walEpoch(buf []byte) uint64 {
	if len(buf) < walHeader {
		return 0
	}
	return binary.LittleEndian.Uint64(buf[8:])
}

// scanWAL returns the payloads of the records of epoch at the start of
// buf, and where they end. It stops at the first header that does not
// start a whole record of epoch chained to the previous one: zeros, a
// record of an older use of the file, or a record torn by a crash.
func scanWAL(buf []byte, epoch uint64) ([][]byte, int) {
	var recs [][]byte
	off := 0
	var prev uint32
	for len(buf)-off >= walHeader {
		h := buf[off : off+walHeader]
		n := uint64(binary.LittleEndian.Uint32(h))
		if n == 0 || n > maxRecordLen || n > uint64(len(buf)-off-walHeader) {
			break
		}
		if binary.LittleEndian.Uint64(h[8:]) != epoch {
			break
		}
		end := off + walHeader + int(n)
		crc := crc32.Update(prev, castagnoli, buf[off+8:end])
		if crc != binary.LittleEndian.Uint32(h[4:]) {
			break
		}
		recs = append(recs, buf[off+walHeader:end:end])
		prev, off = crc, end
	}
	return recs, off
}

// walOp is one operation of a record, as decodePayload reads it. Its byte
// slices point into the payload.
type walOp struct {
	kind   byte
	key    []byte        // opUnits, opRewrite
	window time.Duration // opUnits
	now    int64         // opUnits: Unix ns
	idx    int64         // opUnits
	sr     series        // opRewrite
	id     []byte        // opAttrib
	acct   []byte        // opAttrib
	at     int64         // opAttrib: Unix ns
}

var errCorruptLog = errors.New("corrupt log record")

// decodePayload calls fn for each operation of a record's payload, a unit
// at a time for opUnits. It fails on a payload it cannot read whole; the
// operations before the fault have been passed to fn by then, which is
// harmless: it runs inside a transaction that then fails.
func decodePayload(p []byte, fn func(*walOp) error) error {
	if len(p) == 0 {
		return errCorruptLog
	}
	if p[0] != walVersion {
		return fmt.Errorf("log record version %d, this msgate reads %d", p[0], walVersion)
	}
	r := reader{buf: p[1:]}
	var op walOp
	for len(r.buf) > 0 {
		kind := r.buf[0]
		r.buf = r.buf[1:]
		switch kind {
		case opUnits:
			now := r.varint()
			n := r.uvarint()
			if r.bad || n > uint64(len(r.buf)) {
				return errCorruptLog
			}
			for range n {
				key := r.bytes()
				w := r.uvarint()
				idx := r.varint()
				if r.bad || len(key) == 0 || w > math.MaxInt64 {
					return errCorruptLog
				}
				op = walOp{kind: opUnits, key: key, window: time.Duration(w), now: now, idx: idx}
				if err := fn(&op); err != nil {
					return err
				}
			}
		case opRewrite:
			key := r.bytes()
			if r.bad || len(key) == 0 {
				return errCorruptLog
			}
			sr, err := readSeries(&r)
			if err != nil {
				return err
			}
			op = walOp{kind: opRewrite, key: key, sr: sr}
			if err := fn(&op); err != nil {
				return err
			}
		case opAttrib:
			at := r.varint()
			id := r.bytes()
			acct := r.bytes()
			if r.bad || len(id) == 0 || len(id) > maxAttribID {
				return errCorruptLog
			}
			op = walOp{kind: opAttrib, at: at, id: id, acct: acct}
			if err := fn(&op); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unknown operation %d", errCorruptLog, kind)
		}
	}
	return nil
}
