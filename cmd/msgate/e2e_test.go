package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// msgateBinary builds cmd/msgate once per test run: the end-to-end tests
// run the real binary, as an admin would.
func msgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "msgate-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "msgate")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// daemonProc is a running `msgate serve`.
type daemonProc struct {
	cmd    *exec.Cmd
	log    *syncBuffer
	milter string // Postfix notation
	addr   string // host:port of the milter socket
	config string
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe writes config (with [milter] listen filled in) and runs the
// binary on it until the test ends.
func startServe(t *testing.T, config string) *daemonProc {
	t.Helper()
	port := freePort(t)
	milterAddr := fmt.Sprintf("inet:127.0.0.1:%d", port)
	path := filepath.Join(t.TempDir(), "msgate.toml")
	dir := t.TempDir()
	// The test's own part first: it may hold top-level keys (rate = []).
	cfg := fmt.Sprintf("%s\n[milter]\nlisten = %q\n[admin]\nlisten = \"unix:%s/admin.sock\"\n[state]\npath = \"%s/state.db\"\n[log]\nlevel = \"debug\"\nflush_interval = \"10ms\"\n",
		config, milterAddr, dir, dir)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(msgateBinary(t), "check", "-config", path).CombinedOutput(); err != nil {
		t.Fatalf("msgate check: %v\n%s", err, out)
	}
	d := &daemonProc{log: &syncBuffer{}, milter: milterAddr, config: path, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	d.start(t)
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("msgate log:\n%s", d.log.String())
		}
	})
	return d
}

// start runs msgate serve on the daemon's config and waits until it
// listens.
func (d *daemonProc) start(t *testing.T) {
	t.Helper()
	d.done = make(chan error, 1)
	d.cmd = exec.Command(msgateBinary(t), "serve", "-config", d.config)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	waitPort(t, d.addr, d)
}

// stop ends msgate serve with SIGTERM (SIGKILL after 30s); it does nothing
// when the daemon is not running.
func (d *daemonProc) stop() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	d.cmd = nil
}

func waitPort(t *testing.T, addr string, d *daemonProc) {
	t.Helper()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-d.done:
			t.Fatalf("msgate serve exited: %v\n%s", err, d.log.String())
		default:
		}
		if i > 300 {
			t.Fatalf("msgate never listened on %s:\n%s", addr, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logLines returns msgate's log lines that contain every one of subs. The
// test daemons write their lines every 10ms (log.flush_interval): the log is
// read once it has stopped growing.
func (d *daemonProc) logLines(subs ...string) []string {
	text := d.log.String()
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		now := d.log.String()
		if len(now) == len(text) {
			break
		}
		text = now
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func startPostfix(t *testing.T, milterAddr string) *postfixtest.Postfix {
	t.Helper()
	return postfixtest.Start(t, postfixtest.Options{
		MilterAddr:   milterAddr,
		RelayDomains: []string{"outlook.com", "hotmail.fr", "contoso.test", "example.net"},
	})
}

func delivered(p *postfixtest.Postfix, t *testing.T, subject string, rcpts ...string) {
	t.Helper()
	p.WaitDelivered(t, func(ds []postfixtest.Delivery) bool {
		return deliveredToAll(ds, subject, rcpts)
	}, fmt.Sprintf("%q delivered to %v", subject, rcpts))
}

// deliveredToAll reports whether the message with subject reached every
// one of rcpts.
func deliveredToAll(ds []postfixtest.Delivery, subject string, rcpts []string) bool {
	got := postfixtest.AllRecipients(postfixtest.BySubject(ds, subject))
	for _, r := range rcpts {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.EqualFold(g, r) }) {
			return false
		}
	}
	return true
}

func notDelivered(p *postfixtest.Postfix, t *testing.T, subject, rcpt string) {
	t.Helper()
	for _, r := range postfixtest.AllRecipients(postfixtest.BySubject(p.Delivered(t), subject)) {
		if strings.EqualFold(r, rcpt) {
			t.Errorf("%q was delivered to %s", subject, rcpt)
		}
	}
}

// Through a real Postfix: under the limit everything is delivered; over it
// the Microsoft recipient gets 451 4.7.1 while the other recipient of the
// same message is delivered.
func TestPostfixSMTPRateLimit(t *testing.T) {
	postfixtest.Require(t)
	ns := startDNS(t)
	ns.setMX("contoso.test", "contoso-test.mail.protection.outlook.com")
	ns.setMX("example.net", "mx.example.net")
	d := startServe(t, fmt.Sprintf(`
[microsoft]
resolver = %q
[[rate]]
name = "hourly"
window = "1h"
limit = 2
`, ns.Addr))
	p := startPostfix(t, d.milter)

	from := "alice@test.local"
	rcpts := []string{"a@outlook.com", "b@example.net", "c@contoso.test"}
	replies, data, err := p.Send(t, from, rcpts, postfixtest.Message(from, rcpts, "under-limit", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range replies {
		if !strings.HasPrefix(r, "250") {
			t.Errorf("RCPT %s: %q, want 250", rcpts[i], r)
		}
	}
	if !strings.HasPrefix(data, "250") {
		t.Fatalf("DATA: %q", data)
	}
	delivered(p, t, "under-limit", rcpts...)

	rcpts = []string{"d@hotmail.fr", "e@example.net"}
	replies, data, err = p.Send(t, from, rcpts, postfixtest.Message(from, rcpts, "over-limit", "hello again"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(replies[0], "451 4.7.1 ") || !strings.Contains(replies[0], "Microsoft-hosted") {
		t.Errorf("limit+1 Microsoft recipient: %q, want 451 4.7.1 with the reason", replies[0])
	}
	if !strings.HasPrefix(replies[1], "250") || !strings.HasPrefix(data, "250") {
		t.Fatalf("non-Microsoft recipient of the same message: RCPT %q DATA %q", replies[1], data)
	}
	delivered(p, t, "over-limit", "e@example.net")
	notDelivered(p, t, "over-limit", "d@hotmail.fr")
	if !strings.Contains(p.Log(t), "milter-reject: RCPT from") {
		t.Errorf("Postfix logged no milter-reject for the RCPT")
	}
	// Another account is untouched.
	bob := "bob@test.local"
	replies, _, err = p.Send(t, bob, []string{"f@outlook.com"}, postfixtest.Message(bob, []string{"f@outlook.com"}, "bob", "hi"))
	if err != nil || !strings.HasPrefix(replies[0], "250") {
		t.Fatalf("bob: %v %v", replies, err)
	}
	delivered(p, t, "bob", "f@outlook.com")
	if lines := d.logLines(`"account":"alice@test.local"`, `"rcpt_domain":"contoso.test"`, `"provider":"microsoft365"`); len(lines) == 0 {
		t.Errorf("no decision logged for the Microsoft 365 recipient")
	}
}

// Mail injected with the sendmail command is deferred as a whole when over
// the limit, stays in maildrop, and is delivered once the window has room.
func TestPostfixSendmailCommand(t *testing.T) {
	postfixtest.Require(t)
	ns := startDNS(t)
	d := startServe(t, fmt.Sprintf(`
[microsoft]
resolver = %q
[[rate]]
name = "short"
window = "6s"
limit = 1
`, ns.Addr))
	p := startPostfix(t, d.milter)

	from := "cron@test.local"
	if err := p.Sendmail(t, from, []string{"a@outlook.com"}, postfixtest.Message(from, []string{"a@outlook.com"}, "first", "1")); err != nil {
		t.Fatal(err)
	}
	delivered(p, t, "first", "a@outlook.com")
	rcpts := []string{"b@outlook.com", "c@example.net"}
	if err := p.Sendmail(t, from, rcpts, postfixtest.Message(from, rcpts, "second", "2")); err != nil {
		t.Fatal(err)
	}
	p.WaitLog(t, "milter-reject: END-OF-MESSAGE", "the second message deferred at end of message")
	if lines := d.logLines(`"non_smtp":true`, `"stage":"end-of-message"`, `"action":"defer"`); len(lines) == 0 {
		t.Errorf("msgate logged no whole-message deferral for non-SMTP mail")
	}
	if log := p.Log(t); strings.Contains(log, "can't reject recipient in non-smtpd") {
		t.Errorf("msgate refused a recipient of non-SMTP mail: Postfix says\n%s", log)
	}
	// Nothing is lost: once the window rolls, pickup's retry goes through.
	delivered(p, t, "second", rcpts...)
}

// TestMain removes the binary the end-to-end tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
