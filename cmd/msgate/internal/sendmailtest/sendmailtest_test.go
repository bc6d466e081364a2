//go:build linux

package sendmailtest

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The sink keeps what a client sends, dots unstuffed, and the client
// reports every RCPT reply.
func TestSinkAndClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewSink(ln)
	defer s.Close()
	conn, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: dots\n\n.leading dot\nlast\n"
	res, err := send(conn, "a@test.local", []string{"b@example.net", "c@outlook.com"}, body)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RcptReplies) != 2 || !strings.HasPrefix(res.RcptReplies[1], "250 ") || !strings.HasPrefix(res.DataReply, "250 ") {
		t.Fatalf("replies %+v", res)
	}
	ds := s.Delivered()
	if len(ds) != 1 {
		t.Fatalf("%d deliveries", len(ds))
	}
	d := ds[0]
	if d.Sender != "a@test.local" || strings.Join(d.Recipients, ",") != "b@example.net,c@outlook.com" || d.Message != body {
		t.Errorf("delivery %+v", d)
	}
	if d.Header("Subject") != "dots" {
		t.Errorf("subject %q", d.Header("Subject"))
	}
	if errs := s.Errors(); len(errs) != 0 {
		t.Errorf("sink errors: %v", errs)
	}
}

func TestQueueID(t *testing.T) {
	for reply, want := range map[string]string{
		"250 2.0.0 6AR6V3NZ026290 Message accepted for delivery": "6AR6V3NZ026290",
		"250 2.0.0 Ok: queued as 4Xyz":                           "",
		"451 4.3.0 Temporary failure":                            "",
		"":                                                       "",
	} {
		if got := QueueID(reply); got != want {
			t.Errorf("QueueID(%q) = %q, want %q", reply, got, want)
		}
	}
}

// Sendmail's log lines lose the syslog priority and time stamp.
func TestSyslogReceiver(t *testing.T) {
	r, err := listenSyslog(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.add("<22>Nov 27 06:31:04 sendmail[26290]: 6AR6V3NZ026290: Milter accept: message")
	r.add("<20>Nov  7 06:30:54 sendmail[26148]: STARTTLS: ServerCertFile missing\n")
	want := "sendmail[26290]: 6AR6V3NZ026290: Milter accept: message\nsendmail[26148]: STARTTLS: ServerCertFile missing\n"
	if got := r.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

// The generated .mc keeps everything in the test's folder and pastes the
// milter lines unchanged before the MAILER lines.
func TestMC(t *testing.T) {
	s := &Sendmail{opts: Options{MilterMC: "INPUT_MAIL_FILTER(`x', `S=inet:1@127.0.0.1')dnl", SMTPPort: 25, SinkPort: 2526}, dir: "/tmp/d"}
	mc := s.MC()
	for _, want := range []string{
		"define(`QUEUE_DIR', `/tmp/d/mqueue')dnl\n",
		"define(`RELAY_MAILER_ARGS', `TCP $h 2526')dnl\n",
		"DAEMON_OPTIONS(`Port=25, Addr=127.0.0.1, Name=MTA')dnl\n",
		"INPUT_MAIL_FILTER(`x', `S=inet:1@127.0.0.1')dnl\ndnl ---- end of Options.MilterMC ----\nMAILER(`local')dnl\n",
	} {
		if !strings.Contains(mc, want) {
			t.Errorf(".mc lacks %q:\n%s", want, mc)
		}
	}
}

// Through a namespace: a listener and a dialer inside it meet; the
// machine's loopback cannot reach the listener.
func TestNetNS(t *testing.T) {
	Require(t)
	ns := NewNetNS(t)
	ln, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := NewSink(ln)
	defer s.Close()
	conn, err := ns.Dial("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send(conn, "a@test.local", []string{"b@example.net"}, "Subject: x\n\nx\n"); err != nil {
		t.Fatal(err)
	}
	if len(s.Delivered()) != 1 {
		t.Fatalf("nothing delivered inside the namespace")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("the namespace's listener %s is reachable from the machine's loopback", ln.Addr())
	}
	// The process's main thread, which /proc/self shows, never joins.
	if ns.holds(os.Getpid()) {
		t.Errorf("the test process's main thread is in the test's namespace")
	}
}
