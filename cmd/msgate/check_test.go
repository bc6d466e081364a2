package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every broken config in testdata/config/invalid makes `msgate check` exit 2
// and print exactly the problems in its golden .err file.
func TestCheckInvalidConfigs(t *testing.T) {
	files, err := filepath.Glob("../../testdata/config/invalid/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid configs found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".toml") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{"check", "-config", f}, &stdout, &stderr); code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
			got := strings.ReplaceAll(stderr.String(), f, filepath.Base(f))
			if !strings.HasPrefix(got, string(want)) {
				t.Errorf("check printed:\n%s\nwant it to start with:\n%s", got, want)
			}
		})
	}
}

func TestCheckValidConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/config/valid/*.toml")
	files = append(files, "../../contrib/msgate.toml")
	for _, f := range files {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"check", "-config", f}, &stdout, &stderr); code != exitOK {
			t.Errorf("%s: exit %d: %s", f, code, stderr.String())
		} else if !strings.Contains(stdout.String(), "valid") {
			t.Errorf("%s: printed %q", f, stdout.String())
		}
	}
}

func TestCheckMissingFile(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-config", filepath.Join(t.TempDir(), "nope.toml")}, &stdout, &stderr); code != exitUsage {
		t.Fatalf("exit %d for a missing file", code)
	}
	if !strings.Contains(stderr.String(), "nope.toml") {
		t.Errorf("message does not name the file: %q", stderr.String())
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(nil, &stdout, &stderr); code != exitUsage {
		t.Errorf("no command: exit %d", code)
	}
	if code := run([]string{"frobnicate"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
	if code := run([]string{"try"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("try without -rcpt: exit %d", code)
	}
}
