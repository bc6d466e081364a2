package main

import (
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

type timeRecorder struct {
	zapcore.PrimitiveArrayEncoder
	got string
}

func (r *timeRecorder) AppendByteString(b []byte) { r.got = string(b) }
func (r *timeRecorder) AppendString(s string)     { r.got = s }

// isoTime writes what zapcore.ISO8601TimeEncoder writes, across seconds,
// milliseconds, zones and a zone change within the same second.
func TestISOTimeMatchesZap(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("CET", 3600)
	}
	base := time.Date(2026, 11, 27, 23, 59, 58, 0, time.UTC)
	var times []time.Time
	for _, d := range []time.Duration{0, 1, time.Millisecond - 1, time.Millisecond, 999 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2 * time.Second, 26 * time.Hour} {
		times = append(times, base.Add(d), base.Add(d).In(paris), base.Add(d).In(time.FixedZone("", -5*3600-30*60)))
	}
	times = append(times, time.Date(2026, 3, 29, 0, 59, 59, 999_999_999, time.UTC).In(paris), time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC).In(paris))
	for _, tm := range times {
		var want, got timeRecorder
		zapcore.ISO8601TimeEncoder(tm, &want)
		isoTime(tm, &got)
		if got.got != want.got {
			t.Errorf("%v: %q, zap writes %q", tm, got.got, want.got)
		}
	}
}

type discardTime struct{ zapcore.PrimitiveArrayEncoder }

func (discardTime) AppendByteString([]byte) {}
func (discardTime) AppendString(string)     {}

// BenchmarkISOTime compares isoTime with zap's encoder, a line every
// microsecond.
func BenchmarkISOTime(b *testing.B) {
	for _, bc := range []struct {
		name string
		enc  zapcore.TimeEncoder
	}{{"msgate", isoTime}, {"zap", zapcore.ISO8601TimeEncoder}} {
		b.Run(bc.name, func(b *testing.B) {
			var r discardTime
			t0 := time.Now()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				bc.enc(t0.Add(time.Duration(i)*time.Microsecond), r)
			}
		})
	}
}
