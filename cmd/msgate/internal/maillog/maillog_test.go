package maillog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		line string
		want Entry
		ok   bool
	}{
		{`Dec  3 12:02:49 mx postfix/smtp[18100]: 4jgCsW4vw6z5fls: to=<queued@outlook.com>, relay=127.0.0.1[127.0.0.1]:44867, delay=58, delays=58/0/0/0, dsn=4.3.2, status=deferred (host 127.0.0.1[127.0.0.1] said: 451 4.3.2 Please try again later (in reply to RCPT TO command))`,
			Entry{"4jgCsW4vw6z5fls", "queued@outlook.com", "4.3.2", "deferred", "host 127.0.0.1[127.0.0.1] said: 451 4.3.2 Please try again later (in reply to RCPT TO command)"}, true},
		{`2026-12-03T12:01:52.011845+00:00 mx postfix/smtp[1]: 3F2A1: to=<bob@hotmail.com>, relay=hotmail-com.olc.protection.outlook.com[52.101.8.42]:25, delay=1.2, delays=0/0/0.9/0.3, dsn=5.7.1, status=bounced (host hotmail-com.olc.protection.outlook.com[52.101.8.42] said: 550 5.7.1 ... on our block list (S3150) (in reply to MAIL FROM command))`,
			Entry{"3F2A1", "bob@hotmail.com", "5.7.1", "bounced", "host hotmail-com.olc.protection.outlook.com[52.101.8.42] said: 550 5.7.1 ... on our block list (S3150) (in reply to MAIL FROM command)"}, true},
		{`Dec  3 12:00:00 mx postfix/smtp[2]: 3F2A2: to=<a@example.org>, relay=mx.example.org[192.0.2.1]:25, delay=0.1, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 OK)`,
			Entry{"3F2A2", "a@example.org", "2.0.0", "sent", "250 2.0.0 OK"}, true},
		{`Dec  3 12:00:00 mx sm-mta[99]: 0B3C0abc012345: to=<bob@outlook.com>, delay=00:00:01, xdelay=00:00:01, mailer=esmtp, pri=120000, relay=mx.outlook.com. [52.101.8.42], dsn=4.7.650, stat=Deferred: 451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation. (S775)`,
			Entry{"0B3C0abc012345", "bob@outlook.com", "4.7.650", "Deferred", "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation. (S775)"}, true},
		{`Dec  3 12:00:00 mx postfix/qmgr[3]: 3F2A1: from=<a@b>, size=452, nrcpt=1 (queue active)`, Entry{}, false},
		{`Dec  3 12:00:00 mx postfix/smtpd[4]: connect from localhost[127.0.0.1]`, Entry{}, false},
		{`x: to=<a@b>, status=sent (ok)`, Entry{}, false}, // no dsn
		{`x y: to=<a@b`, Entry{}, false},
		{``, Entry{}, false},
	} {
		got, ok := ParseLine(c.line)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("ParseLine(%.50q) = %+v, %v; want %+v", c.line, got, ok, c.want)
		}
	}
	e, _ := ParseLine(`m postfix/smtp[1]: Q1: to=<a@b>, dsn=4.7.650, status=deferred (host h said: 451 4.7.650 x)`)
	if e.Key() != "4.7.650 host h said: 451 4.7.650 x" {
		t.Errorf("Key = %q", e.Key())
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		`Dec  3 12:02:49 mx postfix/smtp[18100]: 4jgCsW4vw6z5fls: to=<q@o.com>, relay=r, dsn=4.3.2, status=deferred (host h said: 451 x)`,
		`Dec  3 mx sm-mta[99]: 0B3C0: to=<b@o.com>, dsn=4.7.650, stat=Deferred: 451 4.7.650 x`,
		`: to=<`, `a: to=<>, dsn=, status=`, `a: to=<b>, dsn=1 stat=: `,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, ok := ParseLine(line)
		if !ok {
			return
		}
		if e.QueueID == "" || e.DSN == "" || e.Status == "" || !isQueueID(e.QueueID) {
			t.Fatalf("accepted %q as %+v", line, e)
		}
		if !strings.Contains(line, e.Rcpt) || !strings.Contains(line, e.Text) {
			t.Fatalf("%+v is not from %q", e, line)
		}
	})
}

// Lines appended are read, lines from before are not; a rotation (rename
// and a new file) and a truncation are followed.
func TestFollow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(path, []byte("old line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Follow(ctx, path, 10*time.Millisecond, func(l string) { mu.Lock(); got = append(got, l); mu.Unlock() }, func(err error) { t.Error(err) })
		close(done)
	}()
	defer func() { cancel(); <-done }()
	wait := func(n int) {
		t.Helper()
		for i := 0; ; i++ {
			mu.Lock()
			l := len(got)
			mu.Unlock()
			if l >= n {
				return
			}
			if i > 1000 {
				t.Fatalf("read %v, want %d lines", got, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	appendTo := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	time.Sleep(50 * time.Millisecond) // the follower has opened the file
	appendTo("one\ntw")
	appendTo("o\n")
	wait(2)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo("three\n")
	wait(3)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	appendTo("four\n")
	wait(4)
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "one,two,three,four" {
		t.Errorf("read %q", got)
	}
}
