package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/config"
)

// fakePostfix is a postqueue that lists a canned queue and a postsuper
// that records the ids it releases and fails for one.
type fakePostfix struct {
	dir, queue, log string
}

func newFakePostfix(t *testing.T, queue string, failID string) *fakePostfix {
	t.Helper()
	f := &fakePostfix{dir: t.TempDir()}
	f.queue, f.log = filepath.Join(f.dir, "queue.jsonl"), filepath.Join(f.dir, "calls.log")
	if err := os.WriteFile(f.queue, []byte(queue), 0o644); err != nil {
		t.Fatal(err)
	}
	postqueue := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = -j ]; then cat %q; else echo postqueue \"$@\" >>%q; fi\n", f.queue, f.log)
	postsuper := fmt.Sprintf(`#!/bin/sh
echo postsuper "$@" >>%q
if [ "$2" = %q ]; then echo "postsuper: fatal: queue file $2: Permission denied" >&2; exit 1; fi
echo "postsuper: Released from hold: 1 message" >&2
`, f.log, failID)
	for name, script := range map[string]string{"postqueue": postqueue, "postsuper": postsuper} {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fakePostfix) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(f.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// use puts the fake in the running daemon's configuration, with more of
// [release] set by edit (writeConfig writes no [release]).
func (f *fakePostfix) use(a *adminDaemon, edit func(*config.Release)) {
	useRelease(a, func(r *config.Release) {
		r.Postqueue = []string{filepath.Join(f.dir, "postqueue")}
		if edit != nil {
			edit(r)
		}
	}, []string{filepath.Join(f.dir, "postsuper")})
}

func useRelease(a *adminDaemon, edit func(*config.Release), postsuper []string) {
	cfg := *a.d.cfg.Load()
	edit(&cfg.Release)
	if postsuper != nil {
		cfg.Replies.Release = postsuper
	}
	a.d.cfg.Store(&cfg)
}

// heldLine is a postqueue -j line of a held message, arrived at minute
// min after 2026-12-03 08:00 UTC.
func heldLine(id, sender string, min int, rcpts ...string) string {
	var rs []map[string]string
	for _, r := range rcpts {
		rs = append(rs, map[string]string{"address": r})
	}
	b, _ := json.Marshal(map[string]any{"queue_name": "hold", "queue_id": id, "arrival_time": 1764748800 + 60*min,
		"message_size": 500, "forced_expire": false, "sender": sender, "recipients": rs})
	return string(b) + "\n"
}

func TestReleaseCommand(t *testing.T) {
	queue := heldLine("4A1", "alice@test.local", 0, "a1@outlook.com") +
		heldLine("4A2", "alice@test.local", 1, "a2@outlook.com", "A2@Outlook.com", "x@example.net") +
		heldLine("4B1", "bob@test.local", 2, "b1@hotmail.com", "b2@outlook.com") +
		heldLine("4C1", "carol@test.local", 3, "c1@outlook.com") +
		heldLine("4F1", "mallory@test.local", 4, "f1@outlook.com") +
		heldLine("4N1", "alice@test.local", 5, "n@example.net") +
		`{"queue_name": "deferred", "queue_id": "4D1", "arrival_time": 1764748800, "sender": "alice@test.local", "recipients": [{"address": "d@outlook.com"}]}` + "\n" +
		"this line is broken\n" +
		heldLine("4A3", "alice@test.local", 6, "a3@outlook.com")
	fake := newFakePostfix(t, queue, "4C1")
	a := startAdminDaemon(t, func(cfg *config.Config) {
		cfg.Mitigation.Enabled, cfg.Mitigation.DailyCap, cfg.Mitigation.Action = true, 10, "hold"
	})
	fake.use(a, func(r *config.Release) { r.LeaveRoom = 2 })
	ctx, now := context.Background(), time.Now()
	// Carol's message was sent by the SASL login "carol-login": msgate's
	// record of the queue id says so.
	if err := a.d.store.Remember(ctx, "4C1", "carol-login", now); err != nil {
		t.Fatal(err)
	}
	if _, err := a.d.engine.Flag(ctx, "mallory@test.local", policy.RuleDefer, "test", now); err != nil {
		t.Fatal(err)
	}
	// 3 of the cap's 10 are used: room 7, less leave_room 2 = 5.
	adm, err := a.d.engine.AdmitHeld(ctx, "someone", 3, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.d.engine.CommitHeld(ctx, &adm, now); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"release", "-config", a.configPath, "-dry-run", "-json"}, &out, &errOut); code != exitOK {
		t.Fatalf("dry run: exit %d\n%s", code, errOut.String())
	}
	if calls := fake.calls(t); len(calls) != 0 {
		t.Errorf("a dry run ran %v", calls)
	}
	if !strings.Contains(errOut.String(), "line 8") {
		t.Errorf("the broken line was not reported: %q", errOut.String())
	}
	var steps []admin.ReleaseStep
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var s admin.ReleaseStep
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		steps = append(steps, s)
	}
	// Room 5: alice's 4A1 (1), bob's 4B1 (2), carol's 4C1 (1), alice's
	// 4A2 (1, its duplicate recipient counted once); 4A3 finds no room,
	// mallory is flagged, 4N1 has no Microsoft recipient.
	want := []string{"4A1 would_release 1 alice@test.local", "4B1 would_release 2 bob@test.local", "4C1 would_release 1 carol-login",
		"4A2 would_release 1 alice@test.local", "4F1 held 1 mallory@test.local flagged", "4A3 held 1 alice@test.local cap_full"}
	var got []string
	for _, s := range steps {
		g := fmt.Sprintf("%s %s %d %s", s.ID, s.Outcome, s.Units, s.Account)
		if s.Reason != "" {
			g += " " + string(s.Reason)
		}
		got = append(got, g)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The release: postsuper fails for 4C1, whose unit is given back.
	out.Reset()
	errOut.Reset()
	code := run([]string{"release", "-config", a.configPath}, &out, &errOut)
	if code != exitFailure || !strings.Contains(errOut.String(), "1 message(s) could not be released") {
		t.Errorf("release with a failing postsuper: exit %d, %q", code, errOut.String())
	}
	wantCalls := []string{"postsuper -H 4A1", "postsuper -H 4B1", "postsuper -H 4C1", "postsuper -H 4A2",
		"postqueue -i 4A1", "postqueue -i 4B1", "postqueue -i 4A2"}
	if got := fake.calls(t); strings.Join(got, "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	for _, s := range []string{"4C1", "failed", "Permission denied", "4A2", "released"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the table does not say %q:\n%s", s, out.String())
		}
	}
	u, err := a.d.store.Usage(ctx, policy.CapKey, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if u.Committed != 3+4 || u.Reserved != 0 {
		t.Errorf("cap use %+v, want 7 committed (3 before, 4 released) and nothing reserved", u)
	}
	if st, _ := a.d.store.Usage(ctx, "rate/hourly/alice@test.local", time.Hour, time.Now()); st.Committed != 2 {
		t.Errorf("alice's hourly rule counts %d, want her 2 released units", st.Committed)
	}
}

func TestReleaseErrors(t *testing.T) {
	t.Run("daemon not running", func(t *testing.T) {
		cfg := config.Default()
		cfg.Admin.Listen = "unix:" + filepath.Join(t.TempDir(), "none.sock")
		path := filepath.Join(t.TempDir(), "msgate.toml")
		writeConfig(t, path, cfg)
		var out, errOut bytes.Buffer
		if code := run([]string{"release", "-config", path, "-dry-run"}, &out, &errOut); code != exitTempFail ||
			!strings.Contains(errOut.String(), "is msgate serve running") {
			t.Errorf("exit %d, %q", code, errOut.String())
		}
	})
	t.Run("postqueue missing", func(t *testing.T) {
		a := startAdminDaemon(t, nil)
		useRelease(a, func(r *config.Release) { r.Postqueue = []string{filepath.Join(t.TempDir(), "no-postqueue")} }, nil)
		var out, errOut bytes.Buffer
		if code := run([]string{"release", "-config", a.configPath, "-dry-run"}, &out, &errOut); code != exitFailure ||
			!strings.Contains(errOut.String(), "cannot read the Postfix queue") || !strings.Contains(errOut.String(), "no-postqueue") {
			t.Errorf("exit %d, %q", code, errOut.String())
		}
	})
	t.Run("usage", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if code := run([]string{"release", "extra"}, &out, &errOut); code != exitUsage {
			t.Errorf("exit %d, %q", code, errOut.String())
		}
	})
}

// When Microsoft delivery resumes, the mail the delivery feed held goes
// all at once without [release]; with it, the feed leaves it to the paced
// release and wakes it.
func TestResumeLeavesHeldMailToPacedRelease(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprintf("enabled=%v", enabled), func(t *testing.T) {
			dir := t.TempDir()
			cfg := config.Default()
			cfg.State.Path = filepath.Join(dir, "state.db")
			cfg.Replies.OnResume = nil
			marker := filepath.Join(dir, "released")
			cfg.Replies.Release = []string{"/bin/sh", "-c", `echo "$@" >>` + marker, "postsuper"}
			cfg.Release.Enabled = enabled
			d, err := newDaemon(cfg, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			defer d.close()
			d.feed.held("4HELD1")
			d.feed.step(context.Background())
			b, _ := os.ReadFile(marker)
			if got := strings.TrimSpace(string(b)); enabled && got != "" || !enabled && got != "-H 4HELD1" {
				t.Errorf("the feed released %q", got)
			}
			if n := d.feed.status().Held; n != 0 {
				t.Errorf("the feed still holds %d", n)
			}
			select {
			case <-d.rel.wake:
				if !enabled {
					t.Error("the paced release was woken while off")
				}
			default:
				if enabled {
					t.Error("the paced release was not woken")
				}
			}
		})
	}
}

// With [release] enabled the daemon releases by itself when woken (as at
// the resume of Microsoft delivery) and every interval.
func TestReleaseLoop(t *testing.T) {
	fake := newFakePostfix(t, heldLine("4L1", "alice@test.local", 0, "a@outlook.com"), "")
	a := startAdminDaemon(t, nil)
	fake.use(a, func(r *config.Release) { r.Enabled = true })
	if !a.d.rel.takeOver() {
		t.Fatal("takeOver with release.enabled = true said no")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(fake.calls(t), "postsuper -H 4L1") {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not release: %v", fake.calls(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// postsuper -H that finds no held message (released or deleted meanwhile)
// fails the release, so that its units are given back.
func TestPostsuperRelease(t *testing.T) {
	postsuper := []string{"/bin/sh", "-c", `case $2 in 4GONE) n=0;; *) n=1;; esac
echo "postsuper: Released from hold: $n message" >&2`, "postsuper"}
	ctx := context.Background()
	if err := postsuperRelease(ctx, postsuper, "4HERE"); err != nil {
		t.Errorf("a held message: %v", err)
	}
	if err := postsuperRelease(ctx, postsuper, "4GONE"); !errors.Is(err, errNotHeld) {
		t.Errorf("a message no longer held: %v, want errNotHeld", err)
	}
	if err := postsuperRelease(ctx, []string{"/bin/false"}, "4HERE"); err == nil || errors.Is(err, errNotHeld) {
		t.Errorf("a failing postsuper: %v", err)
	}
}
