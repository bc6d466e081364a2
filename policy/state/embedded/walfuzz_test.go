package embedded

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"
)

var fuzzT0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// walSeed is a log holding one record of each operation, then a second
// record.
func walSeed() []byte {
	var e walEncoder
	e.reset(7, 0)
	e.rewrite("rate/hourly/alice", &series{window: time.Hour, buckets: []bucket{{idx: 40, count: 2}, {idx: 43, count: 1}}})
	e.rewrite("gone", &series{window: time.Minute})
	e.units(fuzzT0.UnixNano(), []unit{{key: "rate/hourly/alice", window: time.Hour, idx: 44}, {key: "cap", window: 24 * time.Hour, idx: 9}})
	e.attrib(attrRec{id: "4Q1", account: "alice@example.com", at: fuzzT0.UnixNano()})
	e.finish()
	e.units(-5, []unit{{key: "k", window: 1, idx: -3}})
	e.finish()
	return e.buf
}

// FuzzWALDecode feeds arbitrary bytes to what reads the log back: the
// record scan and the payload decoder must never panic nor read past what
// they are given, and what the decoder reads, encoded again, decodes the
// same.
func FuzzWALDecode(f *testing.F) {
	seed := walSeed()
	f.Add(seed)
	f.Add(seed[walHeader:])
	f.Add(seed[:len(seed)-3])
	f.Add([]byte{walVersion, opUnits, 0x80})
	f.Add([]byte{walVersion, opRewrite, 1, 'k', 1, 200, 1, 1})
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return // larger adds nothing but time
		}
		recs, end := scanWAL(data, walEpoch(data))
		if end > len(data) || (end == 0) != (len(recs) == 0) {
			t.Fatalf("scan: %d records ending at %d of %d bytes", len(recs), end, len(data))
		}
		for _, p := range recs {
			decodePayload(p, func(*walOp) error { return nil })
		}
		// The payload decoder on its own: the CRC keeps most fuzzed
		// bytes out of it otherwise.
		var ops []walOp
		err := decodePayload(data, func(op *walOp) error {
			o := *op
			o.sr.buckets = append([]bucket(nil), op.sr.buckets...)
			ops = append(ops, o)
			return nil
		})
		if err != nil {
			return
		}
		var e walEncoder
		e.reset(1, 0)
		for _, op := range ops {
			switch op.kind {
			case opUnits:
				e.units(op.now, []unit{{key: string(op.key), window: op.window, idx: op.idx}})
			case opRewrite:
				e.rewrite(string(op.key), &op.sr)
			case opAttrib:
				e.attrib(attrRec{id: string(op.id), account: string(op.acct), at: op.at})
			}
		}
		e.finish()
		again, n := scanWAL(e.buf, 1)
		if n != len(e.buf) {
			t.Fatalf("re-encoded records scan to %d of %d bytes", n, len(e.buf))
		}
		var got []walOp
		for _, p := range again {
			if err := decodePayload(p, func(op *walOp) error { got = append(got, *op); return nil }); err != nil {
				t.Fatalf("re-encoded payload: %v", err)
			}
		}
		if !slices.EqualFunc(got, ops, sameOp) {
			t.Fatalf("decoded %v\nre-encoded and decoded %v", ops, got)
		}
	})
}

func sameOp(a, b walOp) bool {
	return a.kind == b.kind && bytes.Equal(a.key, b.key) && a.window == b.window && a.now == b.now && a.idx == b.idx &&
		a.sr.window == b.sr.window && slices.Equal(a.sr.buckets, b.sr.buckets) &&
		bytes.Equal(a.id, b.id) && bytes.Equal(a.acct, b.acct) && a.at == b.at
}

// The seed decodes to what was encoded.
func TestWALSeedDecodes(t *testing.T) {
	recs, end := scanWAL(walSeed(), 7)
	if len(recs) != 2 || end != len(walSeed()) {
		t.Fatalf("%d records to %d", len(recs), end)
	}
	var got []string
	for _, p := range recs {
		if err := decodePayload(p, func(op *walOp) error {
			switch op.kind {
			case opUnits:
				got = append(got, fmt.Sprintf("unit %s %v %d %d", op.key, op.window, op.now, op.idx))
			case opRewrite:
				got = append(got, fmt.Sprintf("rewrite %s %v %v", op.key, op.sr.window, op.sr.buckets))
			case opAttrib:
				got = append(got, fmt.Sprintf("attrib %s %s %d", op.id, op.acct, op.at))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"rewrite rate/hourly/alice 1h0m0s [{40 2} {43 1}]",
		"rewrite gone 1m0s []",
		fmt.Sprintf("unit rate/hourly/alice 1h0m0s %d 44", fuzzT0.UnixNano()),
		fmt.Sprintf("unit cap 24h0m0s %d 9", fuzzT0.UnixNano()),
		fmt.Sprintf("attrib 4Q1 alice@example.com %d", fuzzT0.UnixNano()),
		"unit k 1ns -5 -3",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got\n%v\nwant\n%v", got, want)
	}
}
