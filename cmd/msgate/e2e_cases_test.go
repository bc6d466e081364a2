package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
)

// sendOne submits one message through Postfix and returns its RCPT
// replies.
func sendOne(t *testing.T, p *postfixtest.Postfix, from, subject string, rcpts ...string) []string {
	t.Helper()
	replies, data, err := p.Send(t, from, rcpts, postfixtest.Message(from, rcpts, subject, "hello"))
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if data != "" && !strings.HasPrefix(data, "250") {
		t.Fatalf("%s: DATA %q", subject, data)
	}
	return replies
}

// The server-wide cap through Postfix: past it the Microsoft recipient gets
// the cap's 451, whatever the account.
func TestPostfixCapDefers(t *testing.T) {
	postfixtest.Require(t)
	ns := startDNS(t)
	d := startServe(t, fmt.Sprintf("rate = []\n[microsoft]\nresolver = %q\n[mitigation]\nenabled = true\ndaily_cap = 2\n", ns.Addr))
	p := startPostfix(t, d.milter)
	sendOne(t, p, "a@test.local", "cap-1", "x1@outlook.com", "x2@hotmail.fr")
	r := sendOne(t, p, "b@test.local", "cap-2", "x3@outlook.com", "y@example.net")
	if !strings.HasPrefix(r[0], "451 4.7.1") || !strings.Contains(r[0], "daily volume") {
		t.Errorf("past the cap: %q, want 451 4.7.1 with the cap's reason", r[0])
	}
	delivered(p, t, "cap-1", "x1@outlook.com", "x2@hotmail.fr")
	delivered(p, t, "cap-2", "y@example.net")
	notDelivered(p, t, "cap-2", "x3@outlook.com")
}

// hold puts the message past the cap in Postfix's hold queue, for SMTP and
// for the sendmail command alike.
func TestPostfixCapHolds(t *testing.T) {
	postfixtest.Require(t)
	ns := startDNS(t)
	d := startServe(t, fmt.Sprintf("rate = []\n[microsoft]\nresolver = %q\n[mitigation]\nenabled = true\ndaily_cap = 1\naction = \"hold\"\n", ns.Addr))
	p := startPostfix(t, d.milter)
	sendOne(t, p, "a@test.local", "first", "x1@outlook.com")
	delivered(p, t, "first", "x1@outlook.com")
	if r := sendOne(t, p, "a@test.local", "held-smtp", "x2@outlook.com", "y@example.net"); !strings.HasPrefix(r[0], "250") {
		t.Fatalf("hold refused the recipient: %q", r[0])
	}
	if err := p.Sendmail(t, "cron@test.local", []string{"x3@outlook.com"}, postfixtest.Message("cron@test.local", []string{"x3@outlook.com"}, "held-pickup", "x")); err != nil {
		t.Fatal(err)
	}
	p.WaitLog(t, "milter-hold", "a held message")
	var held int
	for i := 0; i < 120 && held < 2; i++ {
		held = 0
		for _, q := range p.Queue(t) {
			if q.QueueName == "hold" {
				held++
			}
		}
		if held < 2 {
			p.Flush(t)
			time.Sleep(250 * time.Millisecond)
		}
	}
	if held != 2 {
		t.Fatalf("%d messages in the hold queue, want 2 (SMTP and sendmail command):\n%+v", held, p.Queue(t))
	}
	notDelivered(p, t, "held-smtp", "y@example.net")
}

// monitor rules let everything through and log what they would have done.
func TestPostfixMonitor(t *testing.T) {
	postfixtest.Require(t)
	ns := startDNS(t)
	d := startServe(t, fmt.Sprintf("[microsoft]\nresolver = %q\n[[rate]]\nname = \"watch\"\nwindow = \"1h\"\nlimit = 1\naction = \"monitor\"\n", ns.Addr))
	p := startPostfix(t, d.milter)
	for i := range 3 {
		if r := sendOne(t, p, "a@test.local", fmt.Sprint("mon-", i), "x@outlook.com"); !strings.HasPrefix(r[0], "250") {
			t.Fatalf("monitor refused: %q", r[0])
		}
	}
	delivered(p, t, "mon-2", "x@outlook.com")
	if n := len(d.logLines(`"would_have_acted":true`, `"rule":"watch"`)); n != 2 {
		t.Errorf("%d would-have-acted lines, want 2 (the 2nd and 3rd unit)", n)
	}
}

// With msgate stopped and milter_default_action = tempfail mail waits and
// nothing is lost; once msgate is back it goes through.
func TestPostfixMsgateDownTempfail(t *testing.T) {
	postfixtest.Require(t)
	ns := startDNS(t)
	d := startServe(t, fmt.Sprintf("[microsoft]\nresolver = %q\n", ns.Addr))
	p := startPostfix(t, d.milter)
	d.stop()
	_, _, err := p.Send(t, "a@test.local", []string{"x@outlook.com"}, postfixtest.Message("a@test.local", []string{"x@outlook.com"}, "down-smtp", "x"))
	if re, ok := err.(*postfixtest.ReplyError); !ok || re.Code/100 != 4 {
		t.Fatalf("SMTP with msgate down: %v, want a 4xx (the client keeps the mail)", err)
	}
	if err := p.Sendmail(t, "cron@test.local", []string{"y@outlook.com"}, postfixtest.Message("cron@test.local", []string{"y@outlook.com"}, "down-pickup", "x")); err != nil {
		t.Fatal(err)
	}
	p.WaitLog(t, "milter-reject: CONNECT", "the sendmail-command message waiting")
	if q := p.Queue(t); len(q) != 1 || q[0].QueueName != "maildrop" {
		t.Fatalf("queue with msgate down: %+v, want the message in maildrop", q)
	}
	d.start(t)
	delivered(p, t, "down-pickup", "y@outlook.com")
}

// With milter_default_action = accept, mail flows unchecked while msgate is
// down.
func TestPostfixMsgateDownAccept(t *testing.T) {
	postfixtest.Require(t)
	ns := startDNS(t)
	d := startServe(t, fmt.Sprintf("[microsoft]\nresolver = %q\n", ns.Addr))
	p := postfixtest.Start(t, postfixtest.Options{MilterAddr: d.milter, DefaultAction: "accept",
		RelayDomains: []string{"outlook.com"}})
	d.stop()
	if r := sendOne(t, p, "a@test.local", "down-accept", "x@outlook.com"); !strings.HasPrefix(r[0], "250") {
		t.Fatalf("with accept: %q", r[0])
	}
	delivered(p, t, "down-accept", "x@outlook.com")
}
