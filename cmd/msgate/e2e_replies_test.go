package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
)

// fakeMX is a Microsoft MX on loopback that answers by script: while
// closed, RCPT TO gets the reply its recipient is scripted for; once open,
// everything is accepted. It counts what it saw.
type fakeMX struct {
	addr string
	ln   net.Listener

	mu        sync.Mutex
	open      bool
	script    map[string]string // recipient -> reply while closed
	rcpts     map[string]int    // RCPT TO seen, by recipient
	refusals  []time.Time       // when each scripted 5xx went out
	delivered map[string]int    // messages accepted, by Subject
}

func startFakeMX(t *testing.T, script map[string]string) *fakeMX {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMX{addr: ln.Addr().String(), ln: ln, script: script, rcpts: map[string]int{}, delivered: map[string]int{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return m
}

func (m *fakeMX) port() string { _, p, _ := net.SplitHostPort(m.addr); return p }

func (m *fakeMX) setOpen() {
	m.mu.Lock()
	m.open = true
	m.mu.Unlock()
}

func (m *fakeMX) counts(rcpt string) (rcpts int, refusals []time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rcpts[rcpt], append([]time.Time(nil), m.refusals...)
}

func (m *fakeMX) deliveredCopy() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for k, v := range m.delivered {
		out[k] = v
	}
	return out
}

func (m *fakeMX) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	say := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	say("220 fake-mx.olc.protection.outlook.com ESMTP")
	accepted := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-fake-mx\r\n250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			accepted = 0
			say("250 2.1.0 OK")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			rcpt := strings.ToLower(strings.Trim(strings.TrimSpace(line[len("RCPT TO:"):]), "<>"))
			m.mu.Lock()
			m.rcpts[rcpt]++
			reply, scripted := m.script[rcpt]
			if m.open || !scripted {
				reply = "250 2.1.5 OK"
				accepted++
			} else if strings.HasPrefix(reply, "5") {
				m.refusals = append(m.refusals, time.Now())
			}
			m.mu.Unlock()
			say(reply)
		case cmd == "DATA":
			if accepted == 0 {
				say("554 5.5.1 no valid recipients")
				continue
			}
			say("354 go ahead")
			subject := ""
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				if s, ok := strings.CutPrefix(strings.TrimRight(l, "\r\n"), "Subject: "); ok && subject == "" {
					subject = s
				}
			}
			m.mu.Lock()
			m.delivered[subject]++
			m.mu.Unlock()
			say("250 2.6.0 queued")
		case cmd == "RSET", cmd == "NOOP":
			say("250 OK")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("502 5.5.2 not implemented")
		}
	}
}

// deliveryStatus reads msgate status -json.
func deliveryStatus(t *testing.T, d *daemonProc) admin.Status {
	t.Helper()
	out, err := exec.Command(msgateBinary(t), "status", "-json", "-config", d.config).Output()
	if err != nil {
		t.Fatalf("msgate status: %v", err)
	}
	var st admin.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("msgate status printed %q: %v", out, err)
	}
	return st
}

const s3150 = "550 5.7.1 Unfortunately, messages from [127.0.0.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors."

// The whole loop through a real Postfix and a scripted Microsoft MX:
// five S3150 replies block Microsoft delivery; new Microsoft mail waits,
// other mail flows; when the block's time is up and the MX accepts again,
// everything that waited is delivered exactly once.
//
// With the transport map (the pause of queued mail), queued Microsoft mail
// is not tried while paused, and Postfix itself answers new Microsoft
// recipients 450 (smtpd refuses a recipient whose transport is retry:):
// the client retries them after the resume. Without it, msgate holds new
// Microsoft mail (paused_action = "hold") and releases exactly what it
// held.
func TestPostfixMicrosoftBlock(t *testing.T) {
	t.Run("transport-map", func(t *testing.T) { microsoftBlock(t, true) })
	t.Run("hold", func(t *testing.T) { microsoftBlock(t, false) })
}

func microsoftBlock(t *testing.T, pauseQueue bool) {
	postfixtest.Require(t)
	ns := startDNS(t)
	mx := startFakeMX(t, map[string]string{
		"bob@outlook.com":    s3150,
		"queued@outlook.com": "451 4.3.2 Please try again later",
	})
	dir := t.TempDir()
	events := filepath.Join(dir, "events")
	feed := freePort(t)
	const block = 8 * time.Second
	config := fmt.Sprintf(`
[microsoft]
resolver = %q
[replies]
listen = "inet:127.0.0.1:%d"
on_event = ["/bin/sh", "-c", "cat >> %s; echo >> %s"]
probation = "2s"
`, ns.Addr, feed, events, events)
	const sinkPort = 2526
	transportMaps := fmt.Sprintf("inline:{ outlook.com=smtp:[127.0.0.1]:%s, example.org=smtp:[127.0.0.1]:%d }", mx.port(), sinkPort)
	if pauseQueue {
		// The admin creates the map before Postfix names it (postmap here
		// without a main.cf of its own: Postfix is not configured yet).
		transport := filepath.Join(dir, "transport")
		conf := filepath.Join(dir, "postmap-conf")
		if err := os.Mkdir(conf, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{filepath.Join(conf, "main.cf"), transport} {
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command("postmap", "-c", conf, "hash:"+transport).CombinedOutput(); err != nil {
			t.Fatalf("postmap: %v\n%s", err, out)
		}
		config += fmt.Sprintf("transport_file = %q\n", transport)
		transportMaps = "hash:" + transport + ", " + transportMaps
	} else {
		config += "paused_action = \"hold\"\n"
	}
	config += fmt.Sprintf(`[[replies.rule]]
name = "block_list"
match = '\(S3150\)'
class = "block"
count = 5
within = "1h"
action = "suspend"
duration = %q
`, block.String())
	d := startServe(t, config)
	p := postfixtest.Start(t, postfixtest.Options{
		MilterAddr: d.milter,
		SinkPort:   sinkPort,
		MainCF: map[string]string{
			"transport_maps":              transportMaps,
			"smtp_delivery_status_filter": fmt.Sprintf("socketmap:inet:127.0.0.1:%d:dsn", feed),
		},
	})
	send := func(to, subject string) (ok bool) {
		t.Helper()
		replies, data, err := p.Send(t, "alice@example.org", []string{to}, postfixtest.Message("alice@example.org", []string{to}, subject, "hello"))
		if err == nil && strings.HasPrefix(data, "250") {
			return true
		}
		if len(replies) == 1 && strings.HasPrefix(replies[0], "45") {
			return false
		}
		t.Fatalf("sending %q: %v %v %q", subject, err, replies, data)
		return false
	}
	mustSend := func(to, subject string) {
		t.Helper()
		if !send(to, subject) {
			t.Fatalf("%q to %s deferred", subject, to)
		}
	}

	// Queued Microsoft mail: deferred by the MX, retried by Postfix.
	mustSend("queued@outlook.com", "queued-1")
	mustSend("queued@outlook.com", "queued-2")
	p.WaitLog(t, "Please try again later", "queued mail deferred by the MX")

	// Five block-list replies.
	for i := range 5 {
		mustSend("bob@outlook.com", fmt.Sprintf("block-%d", i+1))
	}
	var fifth time.Time
	for i := 0; ; i++ {
		if _, refs := mx.counts(""); len(refs) >= 5 {
			fifth = refs[4]
			break
		}
		if i > 600 {
			t.Fatalf("the MX never refused 5 times; postfix log:\n%s", p.Log(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; ; i++ {
		st := deliveryStatus(t, d)
		if st.Delivery.State == "blocked" {
			t.Logf("blocked at %s, %v after the 5th S3150 reply left the MX", st.Delivery.Since.Format("15:04:05.000"),
				st.Delivery.Since.Sub(fifth).Round(time.Microsecond))
			break
		}
		if i > 200 {
			t.Fatalf("msgate not blocked: %+v\n%s", st.Delivery, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	var before int
	if pauseQueue {
		// The queued recipient is deferred by the transport map, not
		// tried at the MX.
		p.WaitLog(t, "delivery to Microsoft paused until", "queued mail paused by the transport map")
		before, _ = mx.counts("queued@outlook.com")
	}
	// New mail: Microsoft's waits, other mail is delivered.
	var waiting []string
	for i := range 3 {
		subject := fmt.Sprintf("new-%d", i+1)
		switch ok := send("carol@outlook.com", subject); {
		case ok == pauseQueue:
			t.Fatalf("%q while blocked: accepted %v, want %v", subject, ok, !pauseQueue)
		case ok:
			waiting = append(waiting, subject) // held
		}
	}
	mustSend("dave@example.org", "other-1")
	p.WaitDelivered(t, func(ds []postfixtest.Delivery) bool { return len(postfixtest.BySubject(ds, "other-1")) == 1 }, "example.org mail while blocked")
	held := 0
	for _, e := range p.Queue(t) {
		if e.QueueName == "hold" {
			held++
		}
	}
	if held != len(waiting) {
		t.Fatalf("%d messages in the hold queue, want %d: %+v", held, len(waiting), p.Queue(t))
	}
	if pauseQueue {
		p.Flush(t)
		time.Sleep(2 * time.Second) // two of Postfix's 1s queue runs
		if after, _ := mx.counts("queued@outlook.com"); after != before {
			t.Fatalf("queued Microsoft mail was tried %d times while paused", after-before)
		}
	}
	if n, _ := mx.counts("carol@outlook.com"); n != 0 {
		t.Fatalf("new Microsoft mail reached the MX %d times while blocked", n)
	}

	// The MX accepts again; when the block's time is up msgate resumes.
	mx.setOpen()
	want := map[string]int{"queued-1": 1, "queued-2": 1}
	for _, s := range waiting {
		want[s] = 1
	}
	for i := 0; deliveryStatus(t, d).Delivery.State != "normal"; i++ {
		if i > 400 {
			t.Fatalf("never resumed:\n%s", d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pauseQueue {
		// The client retries what was deferred.
		for i := range 3 {
			subject := fmt.Sprintf("new-%d", i+1)
			for try := 0; !send("carol@outlook.com", subject); try++ {
				if try > 100 {
					t.Fatalf("%q still deferred after the resume", subject)
				}
				time.Sleep(100 * time.Millisecond)
			}
			want[subject] = 1
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		got := mx.deliveredCopy()
		done := true
		for s := range want {
			if got[s] < 1 {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the resume the MX has %v, want %v; queue %+v\nmsgate log:\n%s", got, want, p.Queue(t), d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a duplicate would come with the next queue runs
	got := mx.deliveredCopy()
	for s, n := range want {
		if got[s] != n {
			t.Errorf("%s delivered %d times, want %d", s, got[s], n)
		}
	}
	for s := range got {
		if strings.HasPrefix(s, "block-") {
			t.Errorf("%s was delivered: the MX refused it", s)
		}
	}
	if q := p.Queue(t); len(q) != 0 {
		t.Errorf("left in the queue: %+v", q)
	}
	if st := deliveryStatus(t, d); st.Delivery.State != "normal" || st.Delivery.Held != 0 || st.Delivery.Paused {
		t.Errorf("status after the resume: %+v", st.Delivery)
	}
	b, _ := os.ReadFile(events)
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e struct{ Event string }
		if json.Unmarshal([]byte(line), &e) == nil {
			kinds = append(kinds, e.Event)
		}
	}
	if strings.Join(kinds, ",") != "blocked,resumed" {
		t.Errorf("on_event saw %q, want blocked then resumed", kinds)
	}
	if lines := d.logLines(`"event":"blocked"`); len(lines) != 1 {
		t.Errorf("%d log lines for the block, want 1", len(lines))
	}
}
