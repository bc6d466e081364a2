package detect

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

const (
	maxNameLen  = 253 // RFC 1035 §2.3.4, without the trailing dot
	maxLabelLen = 63
	// maxRawLen bounds the work done on input before IDNA conversion; a
	// UTF-8 name can be longer in bytes than its A-label form.
	maxRawLen = 1024
)

// normalize returns the canonical form of a recipient domain: surrounding
// space and one trailing dot removed, ASCII lower case, U-labels converted to
// A-labels (RFC 5891 §5, UTS #46 lookup mapping). ok is false for anything
// that cannot be a mail domain: empty, address literals ("[1.2.3.4]"), bare
// IPv4 addresses, single labels, characters outside letters, digits and
// hyphen. It does not allocate for input that is already canonical.
func normalize(s string) (name string, ok bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, ".")
	if len(s) > maxRawLen {
		return "", false
	}
	switch scanName(s) {
	case nameOK:
		return s, true
	case nameUpper:
		return strings.ToLower(s), true
	case nameNonASCII:
		if !utf8.ValidString(s) {
			return "", false
		}
		a, err := idna.Lookup.ToASCII(s)
		if err != nil {
			return "", false
		}
		// The lookup mapping lower-cases and turns U+3002 and friends
		// into '.', so a trailing ideographic full stop only shows up now.
		a = strings.TrimSuffix(a, ".")
		if scanName(a) != nameOK {
			return "", false
		}
		return a, true
	}
	return "", false
}

// Outcomes of scanName.
const (
	nameInvalid  = iota
	nameOK       // canonical already
	nameUpper    // valid once lower-cased
	nameNonASCII // needs IDNA conversion before it can be judged
)

// Byte classes for scanName.
const (
	cOther = iota
	cLower
	cUpper
	cDigit
	cHyphen
)

var byteClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = cLower
		t[c-'a'+'A'] = cUpper
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = cDigit
	}
	t['-'] = cHyphen
	return t
}()

// scanName judges s, without a trailing dot, in one pass: a host name of at
// least two LDH labels (RFC 1123 §2.1) whose last label is not all digits,
// which rules out dotted IPv4 addresses.
func scanName(s string) int {
	upper, labels, start, digitsOnly := false, 0, 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if i == start || i-start > maxLabelLen || s[start] == '-' || s[i-1] == '-' {
				return nameInvalid
			}
			labels++
			start, digitsOnly = i+1, true
			continue
		}
		switch byteClass[c] {
		case cLower, cHyphen:
			digitsOnly = false
		case cUpper:
			digitsOnly, upper = false, true
		case cDigit:
		default:
			if c >= utf8.RuneSelf {
				return nameNonASCII
			}
			return nameInvalid
		}
	}
	n := len(s)
	if n == 0 || n > maxNameLen || n == start || n-start > maxLabelLen ||
		s[start] == '-' || s[n-1] == '-' || labels == 0 || digitsOnly {
		return nameInvalid
	}
	if upper {
		return nameUpper
	}
	return nameOK
}

// matchSuffix reports whether host equals suffix or ends with "."+suffix.
// Both are lower case without leading or trailing dots.
func matchSuffix(host, suffix string) bool {
	if len(host) == len(suffix) {
		return host == suffix
	}
	return len(host) > len(suffix) &&
		host[len(host)-len(suffix)-1] == '.' &&
		host[len(host)-len(suffix):] == suffix
}
