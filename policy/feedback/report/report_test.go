package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite the golden .json files in testdata/reports")

const testdataDir = "../../../testdata/reports"

// golden is what a testdata/reports/NAME.json holds: the Report, or the
// error for inputs that are not one.
type golden struct {
	*Report
	Error string `json:"error,omitempty"`
}

func TestGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(testdataDir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no samples in %s", testdataDir)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Parse(bytes.NewReader(data))
			g := golden{Report: rep}
			if err != nil {
				g.Error = err.Error()
			}
			got, err := json.MarshalIndent(g, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			goldenPath := strings.TrimSuffix(path, ".eml") + ".json"
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Parse(%s) differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", filepath.Base(path), filepath.Base(goldenPath), got, want)
			}
		})
	}
}

// TestGoldenOutcomes pins the kind of result for every sample, so that
// running -update cannot silently turn a complaint into an error.
func TestGoldenOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		format    Format
		complaint bool
		err       error
	}{
		{"jmrp-old-style", FormatJMRP, true, nil},
		{"jmrp-new-style", FormatJMRP, true, nil},
		{"jmrp-with-stamp", FormatJMRP, true, nil},
		{"jmrp-stamp-stripped", FormatJMRP, true, nil},
		{"truncated", FormatJMRP, true, nil},
		{"arf-rfc822", FormatARF, true, nil},
		{"arf-headers-only", FormatARF, true, nil},
		{"arf-redacted-rcpt", FormatARF, true, nil},
		{"arf-microsoft", FormatARF, true, nil},
		{"arf-auth-failure", FormatARF, false, nil},
		{"dsn", "", false, ErrNotReport},
		{"plain", "", false, ErrNotReport},
		{"autoreply", "", false, ErrNotReport},
		{"garbage", "", false, ErrUnparseable},
		{"empty", "", false, ErrUnparseable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := parseFile(t, filepath.Join(testdataDir, tt.name+".eml"))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Parse = %+v, %v; want %v", rep, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if rep.Format != tt.format || rep.Complaint != tt.complaint {
				t.Errorf("got %s complaint=%v, want %s complaint=%v", rep.Format, rep.Complaint, tt.format, tt.complaint)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	full, err := parseFile(t, filepath.Join(testdataDir, "jmrp-with-stamp.eml"))
	if err != nil {
		t.Fatal(err)
	}
	cut, err := parseFile(t, filepath.Join(testdataDir, "truncated.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if full.Truncated || !cut.Truncated {
		t.Errorf("Truncated: full %v, cut %v; want false, true", full.Truncated, cut.Truncated)
	}
	// The cut falls inside the stamp line: a partial stamp must not be
	// reported, everything before it must.
	if len(full.Stamps) != 1 || len(cut.Stamps) != 0 {
		t.Errorf("Stamps: full %q, cut %q", full.Stamps, cut.Stamps)
	}
	if cut.MessageID != full.MessageID || strings.Join(cut.QueueIDs, ",") != strings.Join(full.QueueIDs, ",") {
		t.Errorf("cut report lost fields before the cut: %+v", cut)
	}
}

func TestID(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdataDir, "jmrp-with-stamp.eml"))
	if err != nil {
		t.Fatal(err)
	}
	withoutMID := deleteLine(t, data, "Message-ID: <BAY0-XMR-027")
	// A second user's complaint about the same original: Microsoft writes
	// the same original with another recipient, reporter and GUID.
	other := strings.NewReplacer(
		"jo.smith@hotmail.com", "max.power@hotmail.com",
		"X-Reporter-IP: 192.0.2.201", "X-Reporter-IP: 192.0.2.202",
		"9a4c2e71-c25f", "0f3d8b52-c260",
		"BAY0-XMR-027Zp4qLm000a1b2c3", "BAY0-XMR-027Zp4qLm000a1b2d9",
	)
	redelivered := func(b []byte) []byte {
		return append([]byte("Delivered-To: fbl-archive@example.org\nReceived: from mx.example.org by archive.example.org with LMTP; Tue, 14 Mar 2023 09:30:00 +0000\n"), b...)
	}
	crlf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }

	id := func(b []byte) string {
		t.Helper()
		rep, err := Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.ID) != 64 {
			t.Fatalf("ID %q is not hex SHA-256", rep.ID)
		}
		return rep.ID
	}
	tests := []struct {
		name string
		a, b []byte
		same bool
	}{
		{"same bytes twice", data, bytes.Clone(data), true},
		{"redelivered with more trace fields", data, redelivered(data), true},
		{"no Message-ID: same bytes twice", withoutMID, bytes.Clone(withoutMID), true},
		{"no Message-ID: redelivered", withoutMID, redelivered(withoutMID), true},
		{"no Message-ID: CRLF and LF", withoutMID, crlf(withoutMID), true},
		{"two users, same original", data, []byte(other.Replace(string(data))), false},
		{"no Message-ID: two users, same original", withoutMID, []byte(other.Replace(string(withoutMID))), false},
		{"Message-ID and content identities differ", data, withoutMID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := id(tt.a), id(tt.b)
			if (a == b) != tt.same {
				t.Errorf("IDs %s and %s: same=%v, want %v", a, b, a == b, tt.same)
			}
		})
	}

	// The two users' reports are about one message: everything else agrees.
	r1, _ := Parse(bytes.NewReader(data))
	r2, _ := Parse(strings.NewReader(other.Replace(string(data))))
	if r1.MessageID != r2.MessageID || r1.Stamps[0] != r2.Stamps[0] || r1.OriginalRcpt == r2.OriginalRcpt {
		t.Errorf("two complaints: %+v and %+v", r1, r2)
	}
}

func deleteLine(t *testing.T, data []byte, prefix string) []byte {
	t.Helper()
	i := bytes.Index(data, []byte(prefix))
	if i < 0 {
		t.Fatalf("no line %q", prefix)
	}
	j := bytes.IndexByte(data[i:], '\n')
	return append(bytes.Clone(data[:i]), data[i+j+1:]...)
}

// arf builds a feedback report around the given feedback-report fields.
func arf(feedback string) string {
	return "From: fbl@provider.example.net\n" +
		"Subject: Abuse report\n" +
		"Message-ID: <r1@provider.example.net>\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=b1\n" +
		"\n" +
		"--b1\nContent-Type: text/plain\n\nAn abuse report.\n" +
		"--b1\nContent-Type: message/feedback-report\n\n" + feedback + "\n" +
		"--b1\nContent-Type: text/rfc822-headers\n\n" +
		"Message-ID: <m1@example.org>\nX-Msgate-Ref: v1.test\n" +
		"--b1--\n"
}

const jmrpHead = "From: staff@hotmail.com\n" +
	"Subject: complaint about message from 192.0.2.25\n" +
	"Message-ID: <r2@hotmail.example>\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: multipart/mixed; boundary=\"b2\"\n" +
	"\n"

func TestParseCases(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		err   error // when set, the sentinel Parse must return
		check func(*Report) bool
	}{
		{name: "header cut", in: "From: staff@hotmail.com\nSubject: compl", err: ErrUnparseable},
		{name: "only white space", in: " \r\n\t\n", err: ErrUnparseable},
		{name: "text, not a mail", in: "hello world\nthis is not mail\n", err: ErrUnparseable},
		{name: "empty header", in: "\n\nbody\n", err: ErrUnparseable},
		{name: "JMRP subject, not multipart", in: "From: staff@hotmail.com\nSubject: complaint about message from 192.0.2.1\n\nhello\n", err: ErrUnparseable},
		{name: "JMRP subject, multipart without boundary", in: "From: staff@hotmail.com\nSubject: complaint about message from 192.0.2.1\nContent-Type: multipart/mixed\n\nhello\n", err: ErrUnparseable},
		{name: "JMRP without the original", in: jmrpHead + "--b2\nContent-Type: text/plain\n\nnothing attached\n--b2--\n", err: ErrUnparseable},
		{
			name: "JMRP cut before the original",
			in:   jmrpHead + "--b2\nContent-Type: message/rf",
			check: func(r *Report) bool {
				return r.Format == FormatJMRP && r.Truncated && r.SourceIP == "192.0.2.25" && r.MessageID == ""
			},
		},
		{
			name: "JMRP original without closing boundary",
			in:   jmrpHead + "--b2\nContent-Type: message/rfc822\n\nX-HmXmrOriginalRecipient: a@hotmail.example\nMessage-ID: <m2@example.org>\n\nbody\n",
			check: func(r *Report) bool {
				return !r.Truncated && r.MessageID == "m2@example.org" && r.OriginalRcpt == "a@hotmail.example"
			},
		},
		{
			name: "JMRP known by its original alone",
			in: strings.Replace(jmrpHead, "complaint about message from 192.0.2.25", "(no subject)", 1) +
				"--b2\nContent-Type: message/rfc822\n\nX-HmXmrOriginalRecipient: a@hotmail.example\nX-Msgate-Ref:  v1.one \nX-MSGATE-REF: v1.two\nX-Msgate-Ref:\n\nbody\n--b2--\n",
			check: func(r *Report) bool {
				return r.Format == FormatJMRP && r.SourceIP == "" && strings.Join(r.Stamps, ",") == "v1.one,v1.two"
			},
		},
		{
			name:  "JMRP subject with masked IP",
			in:    strings.Replace(jmrpHead, "192.0.2.25", "192.0.2.xxx", 1) + "--b2\nContent-Type: message/rfc822\n\nMessage-ID: <m@x>\n\n--b2--\n",
			check: func(r *Report) bool { return r.Format == FormatJMRP && r.SourceIP == "" },
		},
		{
			name:  "mbox From_ line before the report",
			in:    "From staff@hotmail.com Thu Dec 30 10:37:16 2010\n" + jmrpHead + "--b2\nContent-Type: message/rfc822\n\nFrom sender@example.org Thu Dec 30 10:00:00 2010\nMessage-ID: <m3@example.org>\n\n--b2--\n",
			check: func(r *Report) bool { return r.Format == FormatJMRP && r.MessageID == "m3@example.org" },
		},
		{name: "multipart/report, read receipt", in: "From: a@example.org\nContent-Type: multipart/report; report-type=disposition-notification; boundary=x\n\n--x--\n", err: ErrNotReport},
		{name: "multipart/mixed, nothing attached", in: "From: a@example.org\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\nhi\n--x--\n", err: ErrNotReport},
		{name: "ARF without Feedback-Type", in: arf("User-Agent: x/1\nVersion: 1\n"), err: ErrUnparseable},
		{name: "ARF without its feedback part", in: strings.Replace(arf(""), "message/feedback-report", "text/plain", 1), err: ErrUnparseable},
		{
			name: "ARF abuse",
			in:   arf("Feedback-Type: Abuse\nVersion: 1\nSource-IP: [2001:db8::25]\nOriginal-Rcpt-To: <u@provider.example.net>\nArrival-Date: Thu, 18 Feb 2010 03:21:50 PST\n"),
			check: func(r *Report) bool {
				return r.Format == FormatARF && r.FeedbackType == "abuse" && r.Complaint && r.SourceIP == "2001:db8::25" &&
					r.OriginalRcpt == "u@provider.example.net" && r.Arrival.Format("15:04") == "11:21" &&
					r.MessageID == "m1@example.org" && r.Stamps[0] == "v1.test" && r.Reporter == "fbl@provider.example.net"
			},
		},
		{name: "ARF fraud", in: arf("Feedback-Type: fraud\n"), check: func(r *Report) bool { return r.Complaint }},
		{name: "ARF virus", in: arf("Feedback-Type: virus\n"), check: func(r *Report) bool { return r.Complaint }},
		{name: "ARF other", in: arf("Feedback-Type: other\n"), check: func(r *Report) bool { return r.Complaint }},
		{name: "ARF not-spam", in: arf("Feedback-Type: not-spam\n"), check: func(r *Report) bool { return !r.Complaint && r.FeedbackType == "not-spam" }},
		{name: "ARF auth-failure", in: arf("Feedback-Type: auth-failure\nAuth-Failure: dkim\n"), check: func(r *Report) bool { return !r.Complaint }},
		{name: "ARF unknown type", in: arf("Feedback-Type: opt-out\n"), check: func(r *Report) bool { return !r.Complaint && r.FeedbackType == "opt-out" }},
		{
			name: "ARF feedback part in base64",
			in: strings.Replace(arf("@"), "message/feedback-report\n\n@",
				"message/feedback-report\nContent-Transfer-Encoding: base64\n\nRmVlZGJhY2stVHlwZTogYWJ1c2UKU291cmNlLUlQOiAxOTIuMC4yLjkK", 1),
			check: func(r *Report) bool { return r.FeedbackType == "abuse" && r.SourceIP == "192.0.2.9" },
		},
		{
			name:  "ARF headers part in an unknown charset",
			in:    strings.Replace(arf("Feedback-Type: abuse\n"), "text/rfc822-headers", "text/rfc822-headers; charset=x-no-such-charset", 1),
			check: func(r *Report) bool { return r.MessageID == "m1@example.org" },
		},
		{
			name:  "ARF inside multipart/mixed",
			in:    strings.Replace(arf("Feedback-Type: abuse\n"), "multipart/report; report-type=feedback-report;", "multipart/mixed;", 1),
			check: func(r *Report) bool { return r.Format == FormatARF },
		},
		{
			name:  "ARF with a malformed Content-Type",
			in:    strings.Replace(arf("Feedback-Type: abuse\n"), "boundary=b1", "boundary=b1; boundary=b1; report-type=x", 1),
			check: func(r *Report) bool { return r.Format == FormatARF },
		},
		{
			name:  "ARF cut in the feedback part",
			in:    arf("Feedback-Type: abuse\nSource-IP: 192.0.2.1")[:strings.Index(arf("Feedback-Type: abuse\nSource-IP: 192.0.2.1"), "192.0.2.1")+7],
			check: func(r *Report) bool { return r.Truncated && r.SourceIP == "" && r.FeedbackType == "abuse" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Parse(strings.NewReader(tt.in))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Parse = %+v, %v; want %v", rep, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !tt.check(rep) {
				js, _ := json.Marshal(rep)
				t.Errorf("unexpected report: %s", js)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	big := io.MultiReader(strings.NewReader(jmrpHead), bytes.NewReader(make([]byte, MaxSize)))
	_, err := Parse(big)
	if !errors.Is(err, ErrUnparseable) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("Parse = %v; want ErrUnparseable, too large", err)
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := Parse(iotest.ErrReader(boom))
	if !errors.Is(err, boom) || errors.Is(err, ErrUnparseable) || errors.Is(err, ErrNotReport) {
		t.Fatalf("Parse = %v; want the read error, no sentinel", err)
	}
}

// TestParseLargeHostile feeds inputs just under MaxSize built to make a
// careless parser quadratic: one field folded over a million lines, and
// hundreds of thousands of Postfix Received fields. Each must parse in
// linear time (the test would run for hours otherwise).
func TestParseLargeHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("large inputs")
	}
	original := jmrpHead + "--b2\nContent-Type: message/rfc822\n\nX-HmXmrOriginalRecipient: a@hotmail.example\n"
	fill := func(line string) string {
		n := (MaxSize - len(original) - 100) / len(line)
		return original + strings.Repeat(line, n) + "Message-ID: <m@example.org>\n\n--b2--\n"
	}
	tests := []struct {
		name string
		in   string
		want func(*Report) bool
	}{
		{"folded field", fill(" x\n"), func(r *Report) bool { return r.MessageID == "m@example.org" }},
		{"Received fields", fill("Received: by h (Postfix) id 4Xyz123abc; x\n"), func(r *Report) bool { return len(r.QueueIDs) == 1 }},
		{"stamps", fill("X-Msgate-Ref: v1.x\n"), func(r *Report) bool { return len(r.Stamps) > 100000 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(rep) {
				t.Errorf("MessageID %q, %d queue ids, %d stamps", rep.MessageID, len(rep.QueueIDs), len(rep.Stamps))
			}
		})
	}
}
