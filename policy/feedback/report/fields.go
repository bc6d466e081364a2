package report

import (
	"bufio"
	"io"
	"mime"
	"net/mail"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// field is one header field, unfolded (RFC 5322 §2.2.3: the line breaks
// removed, the white space kept).
type field struct {
	name, value string
}

// fields is a header block in order.
type fields []field

func (fs fields) has(name string) bool {
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// get returns the first value of name, trimmed.
func (fs fields) get(name string) string {
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			return strings.TrimSpace(f.value)
		}
	}
	return ""
}

func (fs fields) values(name string) []string {
	var vs []string
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			vs = append(vs, f.value)
		}
	}
	return vs
}

// readFields reads a header block leniently: the original messages inside
// reports are whatever the sender wrote, after a provider's rewriting, and
// carry mbox "From " lines, junk lines and 8-bit bytes. Lines that are not
// fields are skipped instead of failing the report.
//
// It stops at the empty line that ends the header, or at the end of r. An
// io.EOF from r is the clean end of a MIME part (a text/rfc822-headers part
// need not end in an empty line); any other error means the input was cut
// or broke, and then cut is true and the last field is dropped, since its
// value, or a continuation line of it, may be missing.
//
// The result is never nil, so that a part without any field still counts as
// found.
func readFields(r io.Reader) (fs fields, cut bool) {
	fs = fields{}
	br := bufio.NewReader(r)
	// The field being read, its lines joined only when it is complete: a
	// field folded over a million lines must not cost a million copies.
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			fs[len(fs)-1].value = strings.Join(cur, "")
			cur = cur[:0]
		}
	}
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			l := strings.TrimRight(line, "\r\n")
			if l == "" {
				flush()
				return fs, false
			}
			switch {
			case l[0] == ' ' || l[0] == '\t':
				if len(fs) > 0 {
					cur = append(cur, l)
				}
			default:
				name, value, ok := strings.Cut(l, ":")
				name = strings.TrimRight(name, " \t")
				if ok && validName(name) {
					flush()
					fs = append(fs, field{name: name})
					cur = append(cur, value)
				}
			}
		}
		if err != nil {
			flush()
			if err == io.EOF {
				return fs, false
			}
			if len(fs) > 0 {
				fs = fs[:len(fs)-1]
			}
			return fs, true
		}
	}
}

// validName reports whether s is an RFC 5322 §3.6.8 field name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// contentType returns the lower-cased media type and its parameters. When
// mime.ParseMediaType refuses the value (duplicate or malformed parameters
// are common), it falls back to splitting on ";" and "=".
func contentType(v string) (string, map[string]string) {
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{} // RFC 2045 §5.2
	}
	if mt, params, err := mime.ParseMediaType(v); err == nil {
		return mt, params
	}
	parts := strings.Split(v, ";")
	mt := strings.ToLower(strings.TrimSpace(parts[0]))
	params := map[string]string{}
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := params[k]; dup || k == "" {
			continue
		}
		params[k] = strings.Trim(strings.TrimSpace(val), `"`)
	}
	return mt, params
}

// address returns the addr-spec in v: the part in angle brackets if any,
// else the trimmed value. It does not validate: reports redact addresses
// ("redacted@"), hash them, or leave template placeholders.
func address(v string) string {
	v = strings.TrimSpace(v)
	if a, err := mail.ParseAddress(v); err == nil {
		return a.Address
	}
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j >= 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	return v
}

// messageID returns the first msg-id in v without angle brackets, or the
// first word of v when it has none (some providers drop the brackets).
func messageID(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j >= 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	return firstWord(v)
}

func firstWord(v string) string {
	f := strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == ';' || r == ','
	})
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// ipAddr returns v as a normalised IP address, or "" when it is none
// ("[192.0.2.1]" is accepted, "192.0.2.xxx" is not).
func ipAddr(v string) string {
	v = strings.Trim(firstWord(v), "[]")
	a, err := netip.ParseAddr(v)
	if err != nil {
		return ""
	}
	return a.Unmap().String()
}

const jmrpSubjectPrefix = "complaint about message from"

func isJMRPSubject(subject string) bool {
	s := strings.Join(strings.Fields(subject), " ")
	return len(s) >= len(jmrpSubjectPrefix) && strings.EqualFold(s[:len(jmrpSubjectPrefix)], jmrpSubjectPrefix)
}

// jmrpSourceIP returns the IP in a JMRP Subject, "complaint about message
// from 192.0.2.1".
func jmrpSourceIP(subject string) string {
	if !isJMRPSubject(subject) {
		return ""
	}
	s := strings.Join(strings.Fields(subject), " ")
	return ipAddr(s[len(jmrpSubjectPrefix):])
}

// obsZones are the RFC 5322 §4.3 zone names. time.Parse gives an unknown
// abbreviation a zero offset, or whatever the local zone says it is; these
// are fixed.
var obsZones = map[string]int{
	"EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
	"MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}

// parseDate parses an RFC 5322 date, returning it in UTC, or the zero time.
func parseDate(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := mail.ParseDate(v)
	if err != nil {
		return time.Time{}
	}
	if name, _ := t.Zone(); obsZones[name] != 0 {
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(),
			time.FixedZone(name, obsZones[name]*3600))
	}
	return t.UTC()
}

// postfixReceived matches what Postfix writes after its host name:
// "by host (Postfix) with ESMTPSA id 4Xyz123abc for <...>" or
// "by host (Postfix, from userid 1000) id 3B5A1C2D3E", and what Sendmail
// writes: "by host (8.17.1.9/8.17.1.9) with ESMTP id 5ARAbcde012345".
var postfixReceived = regexp.MustCompile(`\((?:Postfix(?:,[^)]*)?|\d+\.\d+\.\d+(?:\.\d+)?/[^)]*)\)[^;]*?\bid\s+([0-9A-Za-z]+)`)

// postfixQueueIDs returns the queue ids Postfix wrote into Received fields,
// in order, without duplicates.
func postfixQueueIDs(received []string) []string {
	var ids []string
	seen := map[string]bool{}
	for _, r := range received {
		m := postfixReceived.FindStringSubmatch(r)
		if m == nil || len(m[1]) < 5 || seen[m[1]] {
			continue
		}
		seen[m[1]] = true
		ids = append(ids, m[1])
	}
	return ids
}
