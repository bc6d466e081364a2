package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
)

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// heldMessage is one message the test put in the hold queue.
type heldMessage struct {
	id, account, subject string
	arrival              int64
}

// Through a real Postfix: 100 messages for Microsoft recipients from four
// accounts wait in the hold queue (the cap's action is hold and it is
// full); one account is then flagged, and the cap raised to leave room for
// 30. msgate release -dry-run changes nothing; msgate release releases
// exactly 30, ten of each unflagged account, each account's oldest first;
// the flagged account's mail stays held, the released mail is delivered,
// and the cap counts it.
func TestPostfixPacedRelease(t *testing.T) {
	postfixtest.Require(t)
	start := time.Now()
	ns := startDNS(t)
	d := startServe(t, fmt.Sprintf(`
[microsoft]
resolver = %q
[[rate]]
name = "hourly"
window = "1h"
limit = 1000
[mitigation]
enabled = true
daily_cap = 1
action = "hold"
`, ns.Addr))
	p := postfixtest.Start(t, postfixtest.Options{
		MilterAddr:   d.milter,
		RelayDomains: []string{"outlook.com", "hotmail.com"},
		SASLUsers:    map[string]string{"carol": "carol-pw"},
	})
	send := func(user, from, subject, rcpt string) string {
		t.Helper()
		body := postfixtest.Message(from, []string{rcpt}, subject, "paced release")
		var (
			replies []string
			data    string
			err     error
		)
		if user != "" {
			replies, data, err = p.SendAuth(t, user, user+"-pw", from, []string{rcpt}, body)
		} else {
			replies, data, err = p.Send(t, from, []string{rcpt}, body)
		}
		if err != nil || !strings.HasPrefix(replies[0], "250") || !strings.HasPrefix(data, "250") {
			t.Fatalf("%s: %v RCPT %v DATA %q", subject, err, replies, data)
		}
		m := queuedAs.FindStringSubmatch(data)
		if m == nil {
			t.Fatalf("%s: no queue id in %q", subject, data)
		}
		return m[1]
	}
	// The cap's one unit goes to a first message; what follows is held.
	send("", "warmup@test.local", "warmup", "w@outlook.com")
	delivered(p, t, "warmup", "w@outlook.com")

	// carol submits with SASL under another sender address: msgate's
	// record of the queue id, not the sender, names her account.
	type account struct{ user, from, name string }
	alice := account{"", "alice@test.local", "alice@test.local"}
	bob := account{"", "bob@test.local", "bob@test.local"}
	carol := account{"carol", "news@test.local", "carol@test.local"}
	mallory := account{"", "mallory@test.local", "mallory@test.local"}
	pattern := []account{alice, bob, alice, carol, bob, alice, mallory, carol, bob, alice} // 40/30/20/10
	sent := map[string]*heldMessage{}
	for i := range 100 {
		a := pattern[i%len(pattern)]
		subject := fmt.Sprintf("held-%03d", i)
		domain := []string{"outlook.com", "hotmail.com"}[i%2]
		id := send(a.user, a.from, subject, fmt.Sprintf("r%03d@%s", i, domain))
		sent[id] = &heldMessage{id: id, account: a.name, subject: subject}
	}
	queue := p.Queue(t)
	for _, e := range queue {
		if m := sent[e.QueueID]; m != nil && e.QueueName == "hold" {
			m.arrival = e.ArrivalTime
		}
	}
	for id, m := range sent {
		if m.arrival == 0 {
			t.Fatalf("%s (%s) is not in the hold queue: %+v", id, m.subject, queue)
		}
	}
	if out, err := exec.Command(msgateBinary(t), "account", "flag", "-config", d.config, mallory.name).CombinedOutput(); err != nil {
		t.Fatalf("msgate account flag: %v\n%s", err, out)
	}
	// Room for 30: the cap goes to 31, one of which is used.
	b, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.config, bytes.Replace(b, []byte("daily_cap = 1\n"), []byte("daily_cap = 31\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLogLine(t, d, "configuration reloaded")

	release := func(args ...string) []admin.ReleaseStep {
		t.Helper()
		cmd := exec.Command(msgateBinary(t), append([]string{"release", "-config", d.config, "-json"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("msgate release %v: %v\n%s", args, err, stderr.String())
		}
		var steps []admin.ReleaseStep
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var s admin.ReleaseStep
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatalf("msgate release -json line %q: %v", line, err)
			}
			steps = append(steps, s)
		}
		return steps
	}
	plan := release("-dry-run")
	table, err := exec.Command(msgateBinary(t), "release", "-config", d.config, "-dry-run").CombinedOutput()
	if err != nil {
		t.Fatalf("msgate release -dry-run: %v\n%s", err, table)
	}
	t.Logf("msgate release -dry-run (first lines):\n%s", firstLines(string(table), 12))
	if n := countHeld(p.Queue(t)); n != 100 {
		t.Fatalf("after the dry run %d messages are held, want 100", n)
	}
	var planned []string
	for _, s := range plan {
		if s.Outcome == admin.OutcomePlanned {
			planned = append(planned, s.ID)
		}
		if m := sent[s.ID]; m == nil || m.account != s.Account || s.Units != 1 {
			t.Errorf("plan step %+v: want one of the test's messages, of %v, with 1 unit", s, m)
		}
	}

	steps := release()
	var released []string
	per := map[string][]*heldMessage{}
	for _, s := range steps {
		if s.Outcome == admin.OutcomeReleased {
			released = append(released, s.ID)
			per[s.Account] = append(per[s.Account], sent[s.ID])
		} else if s.Outcome != admin.OutcomeKept {
			t.Errorf("step %+v: want released or held", s)
		}
	}
	if len(released) != 30 {
		t.Fatalf("released %d, want 30", len(released))
	}
	if !slices.Equal(planned, released) {
		t.Errorf("the dry run planned %v, the release released %v", planned, released)
	}
	for _, a := range []account{alice, bob, carol} {
		if len(per[a.name]) != 10 {
			t.Errorf("%s: %d released, want 10 (round-robin)", a.name, len(per[a.name]))
		}
	}
	if len(per[mallory.name]) != 0 {
		t.Errorf("the flagged account's mail was released: %v", per[mallory.name])
	}
	// Oldest first within each account: nothing kept arrived before
	// something released.
	isReleased := map[string]bool{}
	for _, id := range released {
		isReleased[id] = true
	}
	for _, a := range []account{alice, bob, carol} {
		var newestReleased int64
		oldestKept := int64(1 << 62)
		for _, m := range sent {
			if m.account != a.name {
				continue
			}
			if isReleased[m.id] {
				newestReleased = max(newestReleased, m.arrival)
			} else {
				oldestKept = min(oldestKept, m.arrival)
			}
		}
		if newestReleased > oldestKept {
			t.Errorf("%s: a message that arrived at %d was released while one of %d stays held", a.name, newestReleased, oldestKept)
		}
	}

	// What was released is delivered; the rest is still held.
	var subjects []string
	for _, id := range released {
		subjects = append(subjects, sent[id].subject)
	}
	p.WaitDelivered(t, func(ds []postfixtest.Delivery) bool {
		for _, s := range subjects {
			if len(postfixtest.BySubject(ds, s)) == 0 {
				return false
			}
		}
		return true
	}, "the 30 released messages")
	ds := p.Delivered(t)
	for id, m := range sent {
		if !isReleased[id] && len(postfixtest.BySubject(ds, m.subject)) > 0 {
			t.Errorf("%s (%s, %s) was delivered but not released", m.subject, id, m.account)
		}
	}
	stillHeld := map[string]int{}
	for _, e := range p.Queue(t) {
		if m := sent[e.QueueID]; m != nil && e.QueueName == "hold" {
			stillHeld[m.account]++
		}
	}
	if want := map[string]int{alice.name: 30, bob.name: 20, carol.name: 10, mallory.name: 10}; fmt.Sprint(stillHeld) != fmt.Sprint(want) {
		t.Errorf("still held %v, want %v", stillHeld, want)
	}
	out, err := exec.Command(msgateBinary(t), "status", "-json", "-config", d.config).Output()
	if err != nil {
		t.Fatal(err)
	}
	var st admin.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	if st.Cap.Used != 31 || st.Cap.Reserved != 0 {
		t.Errorf("cap used %d (+%d reserved), want 31: the released units count", st.Cap.Used, st.Cap.Reserved)
	}
	// The cap is full: a second run releases nothing.
	if steps := release(); countOutcome(steps, admin.OutcomeReleased) != 0 {
		t.Errorf("a run with a full cap released %d", countOutcome(steps, admin.OutcomeReleased))
	}
	t.Logf("100 held, 30 released and delivered in %v", time.Since(start).Round(time.Millisecond))
}

func countHeld(q []postfixtest.QueueEntry) int {
	n := 0
	for _, e := range q {
		if e.QueueName == "hold" {
			n++
		}
	}
	return n
}

func countOutcome(steps []admin.ReleaseStep, outcome string) int {
	n := 0
	for _, s := range steps {
		if s.Outcome == outcome {
			n++
		}
	}
	return n
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// waitLogLine waits up to 10 seconds for msgate to log a line with substr.
func waitLogLine(t *testing.T, d *daemonProc, substr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(d.log.String(), substr) {
			return
		}
	}
	t.Fatalf("msgate never logged %q", substr)
}
