package snds

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/snds")

const testdata = "../../testdata/snds"

// samples are the exports in testdata/snds: data-* for ParseData,
// status-* for ParseIPStatus; a .bad name must fail.
func samples(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdata, "*.csv*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in %s: %v", testdata, err)
	}
	return files
}

func parseSample(name string, b []byte) (any, error) {
	if strings.HasPrefix(filepath.Base(name), "data-") {
		return ParseData(b)
	}
	return ParseIPStatus(b)
}

// Every sample against its golden file: the parsed rows as JSON, or the
// error.
func TestGolden(t *testing.T) {
	for _, path := range samples(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			v, err := parseSample(path, b)
			bad := strings.HasSuffix(path, ".bad")
			var got []byte
			switch {
			case bad && err == nil:
				t.Fatalf("parsed a malformed export: %+v", v)
			case !bad && err != nil:
				t.Fatalf("parse: %v", err)
			case bad:
				got = []byte("error: " + err.Error() + "\n")
			default:
				got, _ = json.MarshalIndent(v, "", "  ")
				got = append(got, '\n')
			}
			golden := strings.TrimSuffix(path, ".bad")
			golden = strings.TrimSuffix(golden, ".csv") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got\n%s\nwant (%s)\n%s", got, golden, want)
			}
		})
	}
}

const goodRow = "192.0.2.25,11/30/2026 12:00 AM,11/30/2026 11:59 PM,412,410,405,GREEN,< 0.1%,11/30/2026 12:00 AM,11/30/2026 11:59 PM,0,mail.example.net,alice@example.net,"

func TestParseData(t *testing.T) {
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	check := func(t *testing.T, in string, rows int, wantErr string) []Row {
		t.Helper()
		got, err := ParseData([]byte(in))
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("ParseData(%q): %v", in, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Fatalf("ParseData(%q) = %v, %v; want an error with %q", in, got, err, wantErr)
		case wantErr == "" && len(got) != rows:
			t.Fatalf("ParseData(%q) = %d rows, want %d", in, len(got), rows)
		}
		return got
	}
	rows := check(t, goodRow+"\r\n", 1, "")
	r := rows[0]
	if r.IP != netip.MustParseAddr("192.0.2.25") || !r.ActivityStart.Equal(day) || !r.ActivityEnd.Equal(day.Add(23*time.Hour+59*time.Minute)) ||
		r.RCPT != 412 || r.DATA != 410 || r.Recipients != 405 || r.Filter != Green || r.Complaints != (Rate{0.1, true}) ||
		r.TrapHits != 0 || r.HELO != "mail.example.net" || r.MailFrom != "alice@example.net" || r.Comments != "" {
		t.Errorf("row = %+v", r)
	}
	for _, c := range []struct {
		name, in string
		rows     int
		err      string
	}{
		{"LF only", goodRow + "\n" + goodRow + "\n", 2, ""},
		{"no last line end", goodRow + "\r\n" + goodRow, 2, ""},
		{"blank lines", "\r\n" + goodRow + "\r\n\r\n   \r\n" + goodRow + "\r\n", 2, ""},
		{"BOM", "\ufeff" + goodRow + "\r\n", 1, ""},
		{"empty", "", 0, ""},
		{"only blank lines", "\r\n\r\n", 0, ""},
		{"trailing empty columns", goodRow + ",,\r\n", 1, ""},
		{"empty trap period", strings.Replace(goodRow, "11/30/2026 12:00 AM,11/30/2026 11:59 PM,0", ",,0", 1), 1, ""},
		{"lower-case filter", strings.Replace(goodRow, "GREEN", "red", 1), 1, ""},
		{"IPv6", strings.Replace(goodRow, "192.0.2.25", "2001:db8::25", 1), 1, ""},
		{"13 columns", strings.TrimSuffix(goodRow, ","), 0, "13 columns, want 14"},
		{"cut mid-row", goodRow[:60], 0, "columns, want 14"},
		{"15th column", goodRow + ",note", 0, "column 15"},
		{"bad IP", strings.Replace(goodRow, "192.0.2.25", "192.0.2", 1), 0, "column 1 (IP)"},
		{"bad start", strings.Replace(goodRow, "11/30/2026 12:00 AM", "30/11/2026 00:00", 1), 0, "column 2 (activity start)"},
		{"24h clock", strings.Replace(goodRow, "11:59 PM", "23:59", 1), 0, "column 3 (activity end)"},
		{"end before start", strings.Replace(goodRow, "11/30/2026 11:59 PM", "11/29/2026 11:59 PM", 1), 0, "before it starts"},
		{"negative count", strings.Replace(goodRow, ",412,", ",-412,", 1), 0, "column 4 (RCPT commands)"},
		{"float count", strings.Replace(goodRow, ",410,", ",410.5,", 1), 0, "column 5 (DATA commands)"},
		{"bad filter", strings.Replace(goodRow, "GREEN", "BLUE", 1), 0, "column 7 (filter result)"},
		{"bad rate", strings.Replace(goodRow, "< 0.1%", "0.1", 1), 0, "column 8 (complaint rate)"},
		{"rate over 100", strings.Replace(goodRow, "< 0.1%", "101%", 1), 0, "column 8"},
		{"NaN rate", strings.Replace(goodRow, "< 0.1%", "NaN%", 1), 0, "column 8"},
		{"bad trap hits", strings.Replace(goodRow, "PM,0,", "PM,x,", 1), 0, "column 11 (trap hits)"},
		{"HTML", "\r\n  <html><body>Sign in</body></html>", 0, ErrNotCSV.Error()},
		{"NUL", goodRow + "\x00", 0, "NUL"},
		{"second row bad", goodRow + "\r\n" + "x\r\n", 0, "line 2"},
	} {
		t.Run(c.name, func(t *testing.T) { check(t, c.in, c.rows, c.err) })
	}
	if _, err := ParseData([]byte("<html>")); !errors.Is(err, ErrNotCSV) {
		t.Errorf("HTML: %v, want ErrNotCSV", err)
	}
}

func TestParseIPStatus(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []Range
		err      string
	}{
		{"blocked", "192.0.2.0,192.0.2.255,Yes,Blocked due to user complaints\r\n",
			[]Range{{netip.MustParseAddr("192.0.2.0"), netip.MustParseAddr("192.0.2.255"), true, "Blocked due to user complaints"}}, ""},
		{"reason with commas", "192.0.2.1,192.0.2.1,yes,one, two\n",
			[]Range{{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.1"), true, "one, two"}}, ""},
		{"no reason column", "192.0.2.1,192.0.2.1,No\n",
			[]Range{{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.1"), false, ""}}, ""},
		{"empty", "", []Range{}, ""},
		{"two columns", "192.0.2.1,192.0.2.2\r\n", nil, "2 columns"},
		{"bad blocked", "192.0.2.1,192.0.2.2,Maybe,x\r\n", nil, "column 3 (blocked)"},
		{"bad first", "192.0.2.x,192.0.2.2,Yes,x\r\n", nil, "column 1 (first IP)"},
		{"bad last", "192.0.2.1,,Yes,x\r\n", nil, "column 2 (last IP)"},
		{"reversed", "192.0.2.9,192.0.2.2,Yes,x\r\n", nil, "not a range"},
		{"mixed families", "192.0.2.1,2001:db8::1,Yes,x\r\n", nil, "not a range"},
		{"HTML", "<!DOCTYPE html><html></html>", nil, "HTML page"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseIPStatus([]byte(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(c.want)
			if string(a) != string(b) {
				t.Errorf("got %s, want %s", a, b)
			}
		})
	}
}

func TestRate(t *testing.T) {
	for _, c := range []struct {
		in        string
		want      Rate
		over0_3   bool
		roundTrip string
	}{
		{"< 0.1%", Rate{0.1, true}, false, "< 0.1%"},
		{"<0.1%", Rate{0.1, true}, false, "< 0.1%"},
		{"0.3%", Rate{0.3, false}, false, "0.3%"},
		{"0.5%", Rate{0.5, false}, true, "0.5%"},
		{" 12 % ", Rate{12, false}, true, "12%"},
		{"< 5%", Rate{5, true}, false, "< 5%"},
	} {
		var r Rate
		if err := r.UnmarshalText([]byte(c.in)); err != nil || r != c.want {
			t.Errorf("%q = %+v, %v; want %+v", c.in, r, err, c.want)
			continue
		}
		if r.Over(0.3) != c.over0_3 {
			t.Errorf("%q over 0.3%% = %v", c.in, r.Over(0.3))
		}
		if r.String() != c.roundTrip {
			t.Errorf("%q writes as %q", c.in, r.String())
		}
	}
	if !(Rate{0.1, false}).Worse(Rate{0.1, true}) || (Rate{0.1, true}).Worse(Rate{0.2, false}) {
		t.Error("Worse orders rates wrongly")
	}
}

func TestURLs(t *testing.T) {
	base := "https://sendersupport.olc.protection.outlook.com/snds/"
	u, err := DataURL(base, "a b&c", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || u != base+"data.aspx?date=120126&key=a+b%26c" {
		t.Errorf("DataURL = %q, %v", u, err)
	}
	u, err = DataURL(strings.TrimSuffix(base, "/"), "k", time.Time{})
	if err != nil || u != base+"data.aspx?key=k" {
		t.Errorf("DataURL without a slash or date = %q, %v", u, err)
	}
	u, err = StatusURL(base, "k")
	if err != nil || u != base+"ipStatus.aspx?key=k" {
		t.Errorf("StatusURL = %q, %v", u, err)
	}
	if _, err := StatusURL("ftp://x/", "k"); err == nil {
		t.Error("ftp base accepted")
	}
}

// FuzzParseData: no input panics, and what parses writes back as rows
// that parse alike.
func FuzzParseData(f *testing.F) {
	for _, path := range samples(f) {
		if strings.HasPrefix(filepath.Base(path), "data-") {
			b, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := ParseData(b)
		if err != nil {
			return
		}
		for _, r := range rows {
			if !r.IP.IsValid() || r.RCPT < 0 || r.DATA < 0 || r.Recipients < 0 || r.TrapHits < 0 ||
				r.Complaints.Percent < 0 || r.Complaints.Percent > 100 || r.ActivityEnd.Before(r.ActivityStart) || r.Filter > Red {
				t.Fatalf("parsed an impossible row %+v from %q", r, b)
			}
		}
		a := Assess(Config{ComplaintThreshold: 0.3}, Import{Data: rows})
		if a.Green+a.Yellow+a.Red != len(rows) {
			t.Fatalf("assessment counts %d rows of %d", a.Green+a.Yellow+a.Red, len(rows))
		}
	})
}

// FuzzParseIPStatus: no input panics, and every range parsed is ordered.
func FuzzParseIPStatus(f *testing.F) {
	for _, path := range samples(f) {
		if strings.HasPrefix(filepath.Base(path), "status-") {
			b, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ranges, err := ParseIPStatus(b)
		if err != nil {
			return
		}
		for _, r := range ranges {
			if r.Last.Less(r.First) || r.First.BitLen() != r.Last.BitLen() || !r.Contains(r.First) || !r.Contains(r.Last) {
				t.Fatalf("parsed a bad range %+v from %q", r, b)
			}
		}
	})
}
