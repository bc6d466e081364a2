package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Day is the length of the "d" unit that Duration adds to Go's units. It is
// always 24 hours: rate windows are elapsed time, not calendar days.
const Day = 24 * time.Hour

// Duration is a time.Duration written in TOML as a string: Go's duration syntax
// ("90s", "1h30m", "1.5h") plus a "d" unit of 24 hours ("7d", "1d12h").
// A number without a unit is an error, except "0".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d with the largest units, leaving out those that are zero:
// "7d", "1d12h", "1h30m", "1m30s", "1.5s", "0s". ParseDuration reads it back
// to the same value.
func (d Duration) String() string {
	if d == 0 {
		return "0s"
	}
	sign := ""
	u := uint64(d)
	if d < 0 {
		sign = "-"
		u = -u // two's complement: also right for math.MinInt64
	}
	days, rest := u/uint64(Day), u%uint64(Day)
	s := sign
	if days > 0 {
		s += strconv.FormatUint(days, 10) + "d"
	}
	if rest > 0 {
		s += compact(time.Duration(rest).String())
	}
	return s
}

// compact drops the zero minutes and seconds that time.Duration.String
// writes: "1h0m0s" -> "1h", "30m0s" -> "30m", "1h0m5s" -> "1h5s".
func compact(s string) string {
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return strings.Replace(s, "h0m", "h", 1)
}

// MarshalText implements encoding.TextMarshaler with the String form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

var units = map[string]uint64{
	"ns": uint64(time.Nanosecond),
	"us": uint64(time.Microsecond),
	"µs": uint64(time.Microsecond), // U+00B5 micro sign
	"μs": uint64(time.Microsecond), // U+03BC Greek mu
	"ms": uint64(time.Millisecond),
	"s":  uint64(time.Second),
	"m":  uint64(time.Minute),
	"h":  uint64(time.Hour),
	"d":  uint64(Day),
}

var errOverflow = errors.New("out of range (more than about 292 years)")

// ParseDuration parses s as time.ParseDuration does, with the "d" unit added:
// an optional sign, then one or more decimal numbers each followed by a unit
// (ns, us, µs, ms, s, m, h, d), as in "7d", "1d12h" or "-1.5h".
func ParseDuration(s string) (Duration, error) {
	v, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", s, err)
	}
	return v, nil
}

// parseDuration follows the algorithm of time.ParseDuration, so that every
// string Go accepts means the same here.
func parseDuration(s string) (Duration, error) {
	orig := s
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		if orig == "" {
			return 0, errors.New(`empty; write a number and a unit, such as "90s", "1h" or "7d"`)
		}
		return 0, errors.New("no number after the sign")
	}
	var total uint64
	for s != "" {
		if !(s[0] == '.' || '0' <= s[0] && s[0] <= '9') {
			return 0, fmt.Errorf("expected a number at %q", s)
		}
		var whole, frac, scale uint64
		var err error
		pl := len(s)
		whole, s, err = leadingInt(s)
		if err != nil {
			return 0, errOverflow
		}
		pre := pl != len(s)
		post := false
		if s != "" && s[0] == '.' {
			s = s[1:]
			pl := len(s)
			frac, scale, s = leadingFraction(s)
			post = pl != len(s)
		}
		if !pre && !post {
			return 0, errors.New(`a "." needs a digit beside it`)
		}
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '.' || '0' <= c && c <= '9' {
				break
			}
		}
		if i == 0 {
			return 0, errors.New(`missing unit (use ns, us, ms, s, m, h or d, as in "90s")`)
		}
		u := s[:i]
		s = s[i:]
		unit, ok := units[u]
		if !ok {
			return 0, fmt.Errorf("unknown unit %q (use ns, us, ms, s, m, h or d)", u)
		}
		if whole > 1<<63/unit {
			return 0, errOverflow
		}
		whole *= unit
		if frac > 0 {
			// float64 keeps the sub-unit part within a nanosecond, as Go does.
			whole += uint64(float64(frac) * (float64(unit) / float64(scale)))
			if whole > 1<<63 {
				return 0, errOverflow
			}
		}
		total += whole
		if total > 1<<63 {
			return 0, errOverflow
		}
	}
	if neg {
		return -Duration(total), nil
	}
	if total > 1<<63-1 {
		return 0, errOverflow
	}
	return Duration(total), nil
}

// leadingInt consumes the leading [0-9]* from s.
func leadingInt(s string) (x uint64, rest string, err error) {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			break
		}
		if x > 1<<63/10 {
			return 0, "", errOverflow
		}
		x = x*10 + uint64(c) - '0'
		if x > 1<<63 {
			return 0, "", errOverflow
		}
	}
	return x, s[i:], nil
}

// leadingFraction consumes the leading [0-9]* from s as x/scale. Digits past
// what fits in 63 bits are dropped: they weigh less than a nanosecond.
func leadingFraction(s string) (x, scale uint64, rest string) {
	i := 0
	scale = 1
	overflow := false
	for ; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			break
		}
		if overflow {
			continue
		}
		if x > (1<<63-1)/10 {
			overflow = true
			continue
		}
		y := x*10 + uint64(c) - '0'
		if y > 1<<63 {
			overflow = true
			continue
		}
		x = y
		scale *= 10
	}
	return x, scale, s[i:]
}
