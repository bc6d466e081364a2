package config

import (
	"math"
	"strings"
	"testing"
	"time"
)

var durationTests = []struct {
	in   string
	want time.Duration
	ok   bool
}{
	{"0", 0, true},
	{"0s", 0, true},
	{"90s", 90 * time.Second, true},
	{"1h30m", 90 * time.Minute, true},
	{"1.5h", 90 * time.Minute, true},
	{"6m", 6 * time.Minute, true},
	{"500ms", 500 * time.Millisecond, true},
	{"1us", time.Microsecond, true},
	{"1µs", time.Microsecond, true},
	{"1ns", 1, true},
	{"7d", 7 * 24 * time.Hour, true},
	{"1d12h", 36 * time.Hour, true},
	{"1.5d", 36 * time.Hour, true},
	{".5d", 12 * time.Hour, true},
	{"12h1d", 36 * time.Hour, true},
	{"1d1d", 48 * time.Hour, true},
	{"-1d", -24 * time.Hour, true},
	{"+2d", 48 * time.Hour, true},
	{"106751d23h47m16.854775807s", math.MaxInt64, true},
	{"-106751d23h47m16.854775808s", math.MinInt64, true},

	{"", 0, false},
	{"7x", 0, false},
	{"7", 0, false},
	{"30", 0, false},
	{"d", 0, false},
	{"1d2", 0, false},
	{"-", 0, false},
	{".d", 0, false},
	{"1 d", 0, false},
	{" 1d", 0, false},
	{"1D", 0, false},
	{"7days", 0, false},
	{"106752d", 0, false},
	{"106751d23h47m16.854775808s", 0, false},
	{"99999999999999999999s", 0, false},
}

func TestParseDuration(t *testing.T) {
	for _, tt := range durationTests {
		got, err := ParseDuration(tt.in)
		switch {
		case tt.ok && err != nil:
			t.Errorf("ParseDuration(%q): %v", tt.in, err)
		case tt.ok && got.D() != tt.want:
			t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, got.D(), tt.want)
		case !tt.ok && err == nil:
			t.Errorf("ParseDuration(%q) = %v, want an error", tt.in, got.D())
		case !tt.ok && !strings.Contains(err.Error(), "invalid duration "):
			t.Errorf("ParseDuration(%q) error %q does not say what it is", tt.in, err)
		}
	}
}

func TestDurationString(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{time.Nanosecond, "1ns"},
		{1500 * time.Microsecond, "1.5ms"},
		{1500 * time.Millisecond, "1.5s"},
		{90 * time.Second, "1m30s"},
		{30 * time.Minute, "30m"},
		{time.Hour, "1h"},
		{time.Hour + 5*time.Second, "1h5s"},
		{90 * time.Minute, "1h30m"},
		{24 * time.Hour, "1d"},
		{36 * time.Hour, "1d12h"},
		{7 * 24 * time.Hour, "7d"},
		{24*time.Hour + time.Millisecond, "1d1ms"},
		{-36 * time.Hour, "-1d12h"},
		{math.MaxInt64, "106751d23h47m16.854775807s"},
		{math.MinInt64, "-106751d23h47m16.854775808s"},
	} {
		got := Duration(tt.d).String()
		if got != tt.want {
			t.Errorf("Duration(%d).String() = %q, want %q", tt.d, got, tt.want)
		}
		text, err := Duration(tt.d).MarshalText()
		if err != nil || string(text) != got {
			t.Errorf("MarshalText = %q, %v; want String's %q", text, err, got)
		}
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back.D() != tt.d {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, back.D(), err, tt.d)
		}
	}
}

// A failed UnmarshalText leaves the value alone.
func TestDurationUnmarshalError(t *testing.T) {
	d := Duration(time.Minute)
	if err := d.UnmarshalText([]byte("7x")); err == nil {
		t.Fatal("no error")
	}
	if d.D() != time.Minute {
		t.Errorf("value changed to %v", d.D())
	}
}

// FuzzDuration checks that ParseDuration never panics, that what it accepts
// formats and parses back to the same value, and that it agrees with
// time.ParseDuration on every string without the "d" unit.
func FuzzDuration(f *testing.F) {
	for _, tt := range durationTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if !strings.Contains(s, "d") {
			g, gerr := time.ParseDuration(s)
			if (err == nil) != (gerr == nil) || g != d.D() {
				t.Fatalf("ParseDuration(%q) = %v, %v; time.ParseDuration = %v, %v", s, d.D(), err, g, gerr)
			}
		}
		if err != nil {
			return
		}
		text, err := d.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText(%d): %v", d, err)
		}
		back, err := ParseDuration(string(text))
		if err != nil || back != d {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, d, text, back, err)
		}
	})
}
