//go:build linux

package sendmailtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
)

// Time limits. Every wait in this package is bounded.
const (
	commandTimeout  = time.Minute
	startTimeout    = 30 * time.Second
	stopTimeout     = 10 * time.Second
	deliveryTimeout = 30 * time.Second
	pollInterval    = 50 * time.Millisecond
)

// DefaultCacheDir is where .ci/test unpacks Debian's Sendmail packages;
// the environment variable MSGATE_SENDMAIL_CACHE overrides it.
const DefaultCacheDir = "/var/cache/msgate-test/sendmail"

// CacheDir is the folder with the unpacked Sendmail: root/ holds what
// dpkg-deb -x unpacked, sendmail a copy of the binary without its setgid
// bit (a setgid binary ignores LD_LIBRARY_PATH, which finds the unpacked
// libwrap), ready the version, written last.
func CacheDir() string {
	if d := os.Getenv("MSGATE_SENDMAIL_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

func cfDir() string { return filepath.Join(CacheDir(), "root/usr/share/sendmail/cf") }

// ErrUnavailable is wrapped by Available's errors.
var ErrUnavailable = errors.New("sendmailtest: real Sendmail not available")

// Available reports whether NewNetNS and Start can run here: as root
// (namespaces, mounts), with the unpacked Sendmail, m4 and the namespace
// tools. The error says what is missing.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: the tests must run as root (they make network, UTS and mount namespaces)", ErrUnavailable)
	}
	for _, f := range []string{"ready", "sendmail", "root/usr/share/sendmail/cf/m4/cf.m4"} {
		if _, err := os.Stat(filepath.Join(CacheDir(), f)); err != nil {
			return fmt.Errorf("%w: %v (bash .ci/test unpacks Debian's sendmail-bin, sendmail-base, sendmail-cf and libwrap0 there)", ErrUnavailable, err)
		}
	}
	for _, name := range []string{"ip", "nsenter", "unshare", "mount", "hostname", "m4"} {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("%w: %v (bash .ci/test installs m4; the others come with iproute2, util-linux, mount and hostname)", ErrUnavailable, err)
		}
	}
	return nil
}

// Require skips the test when Sendmail is not available, or fails it when
// MSGATE_E2E=1 (as .ci/test sets), so that CI cannot pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("MSGATE_E2E") == "1" {
			t.Fatalf("MSGATE_E2E=1 but %v", err)
		}
		t.Skip(err)
	}
}

// Options configure the Sendmail that Start runs.
type Options struct {
	// MilterMC holds the sendmail.mc lines that hook up the milter, such
	// as the contents of contrib/sendmail/msgate.mc. They are pasted
	// unchanged into the test's .mc, before its MAILER lines.
	MilterMC string
	// SMTPPort is Sendmail's SMTP port on 127.0.0.1 inside the
	// namespace; default 25.
	SMTPPort int
	// SinkPort is the sink's port on 127.0.0.1 inside the namespace;
	// default 2526.
	SinkPort int
	// Hostname is Sendmail's fully qualified name ($j); default
	// mx.test.local.
	Hostname string
}

// Sendmail is a running Sendmail daemon in a test's network namespace,
// with its sink. See the package documentation for the layout.
type Sendmail struct {
	opts   Options
	ns     *NetNS
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // from Wait, once done is closed
	sink   *Sink
	syslog *syslogReceiver
}

// Start writes a sendmail.cf with m4 (the test's .mc plus opts.MilterMC),
// starts the sink and Sendmail inside ns, and stops both when the test
// ends. It returns once Sendmail listens, without connecting to it, so
// that the milter sees only the test's own sessions.
func Start(t testing.TB, ns *NetNS, opts Options) *Sendmail {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	if opts.SMTPPort == 0 {
		opts.SMTPPort = 25
	}
	if opts.SinkPort == 0 {
		opts.SinkPort = 2526
	}
	if opts.Hostname == "" {
		opts.Hostname = "mx.test.local"
	}
	// A short folder of its own, not t.TempDir: the syslog socket's path
	// must fit in a sockaddr_un.
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", nsPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	s := &Sendmail{opts: opts, ns: ns, dir: dir, done: make(chan struct{})}
	t.Cleanup(func() { os.RemoveAll(dir) })

	if err := s.writeFiles(); err != nil {
		t.Fatal(err)
	}
	s.syslog, err = listenSyslog(filepath.Join(dir, "dev", "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.syslog.Close() })

	ln, err := ns.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.SinkPort)))
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	s.sink = NewSink(ln)
	t.Cleanup(func() { s.sink.Close() })

	if err := s.buildCF(); err != nil {
		t.Fatal(err)
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("sendmail log (%s):\n%s", s.dir, s.Log())
		}
	})
	if err := s.waitListening(); err != nil {
		t.Fatalf("sendmail: %v\nlog:\n%s", err, s.Log())
	}
	return s
}

// Dir is the test's Sendmail folder: sendmail.mc, sendmail.cf, the queue.
func (s *Sendmail) Dir() string { return s.dir }

// Sink is the next hop that Sendmail relays every message to.
func (s *Sendmail) Sink() *Sink { return s.sink }

// SMTPAddr is Sendmail's SMTP address inside the namespace.
func (s *Sendmail) SMTPAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.opts.SMTPPort))
}

// deviceNodes are bound from the machine's /dev into the /dev that
// Sendmail sees, which is otherwise the test's dev folder with its own
// syslog socket as /dev/log.
var deviceNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

func (s *Sendmail) writeFiles() error {
	files := map[string]string{
		"hosts": fmt.Sprintf("127.0.0.1\t%s %s localhost\n::1\tlocalhost\n",
			s.opts.Hostname, strings.SplitN(s.opts.Hostname, ".", 2)[0]),
		// Nothing listens on port 53 unless the test serves DNS there
		// itself: a lookup fails at once, and never leaves the namespace.
		"resolv.conf": "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
		// Host names from /etc/hosts only; no NIS, no DNS for names.
		"service.switch": "hosts\tfiles\naliases\tfiles\n",
		"statistics":     "",
		"sendmail.out":   "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(s.dir, "mqueue"), 0o700); err != nil {
		return err
	}
	dev := filepath.Join(s.dir, "dev")
	if err := os.Mkdir(dev, 0o755); err != nil {
		return err
	}
	for _, n := range deviceNodes {
		if _, err := os.Stat("/dev/" + n); err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dev, n), nil, 0o644); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// MC returns the test's sendmail.mc: a Sendmail that listens on
// 127.0.0.1:SMTPPort, keeps its queue, pid file and logs in the test's
// folder, and relays all mail to the sink; with MilterMC in the middle.
func (s *Sendmail) MC() string {
	d := s.dir
	var b strings.Builder
	fmt.Fprintf(&b, "divert(-1)dnl\n# Written by sendmailtest for one test.\ndivert(0)dnl\n")
	lines := []string{
		"VERSIONID(`msgate sendmailtest')",
		"OSTYPE(`linux')",
		"define(`QUEUE_DIR', `" + d + "/mqueue')",
		"define(`confPID_FILE', `" + d + "/sendmail.pid')",
		"define(`STATUS_FILE', `" + d + "/statistics')",
		"define(`HELP_FILE', `" + CacheDir() + "/root/etc/mail/helpfile')",
		"define(`ALIAS_FILE', `')",
		"define(`confSERVICE_SWITCH_FILE', `" + d + "/service.switch')",
		"define(`confHOST_STATUS_DIRECTORY', `')",
		// Milter replies and header changes are logged from level 9,
		// every milter command's result from 13.
		"define(`confLOG_LEVEL', `14')",
		"define(`confMILTER_LOG_LEVEL', `14')",
		// A busy CI machine must not make Sendmail queue or refuse mail.
		"define(`confQUEUE_LA', `1000')",
		"define(`confREFUSE_LA', `1000')",
		"define(`SMART_HOST', `relay:[127.0.0.1]')",
		"define(`RELAY_MAILER_ARGS', `TCP $h " + strconv.Itoa(s.opts.SinkPort) + "')",
		"DAEMON_OPTIONS(`Port=" + strconv.Itoa(s.opts.SMTPPort) + ", Addr=127.0.0.1, Name=MTA')",
		"FEATURE(`no_default_msa')",
		// The test's domains are in no DNS.
		"FEATURE(`accept_unresolvable_domains')",
	}
	for _, l := range lines {
		b.WriteString(l + "dnl\n")
	}
	b.WriteString("dnl ---- Options.MilterMC ----\n")
	b.WriteString(s.opts.MilterMC)
	if !strings.HasSuffix(s.opts.MilterMC, "\n") {
		b.WriteString("\n")
	}
	b.WriteString("dnl ---- end of Options.MilterMC ----\n")
	b.WriteString("MAILER(`local')dnl\nMAILER(`smtp')dnl\n")
	return b.String()
}

func (s *Sendmail) buildCF() error {
	mc := filepath.Join(s.dir, "sendmail.mc")
	if err := os.WriteFile(mc, []byte(s.MC()), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("m4", "-D_CF_DIR_="+cfDir()+"/", filepath.Join(cfDir(), "m4/cf.m4"), mc)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		return fmt.Errorf("m4 %s: %v\n%s", mc, err, stderr.String())
	}
	return os.WriteFile(filepath.Join(s.dir, "sendmail.cf"), out, 0o644)
}

// CF returns the sendmail.cf that m4 built.
func (s *Sendmail) CF(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "sendmail.cf"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startScript runs inside `unshare --uts --mount` (itself inside the
// network namespace): it gives Sendmail its own host name, /etc/hosts,
// /etc/resolv.conf and /dev (with the test's syslog socket as /dev/log),
// then becomes Sendmail in the foreground (-bD).
const startScript = `set -e
dir=$1 cache=$2 host=$3 libs=$4
hostname "$host"
mount --bind "$dir/hosts" /etc/hosts
mount --bind "$dir/resolv.conf" /etc/resolv.conf
for n in $5; do mount --bind "/dev/$n" "$dir/dev/$n"; done
mount --bind "$dir/dev" /dev
export LD_LIBRARY_PATH="$libs"
exec "$cache/sendmail" -C "$dir/sendmail.cf" -bD -q10s
`

func (s *Sendmail) start() error {
	libs, _ := filepath.Glob(filepath.Join(CacheDir(), "root/usr/lib/*/libwrap.so.0"))
	libDir := ""
	if len(libs) > 0 {
		libDir = filepath.Dir(libs[0])
	}
	var nodes []string
	for _, n := range deviceNodes {
		if _, err := os.Stat(filepath.Join(s.dir, "dev", n)); err == nil {
			nodes = append(nodes, n)
		}
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "sendmail.out"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	s.cmd = s.ns.Command("unshare", "--uts", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", startScript, "sh", s.dir, CacheDir(), s.opts.Hostname, libDir, strings.Join(nodes, " "))
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.Env = append(os.Environ(), "LC_ALL=C")
	// Its own process group, so that the daemon's children can be
	// stopped with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting sendmail: %w", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	return nil
}

// waitListening waits until Sendmail listens on its SMTP port.
func (s *Sendmail) waitListening() error {
	err := s.ns.WaitListening(s.cmd.Process.Pid, s.opts.SMTPPort, startTimeout)
	if err == nil {
		return nil
	}
	select {
	case <-s.done:
		out, _ := os.ReadFile(filepath.Join(s.dir, "sendmail.out"))
		return fmt.Errorf("exited: %v\n%s", s.err, out)
	case <-time.After(time.Second):
		return err
	}
}

// stop ends Sendmail: SIGTERM (the daemon passes it on to its children),
// then after 10 seconds SIGKILL to its whole process group.
func (s *Sendmail) stop(t testing.TB) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		t.Errorf("sendmail (pid %d) did not stop within %v of SIGTERM; killing its process group", pid, stopTimeout)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.done
	}
	// Delivery agents that outlived the daemon.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// Send submits one message to Sendmail over SMTP from inside the
// namespace (see send for what is returned).
func (s *Sendmail) Send(t testing.TB, from string, rcpts []string, body string) (Result, error) {
	t.Helper()
	conn, err := s.ns.Dial("tcp", s.SMTPAddr(), 10*time.Second)
	if err != nil {
		return Result{}, fmt.Errorf("sendmailtest: connecting to sendmail: %w", err)
	}
	return send(conn, from, rcpts, body)
}

// Log returns what Sendmail has logged so far through syslog(3), one
// line per message: "sendmail[PID]: QUEUEID: text".
func (s *Sendmail) Log() string { return s.syslog.String() }

// WaitLog polls the log until it contains substr and returns it. After
// 30 seconds it fails the test with the log.
func (s *Sendmail) WaitLog(t testing.TB, substr, what string) string {
	t.Helper()
	deadline := time.Now().Add(deliveryTimeout)
	for {
		if log := s.Log(); strings.Contains(log, substr) {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s (%q in the sendmail log); log:\n%s", deliveryTimeout, what, substr, s.Log())
		}
		time.Sleep(pollInterval)
	}
}

// Delivered returns every message the sink has received.
func (s *Sendmail) Delivered() []postfixtest.Delivery { return s.sink.Delivered() }

// WaitDelivered polls the sink until pred holds and returns the
// deliveries. After 30 seconds it fails the test with what was delivered
// and the Sendmail log.
func (s *Sendmail) WaitDelivered(t testing.TB, pred func([]postfixtest.Delivery) bool, what string) []postfixtest.Delivery {
	t.Helper()
	deadline := time.Now().Add(deliveryTimeout)
	for {
		ds := s.Delivered()
		if pred(ds) {
			return ds
		}
		if time.Now().After(deadline) {
			var got []string
			for _, d := range ds {
				got = append(got, fmt.Sprintf("%q to %v", d.Header("Subject"), d.Recipients))
			}
			t.Fatalf("waited %v for %s\ndelivered: %v\nsink errors: %v\nsendmail log:\n%s",
				deliveryTimeout, what, got, s.sink.Errors(), s.Log())
		}
		time.Sleep(pollInterval)
	}
}

// QueueID returns the queue id in Sendmail's reply to the end of DATA,
// "250 2.0.0 6AR6V3NZ026290 Message accepted for delivery", or "".
func QueueID(dataReply string) string {
	f := strings.Fields(dataReply)
	if len(f) >= 4 && f[0] == "250" && strings.Join(f[3:], " ") == "Message accepted for delivery" {
		return f[2]
	}
	return ""
}

// syslogReceiver is the /dev/log that Sendmail sees: a datagram socket
// in the test's folder, bound over /dev inside Sendmail's mount namespace.
type syslogReceiver struct {
	conn *net.UnixConn
	mu   sync.Mutex
	b    strings.Builder
	done chan struct{}
}

func listenSyslog(path string) (*syslogReceiver, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("syslog socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		conn.Close()
		return nil, err
	}
	r := &syslogReceiver{conn: conn, done: make(chan struct{})}
	go r.loop()
	return r, nil
}

func (r *syslogReceiver) loop() {
	defer close(r.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := r.conn.Read(buf)
		if err != nil {
			return
		}
		r.add(string(buf[:n]))
	}
}

// add keeps one syslog(3) datagram, "<22>Nov 27 06:31:04 sendmail[26290]:
// text", as "sendmail[26290]: text".
func (r *syslogReceiver) add(msg string) {
	msg = strings.TrimRight(msg, "\x00\n")
	if strings.HasPrefix(msg, "<") {
		if i := strings.IndexByte(msg, '>'); i > 0 {
			msg = msg[i+1:]
		}
	}
	// "Mmm dd hh:mm:ss " is 16 bytes.
	if len(msg) > 16 && msg[3] == ' ' && msg[6] == ' ' && msg[9] == ':' {
		msg = msg[16:]
	}
	r.mu.Lock()
	r.b.WriteString(msg)
	r.b.WriteString("\n")
	r.mu.Unlock()
}

func (r *syslogReceiver) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.b.String()
}

func (r *syslogReceiver) Close() error {
	err := r.conn.Close()
	<-r.done
	return err
}
