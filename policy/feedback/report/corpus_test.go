package report

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// corpusDir is the shared corpus of reports published by other projects,
// kept next to the repository and not in it (see its README). A clone
// without it skips these tests.
const corpusDir = "../../../../shared/corpus"

func corpusFiles(t *testing.T, sub string) []string {
	t.Helper()
	dir := filepath.Join(corpusDir, sub)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("no corpus at %s", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		t.Skipf("no files in %s", dir)
	}
	return files
}

func parseFile(t *testing.T, path string) (*Report, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Parse(f)
}

// TestCorpusComplaints checks that every real report in the corpus is
// recognised with the right format and feedback type. Files the table does
// not know must still parse as the format of their folder.
func TestCorpusComplaints(t *testing.T) {
	type want struct {
		format       Format
		feedbackType string
		complaint    bool
		// A few fields checked where the sample has them, so that a parse
		// that finds the right kind but reads the wrong part fails.
		messageID string
		sourceIP  string
	}
	jmrp := want{format: FormatJMRP, feedbackType: "abuse", complaint: true}
	abuse := want{format: FormatARF, feedbackType: "abuse", complaint: true}
	with := func(w want, messageID, sourceIP string) want {
		w.messageID, w.sourceIP = messageID, sourceIP
		return w
	}
	wants := map[string]want{
		"jmrp/cfortune-fbl-hotmail.txt": with(jmrp, "WEBfb154d7a03bb483591c696782382d12e@WEB", "24.64.1.1"),
		// Named a bounce by its publisher, but it is a JMRP complaint whose
		// Subject masks the IP ("74.200.17.xxx") and whose multipart ends
		// with a delimiter instead of the closing one.
		"jmrp/cfortune-hotmailbounce.txt":        with(jmrp, "WEB7-Qf2039815c40c40a0b68b37831d7c711c@web7-q", ""),
		"jmrp/p5sisimai-arf-13-hotmail-2015.eml": with(jmrp, "d4cb0d6593464552a34f4429b3e7f92f@example.com", "123.123.123.123"),
		"jmrp/simplelogin-hotmail_complaint.eml": with(jmrp, "10627474.1041327707.1652070638478.JavaMail.cloud@p2-mta-0301.p2.messagegears.net", "176.119.200.162"),
		"jmrp/sisimai-arf-22.eml":                with(jmrp, "0000000000fffffffff0000000000000@example.com", "192.0.2.222"),
		"jmrp/sisimai-arf-23.eml":                with(jmrp, "0000000000fffffffff0000000000000@example.com", "192.0.2.222"),

		"arf/simplelogin-yahoo_complaint.eml": with(abuse, "CAKGh96GHg2kuwvm4biQ-PF-4-8SPZ6JyPj-=GpoYZ6njctoRtg@mail.gmail.com", ""),
		"arf/sisimai-arf-02.eml":              with(abuse, "000000000000000000000000.smtp@example.com", ""),
		"arf/sisimai-arf-14.eml":              with(abuse, "2222222222222222-00000000-eeee-eeee-ffff-222222222222-111111@email.amazonses.com", ""),
		"arf/sisimai-arf-15.eml":              with(abuse, "ffffffffffffffffffffffff00000000@example.net", "192.0.2.222"),
		"arf/sisimai-arf-21.eml":              with(abuse, "00000000000000000000000022222222@example.net", "198.51.100.224"),
		"arf/sisimai-arf-25.eml":              with(abuse, "", "10.0.0.1"),
		"arf/sisimai-arf-18.eml": {format: FormatARF, feedbackType: "auth-failure", complaint: false,
			messageID: "000000002.2222222.1500000000022@example.net", sourceIP: "192.0.2.222"},
		"arf/mailio-aol-scomp-rfc822.eml": with(abuse, "1283450583.6569568232097351@mf12.sendgrid.net", "74.63.231.149"),
		"arf/cfortune-fbl-aol.txt":        with(abuse, "WEB8e6e5512333834e5792b28af4d88dc308@web", "24.64.1.1"),
		"arf/cfortune-arf5.txt":           with(abuse, "c257bb9c3f3743e436553b80d052b918@localhost.localdomain", "72.55.174.206"),
		"arf/cfortune-fbl-comcast.txt":    with(abuse, "WEB984880f6664cc4cfcb65239d134bfd9c7@web9", "24.64.1.1"),
		"arf/cfortune-fbl-yahoo.txt":      with(abuse, "WEB8daf12e7d45340df91f4dc4d66fb19f7@web8", ""),
		"arf/cfortune-arf4.txt":           with(abuse, "1433209315.1266492173961.JavaMail.root@www.ganeshaspeaks.com", ""),
	}
	for _, sub := range []string{"jmrp", "arf"} {
		for _, path := range corpusFiles(t, sub) {
			name := sub + "/" + filepath.Base(path)
			t.Run(name, func(t *testing.T) {
				rep, err := parseFile(t, path)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				js, _ := json.Marshal(rep)
				t.Logf("%s", js)
				w, known := wants[name]
				if !known {
					w = abuse
					if sub == "jmrp" {
						w = jmrp
					}
				}
				if rep.Format != w.format || rep.FeedbackType != w.feedbackType || rep.Complaint != w.complaint {
					t.Errorf("got %s/%s complaint=%v, want %s/%s complaint=%v",
						rep.Format, rep.FeedbackType, rep.Complaint, w.format, w.feedbackType, w.complaint)
				}
				if known && (rep.MessageID != w.messageID || rep.SourceIP != w.sourceIP) {
					t.Errorf("got MessageID %q SourceIP %q, want %q %q", rep.MessageID, rep.SourceIP, w.messageID, w.sourceIP)
				}
				if rep.Truncated {
					t.Errorf("Truncated: the corpus has no truncated report")
				}
				if rep.ID == "" {
					t.Error("empty ID")
				}
			})
		}
	}
}

// TestCorpusDSN checks that bounces, including Microsoft's own, are not
// taken for complaints.
func TestCorpusDSN(t *testing.T) {
	for _, path := range corpusFiles(t, "dsn") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			rep, err := parseFile(t, path)
			if !errors.Is(err, ErrNotReport) {
				t.Fatalf("Parse = %+v, %v; want ErrNotReport", rep, err)
			}
			t.Log(err)
		})
	}
}
