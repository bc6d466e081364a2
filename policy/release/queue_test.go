package release

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite the golden .json files in testdata/postqueue")

const testdataDir = "../../testdata/postqueue"

// golden is what testdata/postqueue/NAME.json holds for NAME.jsonl.
type golden struct {
	Messages []Message   `json:"messages"`
	Skipped  []LineError `json:"skipped"`
}

func TestParseQueueGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(testdataDir, "*.jsonl"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no samples in %s: %v", testdataDir, err)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			msgs, bad, err := ParseQueue(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			// One byte at a time reads the same.
			msgs1, bad1, err := ParseQueue(iotest.OneByteReader(bytes.NewReader(data)))
			if err != nil {
				t.Fatal(err)
			}
			got := marshal(t, golden{msgs, bad})
			if again := marshal(t, golden{msgs1, bad1}); !bytes.Equal(got, again) {
				t.Errorf("read byte by byte:\n%s\nwhole:\n%s", again, got)
			}
			goldenPath := strings.TrimSuffix(path, ".jsonl") + ".json"
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
				t.Errorf("ParseQueue(%s) differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s",
					filepath.Base(path), filepath.Base(goldenPath), got, want)
			}
		})
	}
}

func marshal(t *testing.T, g golden) []byte {
	t.Helper()
	if g.Messages == nil {
		g.Messages = []Message{}
	}
	if g.Skipped == nil {
		g.Skipped = []LineError{}
	}
	b, err := json.MarshalIndent(g, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// The samples' outcomes, pinned so that -update cannot quietly turn a
// message into a skipped line.
func TestParseQueueOutcomes(t *testing.T) {
	for name, want := range map[string][2]int{
		"postfix-3.7": {5, 0}, "short-ids": {2, 0}, "newer-fields": {2, 0},
		"crlf-no-final-newline": {2, 0}, "broken-lines": {2, 12}, "empty": {0, 0},
	} {
		data, err := os.ReadFile(filepath.Join(testdataDir, name+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		msgs, bad, err := ParseQueue(bytes.NewReader(data))
		if err != nil || len(msgs) != want[0] || len(bad) != want[1] {
			t.Errorf("%s: %d messages, %d skipped (%v), want %d and %d", name, len(msgs), len(bad), err, want[0], want[1])
		}
	}
}

func TestParseQueueLongLine(t *testing.T) {
	long := `{"queue_name": "hold", "queue_id": "4QnLong", "arrival_time": 1, "recipients": [` +
		strings.Repeat(`{"address": "a@outlook.com"},`, MaxLine/28) + `{"address": "b@outlook.com"}]}`
	good := `{"queue_name": "hold", "queue_id": "4QnNext", "arrival_time": 2, "recipients": []}`
	msgs, bad, err := ParseQueue(strings.NewReader(long + "\n" + good + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ID != "4QnNext" || len(bad) != 1 || bad[0].Line != 1 {
		t.Errorf("messages %v, skipped %v; want the second line only, the first skipped", msgs, bad)
	}
}

func TestParseQueueReadError(t *testing.T) {
	_, _, err := ParseQueue(iotest.TimeoutReader(strings.NewReader(`{"queue_name": "hold"` + strings.Repeat(" ", 70000))))
	if err == nil {
		t.Fatal("a failed read was not reported")
	}
}

func TestHeld(t *testing.T) {
	got := Held([]Message{{ID: "a", Queue: "hold"}, {ID: "b", Queue: "deferred"}, {ID: "c", Queue: "hold"}})
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "c" {
		t.Errorf("Held = %v", got)
	}
}

// FuzzParseQueue: any input parses without panic; every message it keeps
// has a queue id safe to hand to postsuper, a queue name and a unique id,
// and parsing the kept messages again, as Postfix would print them, keeps
// them unchanged.
func FuzzParseQueue(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(testdataDir, "*.jsonl"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, bad, err := ParseQueue(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range msgs {
			if !validID(m.ID) || m.Queue == "" || seen[m.ID] {
				t.Fatalf("kept %+v", m)
			}
			seen[m.ID] = true
		}
		for _, e := range bad {
			if e.Line < 1 || e.Err == "" {
				t.Fatalf("skipped line reported as %+v", e)
			}
		}
		var again bytes.Buffer
		for _, m := range msgs {
			line := map[string]any{"queue_name": m.Queue, "queue_id": m.ID, "arrival_time": m.Arrival.Unix(),
				"message_size": m.Size, "sender": m.Sender, "recipients": m.Recipients}
			b, _ := json.Marshal(line)
			again.Write(append(b, '\n'))
		}
		msgs2, bad2, _ := ParseQueue(&again)
		if len(bad2) != 0 || len(msgs2) != len(msgs) {
			t.Fatalf("re-parsing %d kept messages: %d, skipped %v", len(msgs), len(msgs2), bad2)
		}
		for i := range msgs {
			a, _ := json.Marshal(msgs[i])
			b, _ := json.Marshal(msgs2[i])
			if !bytes.Equal(a, b) {
				t.Fatalf("re-parsed\n%s\nas\n%s", a, b)
			}
		}
	})
}
