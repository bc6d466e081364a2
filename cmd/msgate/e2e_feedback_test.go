package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
	"github.com/msgate/msgate/policy/feedback"
)

// fblBinary feeds one report to the real binary's fbl command.
func fblBinary(t *testing.T, configPath string, raw []byte) feedback.Result {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.eml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(msgateBinary(t), "fbl", "-config", configPath, path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("msgate fbl: %v\n%s", err, stderr.String())
	}
	var res feedback.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("msgate fbl printed %q: %v", stdout.String(), err)
	}
	return res
}

var stampLine = regexp.MustCompile(`(?m)^X-Msgate-Ref: (\S+)\r?$`)

// The whole loop through a real Postfix, submitting with SASL: alice's mail to
// outlook.com reaches the sink stamped; a JMRP report built around that
// copy flags alice; bob is untouched; an altered stamp flags nobody; a copy
// without the stamp is still attributed to alice by Postfix's queue id.
func TestPostfixFeedbackLoop(t *testing.T) {
	postfixtest.Require(t)
	ns := startDNS(t)
	events := filepath.Join(t.TempDir(), "flag-events")
	d := startServe(t, fmt.Sprintf(`
[microsoft]
resolver = %q
[feedback]
secret = %q
on_flag = ["/bin/sh", "-c", "cat >> %s"]
`, ns.Addr, testSecret, events))
	p := postfixtest.Start(t, postfixtest.Options{
		MilterAddr:   d.milter,
		RelayDomains: []string{"outlook.com", "example.net"},
		SASLUsers:    map[string]string{"alice": "alice-pw", "bob": "bob-pw"},
	})
	cfgPath := d.config

	send := func(user, subject string, rcpts ...string) []string {
		t.Helper()
		from := user + "@test.local"
		replies, data, err := p.SendAuth(t, user, user+"-pw", from, rcpts, postfixtest.Message(from, rcpts, subject, "hello"))
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if data != "" && !strings.HasPrefix(data, "250") {
			t.Fatalf("%s: DATA %q", subject, data)
		}
		return replies
	}
	send("alice", "stamped", "jo@outlook.com")
	ds := p.WaitDelivered(t, func(ds []postfixtest.Delivery) bool { return len(postfixtest.BySubject(ds, "stamped")) == 1 }, "alice's message")
	copyOf := postfixtest.BySubject(ds, "stamped")[0].Message
	m := stampLine.FindStringSubmatch(copyOf)
	if m == nil {
		t.Fatalf("the copy in smtp-sink carries no stamp:\n%s", copyOf)
	}
	if !strings.Contains(p.Log(t), "postfix/submission/smtpd") || !strings.Contains(p.Log(t), "sasl_username=alice") {
		t.Fatalf("alice's mail did not come through the submission service with SASL:\n%s", p.Log(t))
	}
	if !strings.Contains(copyOf, "(Postfix) with ESMTPA id ") {
		t.Fatalf("no Postfix Received header with a queue id in the copy:\n%s", copyOf)
	}
	// Postfix passes the login with smtpd_sasl_local_domain appended.
	const alice = "alice@test.local"
	if lines := d.logLines(`"account":"`+alice+`"`, `"account_kind":"sasl"`); len(lines) == 0 {
		t.Fatalf("msgate never saw alice's SASL login")
	}

	// A report whose stamp was altered flags nobody.
	tok := m[1]
	altered := strings.Replace(copyOf, tok, tok[:len(tok)-4]+"AAAA", 1)
	if tok[len(tok)-4:] == "AAAA" {
		altered = strings.Replace(copyOf, tok, tok[:len(tok)-4]+"BBBB", 1)
	}
	if res := fblBinary(t, cfgPath, jmrpAround("altered", altered)); res.Outcome != feedback.OutcomeForged || res.Account != "" {
		t.Fatalf("altered stamp: %+v, want forged", res)
	}
	if r := send("alice", "still-ok", "kim@outlook.com"); !strings.HasPrefix(r[0], "250") {
		t.Fatalf("alice refused after a forged report: %q", r[0])
	}

	res := fblBinary(t, cfgPath, jmrpAround("genuine", copyOf))
	if res.Outcome != feedback.OutcomeRecorded || res.Account != alice || res.AttributedBy != "stamp" || res.Format != "jmrp" {
		t.Fatalf("genuine report: %+v", res)
	}
	r := send("alice", "after-complaint", "lee@outlook.com", "pat@example.net")
	if !strings.HasPrefix(r[0], "451 4.7.1") || !strings.Contains(r[0], "complained") {
		t.Errorf("alice's next Microsoft recipient: %q, want 451 4.7.1 with the complaint reason", r[0])
	}
	if !strings.HasPrefix(r[1], "250") {
		t.Errorf("alice's non-Microsoft recipient: %q", r[1])
	}
	if r := send("bob", "bob-untouched", "lee@outlook.com"); !strings.HasPrefix(r[0], "250") {
		t.Errorf("bob: %q", r[0])
	}
	p.WaitDelivered(t, func(ds []postfixtest.Delivery) bool { return len(postfixtest.BySubject(ds, "bob-untouched")) == 1 }, "bob's message")

	// The copy lost the stamp: the queue id in Postfix's Received header
	// still names alice.
	stripped := stampLine.ReplaceAllString(copyOf, "X-Other: 1")
	res = fblBinary(t, cfgPath, jmrpAround("stripped", stripped))
	if res.Outcome != feedback.OutcomeRecorded || res.Account != alice || res.AttributedBy != "queue-id" {
		t.Fatalf("report without the stamp: %+v, want attributed to alice by queue id", res)
	}

	// on_flag ran once: for the complaint that flagged alice, not for the
	// second one (she was flagged already, at the same action).
	read := func() []FlagEvent {
		b, _ := os.ReadFile(events)
		var evs []FlagEvent
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var ev FlagEvent
			if json.Unmarshal([]byte(line), &ev) == nil {
				evs = append(evs, ev)
			}
		}
		return evs
	}
	// The commands run in the background: wait for the first, then give
	// a wrong second one the time to show up.
	for i := 0; len(read()) == 0 && i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	got := read()
	if len(got) != 1 || got[0].Event != "flagged" || got[0].Account != alice || got[0].Action != "defer" || got[0].Complaints != 1 {
		t.Fatalf("on_flag events: %+v, want one: alice flagged, defer, 1 complaint", got)
	}
}
