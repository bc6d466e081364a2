package snds

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrNotCSV is returned for an answer that is an HTML page (a login or
// error page: a wrong key, an outage) instead of an export.
var ErrNotCSV = errors.New("the answer is an HTML page, not an SNDS export (is the key right?)")

// Filter is SNDS's filter result for an IP's mail on one day.
type Filter uint8

const (
	Green  Filter = iota // spam filtering judged less than 10% of the mail spam
	Yellow               // between 10% and 90%
	Red                  // more than 90%
)

var filterNames = [...]string{"GREEN", "YELLOW", "RED"}

func (f Filter) String() string { return filterNames[f] }

// MarshalText writes the filter result as SNDS does.
func (f Filter) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads GREEN, YELLOW or RED, in any case.
func (f *Filter) UnmarshalText(b []byte) error {
	for i, n := range filterNames {
		if strings.EqualFold(n, string(b)) {
			*f = Filter(i)
			return nil
		}
	}
	return fmt.Errorf("filter result %q is not GREEN, YELLOW or RED", b)
}

// Rate is a complaint rate: Percent, or less than Percent when Below
// ("< 0.1%").
type Rate struct {
	Percent float64
	Below   bool
}

func (r Rate) String() string {
	s := strconv.FormatFloat(r.Percent, 'f', -1, 64) + "%"
	if r.Below {
		return "< " + s
	}
	return s
}

// Over reports whether the rate is above threshold percent. A rate SNDS
// gives only as below a value ("< 0.1%", its floor) is never over.
func (r Rate) Over(threshold float64) bool { return !r.Below && r.Percent > threshold }

// Worse reports whether r is a higher rate than o.
func (r Rate) Worse(o Rate) bool {
	if r.Percent != o.Percent {
		return r.Percent > o.Percent
	}
	return !r.Below && o.Below
}

// MarshalText writes the rate as SNDS does.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads "0.5%" or "< 0.1%".
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := parseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

func parseRate(s string) (Rate, error) {
	var r Rate
	t := strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(t, "<"); ok {
		r.Below, t = true, strings.TrimSpace(rest)
	}
	num, ok := strings.CutSuffix(t, "%")
	if !ok {
		return r, fmt.Errorf("complaint rate %q is not a percentage", s)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 0 || v > 100 || strings.ContainsAny(num, "eEnN+") {
		return r, fmt.Errorf("complaint rate %q is not a percentage from 0%% to 100%%", s)
	}
	r.Percent = v
	return r, nil
}

// Row is one line of the data export: one IP's traffic on one day.
type Row struct {
	IP netip.Addr `json:"ip"`
	// ActivityStart and ActivityEnd bound the traffic counted.
	ActivityStart time.Time `json:"activity_start"`
	ActivityEnd   time.Time `json:"activity_end"`
	RCPT          int64     `json:"rcpt_commands"`
	DATA          int64     `json:"data_commands"`
	Recipients    int64     `json:"message_recipients"`
	Filter        Filter    `json:"filter_result"`
	Complaints    Rate      `json:"complaint_rate"`
	// TrapStart and TrapEnd bound the trap hits; zero when SNDS left them
	// empty.
	TrapStart time.Time `json:"trap_start,omitzero"`
	TrapEnd   time.Time `json:"trap_end,omitzero"`
	TrapHits  int64     `json:"trap_hits"`
	HELO      string    `json:"sample_helo,omitempty"`
	MailFrom  string    `json:"sample_mail_from,omitempty"`
	Comments  string    `json:"comments,omitempty"`
}

// Range is one line of the IP status export.
type Range struct {
	First   netip.Addr `json:"first_ip"`
	Last    netip.Addr `json:"last_ip"`
	Blocked bool       `json:"blocked"`
	Reason  string     `json:"reason,omitempty"`
}

// Contains reports whether ip is in the range.
func (r Range) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.BitLen() == r.First.BitLen() && r.First.Compare(ip) <= 0 && ip.Compare(r.Last) <= 0
}

func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// dataColumns is the data export's column count.
const dataColumns = 14

// timeLayout is how SNDS writes times: "6/30/2026 11:59 PM".
const timeLayout = "1/2/2006 3:04 PM"

// ParseData reads a data export. An empty export (no traffic) has no rows.
func ParseData(b []byte) ([]Row, error) {
	recs, err := records(b)
	if err != nil {
		return nil, fmt.Errorf("reading the SNDS data export: %w", err)
	}
	rows := make([]Row, 0, len(recs))
	for _, rec := range recs {
		row, err := parseRow(rec)
		if err != nil {
			return nil, fmt.Errorf("reading the SNDS data export: line %d: %w", rec.line, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func parseRow(rec record) (Row, error) {
	f := rec.fields
	if len(f) < dataColumns {
		return Row{}, fmt.Errorf("%d columns, want %d (a truncated export?)", len(f), dataColumns)
	}
	for i := dataColumns; i < len(f); i++ {
		if strings.TrimSpace(f[i]) != "" {
			return Row{}, fmt.Errorf("%d columns, want %d: column %d is %q (has the export's format changed?)", len(f), dataColumns, i+1, f[i])
		}
	}
	var row Row
	var err error
	col := func(i int, what string, parse func(string) error) {
		if err == nil {
			if perr := parse(strings.TrimSpace(f[i])); perr != nil {
				err = fmt.Errorf("column %d (%s): %w", i+1, what, perr)
			}
		}
	}
	col(0, "IP", func(s string) (e error) { row.IP, e = parseIP(s); return })
	col(1, "activity start", func(s string) (e error) { row.ActivityStart, e = parseTime(s, false); return })
	col(2, "activity end", func(s string) (e error) { row.ActivityEnd, e = parseTime(s, false); return })
	col(3, "RCPT commands", func(s string) (e error) { row.RCPT, e = parseCount(s); return })
	col(4, "DATA commands", func(s string) (e error) { row.DATA, e = parseCount(s); return })
	col(5, "message recipients", func(s string) (e error) { row.Recipients, e = parseCount(s); return })
	col(6, "filter result", func(s string) error { return row.Filter.UnmarshalText([]byte(s)) })
	col(7, "complaint rate", func(s string) (e error) { row.Complaints, e = parseRate(s); return })
	col(8, "trap period start", func(s string) (e error) { row.TrapStart, e = parseTime(s, true); return })
	col(9, "trap period end", func(s string) (e error) { row.TrapEnd, e = parseTime(s, true); return })
	col(10, "trap hits", func(s string) (e error) { row.TrapHits, e = parseCount(s); return })
	if err != nil {
		return Row{}, err
	}
	if row.ActivityEnd.Before(row.ActivityStart) {
		return Row{}, fmt.Errorf("activity ends (%s) before it starts (%s)", f[2], f[1])
	}
	row.HELO, row.MailFrom, row.Comments = strings.TrimSpace(f[11]), strings.TrimSpace(f[12]), strings.TrimSpace(f[13])
	return row, nil
}

func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return ip.Unmap(), nil
}

func parseTime(s string, emptyOK bool) (time.Time, error) {
	if s == "" && emptyOK {
		return time.Time{}, nil
	}
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time as M/D/YYYY h:mm AM/PM", s)
	}
	return t, nil
}

func parseCount(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%q is not a count", s)
	}
	return n, nil
}

// ParseIPStatus reads an IP status export. A reason may hold commas: every
// column after the third is part of it. An empty export lists nothing.
func ParseIPStatus(b []byte) ([]Range, error) {
	recs, err := records(b)
	if err != nil {
		return nil, fmt.Errorf("reading the SNDS IP status export: %w", err)
	}
	ranges := make([]Range, 0, len(recs))
	for _, rec := range recs {
		r, err := parseRange(rec.fields)
		if err != nil {
			return nil, fmt.Errorf("reading the SNDS IP status export: line %d: %w", rec.line, err)
		}
		ranges = append(ranges, r)
	}
	return ranges, nil
}

func parseRange(f []string) (Range, error) {
	if len(f) < 3 {
		return Range{}, fmt.Errorf("%d columns, want first IP, last IP, blocked and reason (a truncated export?)", len(f))
	}
	var r Range
	var err error
	if r.First, err = parseIP(strings.TrimSpace(f[0])); err != nil {
		return Range{}, fmt.Errorf("column 1 (first IP): %w", err)
	}
	if r.Last, err = parseIP(strings.TrimSpace(f[1])); err != nil {
		return Range{}, fmt.Errorf("column 2 (last IP): %w", err)
	}
	if r.First.BitLen() != r.Last.BitLen() || r.Last.Less(r.First) {
		return Range{}, fmt.Errorf("%s to %s is not a range of addresses", r.First, r.Last)
	}
	switch b := strings.TrimSpace(f[2]); {
	case strings.EqualFold(b, "yes"):
		r.Blocked = true
	case strings.EqualFold(b, "no"):
	default:
		return Range{}, fmt.Errorf("column 3 (blocked): %q is not Yes or No", b)
	}
	r.Reason = strings.TrimSpace(strings.Join(f[3:], ","))
	return r, nil
}

type record struct {
	line   int
	fields []string
}

// records splits an export into CSV records, after the checks both
// exports share.
func records(b []byte) ([]record, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '<' {
		return nil, ErrNotCSV
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, errors.New("the export holds NUL bytes: not text")
	}
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	// A sample HELO or MAIL FROM may hold a quote: kept as written.
	r.LazyQuotes = true
	var recs []record
	for {
		f, err := r.Read()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return nil, err
		}
		line, _ := r.FieldPos(0)
		if len(f) == 1 && strings.TrimSpace(f[0]) == "" {
			continue // a line of blanks
		}
		recs = append(recs, record{line: line, fields: f})
	}
}
