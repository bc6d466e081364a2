package report

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, that it returns either
// a sensible Report or one of its two sentinel errors, and that it is
// deterministic. Seeds are the project's own samples.
func FuzzParse(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join(testdataDir, "*.eml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Parse(bytes.NewReader(data))
		if err != nil {
			if rep != nil {
				t.Fatalf("Parse returned both %+v and %v", rep, err)
			}
			if !errors.Is(err, ErrNotReport) && !errors.Is(err, ErrUnparseable) {
				t.Fatalf("Parse error %v is neither ErrNotReport nor ErrUnparseable", err)
			}
			return
		}
		if rep.Format != FormatJMRP && rep.Format != FormatARF {
			t.Fatalf("Format %q", rep.Format)
		}
		if rep.FeedbackType == "" || len(rep.ID) != 64 {
			t.Fatalf("FeedbackType %q, ID %q", rep.FeedbackType, rep.ID)
		}
		again, err := Parse(bytes.NewReader(data))
		if err != nil || again.ID != rep.ID {
			t.Fatalf("second Parse: %v, ID %s != %s", err, again.ID, rep.ID)
		}
	})
}
