package postfixtest

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/msgate/msgate/cmd/msgate/internal/smtpclient"
)

func TestPostfixRelaysToSink(t *testing.T) {
	Require(t)
	p := Start(t, Options{RelayDomains: []string{"outlook.com", "example.net"}})

	from := "sender@test.local"
	rcpts := []string{"alice@outlook.com", "bob@example.net"}
	subject := "relay " + t.Name()
	replies, dataReply, err := p.Send(t, from, rcpts, Message(from, rcpts, subject, "Hello.\n.leading dot\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range replies {
		if !strings.HasPrefix(r, "250") {
			t.Errorf("RCPT %s: %q, want 250", rcpts[i], r)
		}
	}
	if !strings.HasPrefix(dataReply, "250") {
		t.Errorf("DATA: %q, want 250", dataReply)
	}
	ds := p.WaitDelivered(t, func(ds []Delivery) bool {
		return len(AllRecipients(BySubject(ds, subject))) == 2
	}, "the SMTP message at the sink for both recipients")
	got := BySubject(ds, subject)
	all := AllRecipients(got)
	slices.Sort(all)
	if !slices.Equal(all, rcpts) {
		t.Errorf("recipients %v, want %v", all, rcpts)
	}
	for _, d := range got {
		if d.Sender != from {
			t.Errorf("envelope sender %q, want %q", d.Sender, from)
		}
		if !strings.Contains(d.Message, "\n.leading dot\n") {
			t.Errorf("body lost its leading dot:\n%s", d.Message)
		}
		if !strings.Contains(d.Message, "by "+myHostname+" (Postfix)") {
			t.Errorf("no Received header from Postfix:\n%s", d.Message)
		}
	}

	subject2 := "sendmail " + t.Name()
	rcpt2 := []string{"carol@outlook.com"}
	if err := p.Sendmail(t, from, rcpt2, Message(from, rcpt2, subject2, "Via pickup.\n")); err != nil {
		t.Fatal(err)
	}
	ds = p.WaitDelivered(t, func(ds []Delivery) bool {
		return len(BySubject(ds, subject2)) == 1
	}, "the sendmail message at the sink")
	d := BySubject(ds, subject2)[0]
	if d.Sender != from || !slices.Equal(d.Recipients, rcpt2) {
		t.Errorf("envelope %q -> %v, want %q -> %v", d.Sender, d.Recipients, from, rcpt2)
	}
	if q := p.Queue(t); len(q) != 0 {
		t.Errorf("queue not empty after delivery: %+v", q)
	}
	if log := p.Log(t); !strings.Contains(log, "status=sent") {
		t.Errorf("no status=sent in the postfix log:\n%s", log)
	}
}

// With the milter unreachable and milter_default_action=tempfail, Postfix
// 3.7 smtpd still greets with 220 and answers EHLO with 250 (it only logs
// "milter-reject: CONNECT" and "EHLO"), then refuses MAIL with
// "451 4.7.1 Service unavailable - try again later": no RCPT is reached.
// On the non-SMTP path cleanup refuses the message and it stays in the
// maildrop queue, where pickup retries it.
func TestPostfixMilterTempfail(t *testing.T) {
	Require(t)
	milter := closedPort(t)
	p := Start(t, Options{
		MilterAddr:    "inet:" + milter,
		DefaultAction: "tempfail",
		RelayDomains:  []string{"outlook.com"},
	})
	from := "sender@test.local"
	rcpts := []string{"alice@outlook.com", "bob@outlook.com"}
	replies, dataReply, err := p.Send(t, from, rcpts, Message(from, rcpts, "tempfail smtp "+t.Name(), "Hi.\n"))
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 451 || !strings.HasPrefix(re.Reply, "451 4.7.1 ") || !strings.HasPrefix(re.Command, "MAIL ") {
		t.Fatalf("Send: replies %q, data %q, err %v; want MAIL refused with 451 4.7.1", replies, dataReply, err)
	}
	p.WaitLog(t, "milter-reject: MAIL from localhost[127.0.0.1]: 451 4.7.1", "smtpd's milter-reject at MAIL")
	if log := p.Log(t); !strings.Contains(log, "connect to Milter service inet:"+milter+": Connection refused") {
		t.Errorf("no milter connect failure in the postfix log:\n%s", log)
	}

	subject := "tempfail sendmail " + t.Name()
	if err := p.Sendmail(t, from, rcpts[:1], Message(from, rcpts[:1], subject, "Hi.\n")); err != nil {
		t.Fatal(err)
	}
	p.WaitLog(t, "milter-reject: CONNECT from localhost[127.0.0.1]: 4.7.1 Service unavailable", "cleanup's milter-reject for the sendmail message")
	q := p.Queue(t)
	if len(q) != 1 || q[0].QueueName != "maildrop" || q[0].Sender != from {
		t.Errorf("queue %+v, want the sendmail message in maildrop", q)
	}
	if ds := p.Delivered(t); len(ds) != 0 {
		t.Errorf("delivered %d messages, want none", len(ds))
	}
}

// closedPort returns "127.0.0.1:PORT" where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestParseDump(t *testing.T) {
	msg := func(mailArgs string, rcpts []string, body string) string {
		var b strings.Builder
		b.WriteString(sinkMarker + "\n")
		b.WriteString("X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: mx.test.local\n")
		fmt.Fprintf(&b, "X-Mail-Args: %s\n", mailArgs)
		for _, r := range rcpts {
			fmt.Fprintf(&b, "X-Rcpt-Args: %s\n", r)
		}
		b.WriteString("Received: from mx.test.local ([127.0.0.1])\n\tby sink.test.local (smtp-sink) with ESMTP id 1a2b3c4d;\n\tThu, 27 Nov 2025 05:40:00 +0000 (UTC)\n")
		b.WriteString(body + "\n")
		return b.String()
	}
	one := "Subject: one\n\nfirst line\n\nafter an empty line\n"
	two := "Subject: two\n\n" + sinkMarker + " in a body is not at a line start here\n"
	dump := msg("<a@test.local> SIZE=100 BODY=8BITMIME", []string{"<x@outlook.com>", "<y@outlook.com> ORCPT=rfc822;y@outlook.com"}, one) +
		msg("<>", []string{"<z@example.net>"}, two)

	tests := []struct {
		name string
		dump string
		want []Delivery
	}{
		{"empty", "", nil},
		{"two", dump, []Delivery{
			{Sender: "a@test.local", Recipients: []string{"x@outlook.com", "y@outlook.com"},
				MailArgs: "<a@test.local> SIZE=100 BODY=8BITMIME",
				RcptArgs: []string{"<x@outlook.com>", "<y@outlook.com> ORCPT=rfc822;y@outlook.com"},
				Message:  one},
			{Sender: "", Recipients: []string{"z@example.net"}, MailArgs: "<>",
				RcptArgs: []string{"<z@example.net>"}, Message: two},
		}},
		{"last being written", dump + sinkMarker + "\nX-Client-Addr: 127.0.0.1\n", nil},
	}
	tests[2].want = tests[1].want
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDump(tt.dump)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
	if got := BySubject(tests[1].want, "two"); len(got) != 1 || got[0].Sender != "" {
		t.Errorf("BySubject(two) = %v", got)
	}
}

func TestDotStuff(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "a\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\n.b\r\n", "a\r\n..b\r\n"},
		{".\n..\n", "..\r\n...\r\n"},
	}
	for _, tt := range tests {
		if got := smtpclient.DotStuff(tt.in); got != tt.want {
			t.Errorf("DotStuff(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseQueue(t *testing.T) {
	out := `{"queue_name": "deferred", "queue_id": "4ZxYz1abcDz9", "arrival_time": 1764222000, "message_size": 312, "forced_expire": false, "sender": "a@test.local", "recipients": [{"address": "x@outlook.com", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:2526: Connection refused"}]}
{"queue_name": "maildrop", "queue_id": "4ZxYz2", "arrival_time": 1764222001, "message_size": 0, "forced_expire": false, "sender": "b@test.local", "recipients": [{"address": "y@hotmail.fr"}]}
`
	q, err := parseQueue([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q[0].QueueName != "deferred" || q[0].Recipients[0].DelayReason == "" ||
		q[1].QueueName != "maildrop" || q[1].Recipients[0].Address != "y@hotmail.fr" {
		t.Errorf("parseQueue = %+v", q)
	}
}
