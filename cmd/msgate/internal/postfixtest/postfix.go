package postfixtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configure the Postfix that Start runs. The zero value is a Postfix
// without milter that routes nothing to the sink.
type Options struct {
	// MilterAddr is set as both smtpd_milters and non_smtpd_milters, e.g.
	// "inet:127.0.0.1:18895". Empty means no milter.
	MilterAddr string
	// DefaultAction is milter_default_action; default "tempfail".
	DefaultAction string
	// SMTPPort is the port of smtpd on 127.0.0.1; default 2525.
	SMTPPort int
	// SinkPort is the port of smtp-sink on 127.0.0.1; default 2526.
	SinkPort int
	// RelayDomains are routed, with their subdomains, through transport_maps
	// to the sink. Mail for any other domain fails at once with the error
	// transport (it never leaves the machine).
	RelayDomains []string
	// MainCF holds further main.cf parameters, replacing the ones Start
	// sets (e.g. transport_maps), e.g. for SASL.
	MainCF map[string]string
	// SASLUsers turns on a submission service (smtpd on 127.0.0.1:
	// SubmissionPort that relays only for authenticated clients) with SMTP
	// AUTH through Cyrus SASL and these users and passwords, so that
	// {auth_authen} reaches the milter. SendAuth submits there.
	SASLUsers map[string]string
	// SubmissionPort is the submission service's port; default 2587.
	SubmissionPort int
}

// Postfix is a running Postfix and its sink, owned by one test.
type Postfix struct {
	opts     Options
	dir      string // per-test state, removed with the test's TempDir
	logPath  string // maillog_file
	sinkRoot string // smtp-sink's root directory (-R), owned by postfix
	sink     *exec.Cmd
	sinkDone chan struct{}
	sinkErr  error
}

// Fixed names shared by every test process on the machine.
const (
	myHostname  = "mx.test.local"
	sinkDump    = "dump"                  // inside sinkRoot
	sinkMarker  = "X-Postfixtest-Sink: 1" // -S start string, first line of each dumped message
	lockName    = "msgate-postfixtest.lock"
	sinkPIDName = "msgate-postfixtest.sink.pid"
)

// Time limits. Every wait in this package is bounded.
const (
	lockTimeout     = 5 * time.Minute
	startTimeout    = 30 * time.Second
	commandTimeout  = time.Minute
	deliveryTimeout = 60 * time.Second
	pollInterval    = 250 * time.Millisecond
)

// ErrUnavailable is wrapped by Available's errors.
var ErrUnavailable = errors.New("postfixtest: real Postfix not available")

// The programs Start and the methods run.
var programs = []string{"postfix", "postconf", "postqueue", "postsuper", "postkick", "sendmail", "smtp-sink"}

// Available reports whether Start can run here: as root, with Postfix and
// smtp-sink installed. The error says what is missing.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: the tests must run as root (they rewrite /etc/postfix and start the system Postfix)", ErrUnavailable)
	}
	for _, name := range programs {
		if _, err := program(name); err != nil {
			return fmt.Errorf("%w: %v (apt-get install postfix; bash .ci/test installs it)", ErrUnavailable, err)
		}
	}
	return nil
}

// Require skips the test when Postfix is not available, or fails it when
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

// program finds a Postfix program also when PATH lacks the sbin folders.
func program(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or /usr/sbin", name)
}

// Start configures and starts Postfix and smtp-sink for this test and stops
// both when the test ends. It returns once the master listens on SMTPPort
// (waiting at most 30 seconds) without connecting to it, so the milter sees
// only the test's own sessions.
func Start(t testing.TB, opts Options) *Postfix {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	if opts.DefaultAction == "" {
		opts.DefaultAction = "tempfail"
	}
	if opts.SMTPPort == 0 {
		opts.SMTPPort = 2525
	}
	if opts.SinkPort == 0 {
		opts.SinkPort = 2526
	}
	if opts.SubmissionPort == 0 {
		opts.SubmissionPort = 2587
	}

	// TempDir before Cleanup: cleanups run last-in first-out, so Postfix
	// and the sink are stopped before the directory goes.
	dir := t.TempDir()
	release, err := acquire(lockTimeout)
	if err != nil {
		t.Fatal(err)
	}
	p := &Postfix{
		opts:     opts,
		dir:      dir,
		logPath:  filepath.Join(dir, "postfix.log"),
		sinkRoot: filepath.Join(dir, "sink"),
	}
	t.Cleanup(func() {
		defer release()
		p.stop(t)
	})

	// A test binary that was killed leaves Postfix or its sink running.
	if err := stopPostfix(); err != nil {
		t.Fatalf("stopping a Postfix left from before: %v", err)
	}
	killStaleSink(t)
	if err := p.writeConfig(); err != nil {
		t.Fatal(err)
	}
	purgeQueue(t)
	for _, port := range []int{opts.SMTPPort, opts.SinkPort, opts.SubmissionPort} {
		if err := portFree(port); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.startSink(); err != nil {
		t.Fatal(err)
	}
	if out, err := runFile(filepath.Join(dir, "postfix-start.out"), "postfix", "start"); err != nil {
		t.Fatalf("postfix start: %v\n%s\nlog:\n%s", err, out, p.logTail(40))
	}
	// Not a test connection: smtpd would pass it on to the milter, which
	// would see a session the test did not make.
	if err := waitListening(p.opts.SMTPPort, startTimeout); err != nil {
		t.Fatalf("Postfix smtpd on %s: %v\nlog:\n%s", p.SMTPAddr(), err, p.logTail(40))
	}
	if len(opts.SASLUsers) > 0 {
		if err := waitListening(p.opts.SubmissionPort, startTimeout); err != nil {
			t.Fatalf("Postfix submission on port %d: %v\nlog:\n%s", p.opts.SubmissionPort, err, p.logTail(40))
		}
	}
	if err := waitGreeting(p.sinkAddr(), startTimeout); err != nil {
		t.Fatalf("smtp-sink on %s: %v", p.sinkAddr(), err)
	}
	return p
}

// SMTPAddr is the host:port of Postfix's smtpd.
func (p *Postfix) SMTPAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.opts.SMTPPort))
}

func (p *Postfix) sinkAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.opts.SinkPort))
}

// mainCF returns the main.cf parameters in the order they are written.
func (p *Postfix) mainCF() [][2]string {
	next := fmt.Sprintf("smtp:[127.0.0.1]:%d", p.opts.SinkPort)
	var routes []string
	for _, d := range p.opts.RelayDomains {
		d = strings.TrimPrefix(strings.ToLower(d), ".")
		routes = append(routes, d+"="+next, "."+d+"="+next)
	}
	transport := ""
	if len(routes) > 0 {
		transport = "inline:{ " + strings.Join(routes, ", ") + " }"
	}
	kv := [][2]string{
		{"compatibility_level", "3.6"},
		{"myhostname", myHostname},
		{"mydomain", "test.local"},
		{"myorigin", "$myhostname"},
		{"inet_interfaces", "loopback-only"},
		{"inet_protocols", "ipv4"},
		{"mydestination", "$myhostname, localhost"},
		{"mynetworks", "127.0.0.0/8"},
		{"relayhost", ""},
		{"transport_maps", transport},
		// Anything not routed to the sink fails here rather than being
		// looked up: the machine's resolver is not on loopback.
		{"default_transport", "error:5.1.2 destination not routed by postfixtest"},
		{"smtp_dns_support_level", "disabled"},
		{"smtp_connect_timeout", "5s"},
		{"alias_maps", "inline:{ postmaster=root }"},
		{"alias_database", ""},
		{"biff", "no"},
		{"append_dot_mydomain", "no"},
		{"enable_long_queue_ids", "yes"},
		{"maillog_file", p.logPath},
		{"maillog_file_prefixes", p.dir},
		{"queue_run_delay", "1s"},
		{"minimal_backoff_time", "1s"},
		{"maximal_backoff_time", "2s"},
		{"milter_protocol", "6"},
		{"milter_default_action", p.opts.DefaultAction},
		{"milter_connect_macros", "j {daemon_name} {daemon_addr} v _ {client_addr} {client_name} {client_port}"},
		{"milter_mail_macros", "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer} {client_addr} {daemon_name}"},
		{"milter_rcpt_macros", "i {rcpt_addr} {rcpt_host} {rcpt_mailer}"},
		{"milter_end_of_data_macros", "i"},
		{"milter_end_of_header_macros", "i"},
	}
	if len(p.opts.SASLUsers) > 0 {
		kv = append(kv,
			[2]string{"smtpd_sasl_type", "cyrus"},
			[2]string{"smtpd_sasl_path", "smtpd"},
			[2]string{"cyrus_sasl_config_path", p.dir},
			[2]string{"smtpd_sasl_local_domain", "test.local"},
			[2]string{"smtpd_sasl_security_options", "noanonymous"})
	}
	if p.opts.MilterAddr != "" {
		kv = append(kv,
			[2]string{"smtpd_milters", p.opts.MilterAddr},
			[2]string{"non_smtpd_milters", p.opts.MilterAddr})
	}
	keys := make([]string, 0, len(p.opts.MainCF))
	for k := range p.opts.MainCF {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// A key set above is replaced in place: main.cf must not name a
		// parameter twice (postconf warns, and the warning fails
		// commands that check their output).
		i := slices.IndexFunc(kv, func(e [2]string) bool { return e[0] == k })
		if i >= 0 {
			kv[i][1] = p.opts.MainCF[k]
		} else {
			kv = append(kv, [2]string{k, p.opts.MainCF[k]})
		}
	}
	return kv
}

// masterCF is Debian's master.cf without chroot, without the pipe
// transports, and with smtpd on 127.0.0.1:%d only.
const masterCF = `# Written by postfixtest for one test; rewritten by the next.
127.0.0.1:%d inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// submissionCF is a submission service as Debian's master.cf comments it
// out: AUTH required to relay.
const submissionCF = `127.0.0.1:%d inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
`

func (p *Postfix) writeConfig() error {
	confDir, err := configDir()
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# Written by postfixtest for one test; rewritten by the next.\n")
	for _, kv := range p.mainCF() {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
	}
	// Postfix commands run while postlogd is down (postsuper before start
	// and after stop) write the log themselves as the postfix user, so it
	// must reach the file: TempDir makes the test's folder and the one
	// above it 0700.
	for _, d := range []string{p.dir, filepath.Dir(p.dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	if err := createOwned(p.logPath, "postfix"); err != nil {
		return fmt.Errorf("creating the postfix log: %w", err)
	}
	if err := p.writeSASL(); err != nil {
		return fmt.Errorf("setting up SASL: %w", err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "main.cf"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing main.cf: %w", err)
	}
	master := fmt.Appendf(nil, masterCF, p.opts.SMTPPort)
	if len(p.opts.SASLUsers) > 0 {
		master = fmt.Appendf(master, submissionCF, p.opts.SubmissionPort)
	}
	if err := os.WriteFile(filepath.Join(confDir, "master.cf"), master, 0o644); err != nil {
		return fmt.Errorf("writing master.cf: %w", err)
	}
	return nil // `postfix start` checks the configuration
}

// writeSASL writes smtpd.conf in the test's folder and the test's users to
// the system sasldb (/etc/sasldb2: Debian's Cyrus SASL does not take
// another path from smtpd.conf), readable by smtpd, which runs as postfix.
func (p *Postfix) writeSASL() error {
	if len(p.opts.SASLUsers) == 0 {
		return nil
	}
	const db = "/etc/sasldb2"
	conf := "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
	if err := os.WriteFile(filepath.Join(p.dir, "smtpd.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	users := make([]string, 0, len(p.opts.SASLUsers))
	for u := range p.opts.SASLUsers {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		// The realm is smtpd_sasl_local_domain; clients log in with the bare name.
		if out, err := runInput(p.opts.SASLUsers[u], "saslpasswd2", "-f", db, "-p", "-c", "-u", "test.local", u); err != nil {
			return fmt.Errorf("saslpasswd2 %s: %v: %s", u, err, out)
		}
	}
	pu, err := user.Lookup("postfix")
	if err != nil {
		return err
	}
	gid, _ := strconv.Atoi(pu.Gid)
	if err := os.Chown(db, 0, gid); err != nil {
		return err
	}
	return os.Chmod(db, 0o640)
}

// configDir is where Postfix reads main.cf by default.
func configDir() (string, error) {
	if fi, err := os.Stat("/etc/postfix"); err == nil && fi.IsDir() {
		return "/etc/postfix", nil
	}
	return "", errors.New("postfixtest: /etc/postfix does not exist")
}

// startSink starts smtp-sink in its own session, confined (-R) to sinkRoot
// and appending every message to sinkRoot/dump (-D), each preceded by
// sinkMarker (-S).
func (p *Postfix) startSink() error {
	u, err := user.Lookup("postfix")
	if err != nil {
		return fmt.Errorf("looking up the postfix user: %w", err)
	}
	if err := os.MkdirAll(p.sinkRoot, 0o755); err != nil {
		return err
	}
	if err := chownUser(p.sinkRoot, u); err != nil {
		return err
	}
	path, err := program("smtp-sink")
	if err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(p.dir, "smtp-sink.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(path, "-u", "postfix", "-R", p.sinkRoot,
		"-D", "/"+sinkDump, "-S", sinkMarker+`\n`, "-h", "sink.test.local",
		p.sinkAddr(), "256")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting smtp-sink: %w", err)
	}
	p.sink = cmd
	p.sinkDone = make(chan struct{})
	go func() {
		p.sinkErr = cmd.Wait()
		close(p.sinkDone)
	}()
	if err := os.WriteFile(sinkPIDFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	return nil
}

// stop runs at the end of the test.
func (p *Postfix) stop(t testing.TB) {
	if t.Failed() {
		t.Logf("postfix log (last lines):\n%s", p.logTail(60))
		if q, err := queue(); err == nil && len(q) > 0 {
			t.Logf("postfix queue: %+v", q)
		}
	}
	if err := stopPostfix(); err != nil {
		t.Errorf("postfix stop: %v", err)
	}
	purgeQueue(t)
	// The log file goes with the test's TempDir: later Postfix commands,
	// this package's or an admin's, log to syslog again as by default.
	if out, err := run("postconf", "-X", "maillog_file", "maillog_file_prefixes"); err != nil {
		t.Errorf("postconf -X maillog_file: %v\n%s", err, out)
	}
	if p.sink != nil {
		_ = p.sink.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.sinkDone:
		case <-time.After(5 * time.Second):
			_ = p.sink.Process.Kill()
			<-p.sinkDone
		}
		_ = os.Remove(sinkPIDFile())
	}
}

// stopPostfix stops the system Postfix if it runs. `postfix stop` waits
// for the master to exit (and kills it after 5 seconds).
func stopPostfix() error {
	if !masterRunning() {
		return nil
	}
	out, err := run("postfix", "stop")
	if err != nil && masterRunning() {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

// masterRunning asks `master -t` whether the master holds its pid file
// lock. (`postfix status` tells the same but, like every Postfix command
// that fails, sleeps a second before it exits.)
func masterRunning() bool {
	if _, err := os.Stat("/etc/postfix/main.cf"); err != nil {
		return false // never configured: the master cannot be running
	}
	dir := "/usr/lib/postfix/sbin"
	if out, err := run("postconf", "-h", "daemon_directory"); err == nil && strings.TrimSpace(out) != "" {
		dir = strings.TrimSpace(out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	return exec.CommandContext(ctx, filepath.Join(dir, "master"), "-t").Run() != nil
}

// purgeQueue deletes all mail, maildrop included, so that nothing a test
// left behind is delivered into the next test's sink.
func purgeQueue(t testing.TB) {
	for _, args := range [][]string{{"-d", "ALL"}, {"-d", "ALL", "maildrop"}} {
		if out, err := run("postsuper", args...); err != nil {
			t.Logf("postsuper %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func lockDir() string {
	if fi, err := os.Stat("/run/lock"); err == nil && fi.IsDir() {
		return "/run/lock"
	}
	return "/tmp"
}

func sinkPIDFile() string { return filepath.Join(lockDir(), sinkPIDName) }

// killStaleSink kills the smtp-sink that a killed test process left behind,
// found by the pid it recorded, and only if that pid is still smtp-sink.
func killStaleSink(t testing.TB) {
	b, err := os.ReadFile(sinkPIDFile())
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "smtp-sink" {
		return
	}
	t.Logf("killing smtp-sink pid %d left by an earlier test run", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			break
		}
	}
}

// inProcess serialises Start within one test binary; the file lock does so
// between binaries (flock locks conflict between open files of one process
// too, but the mutex gives a clearer wait).
var inProcess sync.Mutex

// acquire takes the machine-wide Postfix lock, waiting at most timeout.
func acquire(timeout time.Duration) (release func(), err error) {
	deadline := time.Now().Add(timeout)
	for !inProcess.TryLock() {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("postfixtest: another test in this process held Postfix for %v (Start called twice in one test?)", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	path := filepath.Join(lockDir(), lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		inProcess.Unlock()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			inProcess.Unlock()
			return nil, fmt.Errorf("locking %s (another test process uses Postfix): %w", path, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return func() {
		f.Close() // drops the flock
		inProcess.Unlock()
	}, nil
}

func portFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("postfixtest: port %d is in use: %w", port, err)
	}
	return l.Close()
}

// waitListening polls /proc/net/tcp until a socket listens on
// 127.0.0.1:port.
func waitListening(port int, timeout time.Duration) error {
	want := fmt.Sprintf("0100007F:%04X", port)
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st ...; st 0A is LISTEN.
			f := strings.Fields(line)
			if len(f) > 3 && f[1] == want && f[3] == "0A" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on 127.0.0.1:%d after %v", port, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitGreeting polls addr until an SMTP server there sends a 220 greeting.
func waitGreeting(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = greeting(addr)
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no SMTP greeting within %v: %w", timeout, last)
}

func greeting(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return nil
}

// run runs a Postfix program with a time limit and returns its combined
// output.
func run(name string, args ...string) (string, error) {
	return runInput("", name, args...)
}

func runInput(stdin, name string, args ...string) (string, error) {
	path, err := program(name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runFile is run for commands that leave daemons behind: their output goes
// to a file, since a daemon that kept a pipe open would block the wait.
func runFile(outPath, name string, args ...string) (string, error) {
	path, err := program(name)
	if err != nil {
		return "", err
	}
	f, err := os.Create(outPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(outPath)
	return string(out), err
}

// Log returns the Postfix log of this test so far.
func (p *Postfix) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reading the postfix log: %v", err)
	}
	return string(b)
}

func (p *Postfix) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Flush asks Postfix to retry deferred mail now (postqueue -f) and pickup to
// scan the maildrop queue (postkick public pickup W).
func (p *Postfix) Flush(t testing.TB) {
	t.Helper()
	if out, err := run("postqueue", "-f"); err != nil {
		t.Logf("postqueue -f: %v\n%s", err, out)
	}
	// Best effort: postkick dies of SIGPIPE when pickup is busy, and pickup
	// also scans the maildrop queue by itself every 60 seconds.
	_, _ = run("postkick", "public", "pickup", "W")
}

// WaitLog polls the Postfix log until it contains substr and returns it.
// After 60 seconds it fails the test with the end of the log.
func (p *Postfix) WaitLog(t testing.TB, substr, what string) string {
	t.Helper()
	deadline := time.Now().Add(deliveryTimeout)
	for {
		if log := p.Log(t); strings.Contains(log, substr) {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s (%q in the postfix log); last lines:\n%s", deliveryTimeout, what, substr, p.logTail(40))
		}
		time.Sleep(pollInterval)
	}
}

// Sendmail submits body through /usr/sbin/sendmail -i -f from -- rcpts:
// the non-SMTP path (postdrop -> maildrop -> pickup -> cleanup, which calls
// non_smtpd_milters). It returns once the message is in the maildrop queue.
func (p *Postfix) Sendmail(t testing.TB, from string, rcpts []string, body string) error {
	t.Helper()
	args := append([]string{"-i", "-f", from, "--"}, rcpts...)
	if out, err := runInput(body, "sendmail", args...); err != nil {
		return fmt.Errorf("sendmail %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	return nil
}

// commandOutput runs path with a time limit and returns its standard
// output; standard error goes into the error.
func commandOutput(path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// createOwned creates an empty file owned by the named user.
func createOwned(path, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return chownUser(path, u)
}

func chownUser(path string, u *user.User) error {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}
