//go:build linux

package sendmailtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// NetNS is a network namespace of one test: a named one (ip netns add),
// whose only interface is its own loopback. Nothing in it can reach the
// machine's network, nor can anything outside reach it, except through
// what the test opens with Listen, ListenPacket, Dial and Command.
type NetNS struct {
	Name string
	Path string // /run/netns/NAME, for setns(2) and nsenter --net
}

// nsPrefix starts the name of every namespace this package makes; the
// rest is the test process's pid and a counter, so that a later run can
// tell the namespaces of a killed run from those of a live one.
const nsPrefix = "msgate-smt-"

var nsCounter atomic.Int64

// NewNetNS makes a network namespace with its loopback up and deletes it
// when the test ends, after stopping whatever still runs in it (every
// process there was started by this test). Namespaces that an earlier,
// killed test process left behind are removed first.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	removeStaleNetNS(t)
	name := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsCounter.Add(1))
	if out, err := run("ip", "netns", "add", name); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	ns := &NetNS{Name: name, Path: filepath.Join("/run/netns", name)}
	t.Cleanup(func() {
		if err := ns.remove(); err != nil {
			t.Errorf("removing network namespace %s: %v", name, err)
		}
	})
	if out, err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v\n%s", name, err, out)
	}
	return ns
}

// remove kills what is left in the namespace (by pid) and deletes it.
func (ns *NetNS) remove() error {
	killAll(ns.Name)
	out, err := run("ip", "netns", "delete", ns.Name)
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// pids lists the processes in the named namespace.
func pids(name string) []int {
	out, err := run("ip", "netns", "pids", name)
	if err != nil {
		return nil
	}
	var ps []int
	for _, f := range strings.Fields(out) {
		if p, err := strconv.Atoi(f); err == nil && p > 1 && p != os.Getpid() {
			ps = append(ps, p)
		}
	}
	return ps
}

// killAll sends SIGKILL, by pid, to every process in the named namespace
// and waits up to 5 seconds for them to go.
func killAll(name string) {
	ps := pids(name)
	for _, p := range ps {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(5 * time.Second); len(ps) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		ps = pids(name)
	}
}

// staleName reports whether name is one of this package's names
// (msgate-smt-PID-...) whose test process no longer runs.
func staleName(name string) bool {
	rest, ok := strings.CutPrefix(name, nsPrefix)
	if !ok {
		return false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return !running(pid)
}

// running reports whether process pid exists and is not a zombie (a
// killed test process stays one where nothing reaps it).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}

// removeStaleNetNS deletes the namespaces, and the Sendmail folders, of
// test processes that no longer run.
func removeStaleNetNS(t testing.TB) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if !staleName(e.Name()) {
			continue
		}
		t.Logf("removing network namespace %s left by an earlier test run", e.Name())
		old := &NetNS{Name: e.Name(), Path: filepath.Join("/run/netns", e.Name())}
		if err := old.remove(); err != nil {
			t.Logf("removing %s: %v", e.Name(), err)
		}
	}
	// After the namespaces: their processes may have used the folders.
	dirs, _ := os.ReadDir(os.TempDir())
	for _, e := range dirs {
		if e.IsDir() && staleName(e.Name()) {
			path := filepath.Join(os.TempDir(), e.Name())
			t.Logf("removing %s left by an earlier test run", path)
			_ = os.RemoveAll(path)
		}
	}
}

// do runs fn on an OS thread that has joined the namespace. Sockets that
// fn creates belong to the namespace for their whole life. The thread is
// never handed back to the Go scheduler: the goroutine ends locked, so the
// runtime discards the thread. The process's main thread is never used.
func (ns *NetNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if syscall.Gettid() == syscall.Getpid() {
			// The main thread stands for the whole process in
			// /proc/self (and /proc/net): it must never join the
			// namespace, nor could the runtime discard it. Hold it
			// while another goroutine, on another thread, does the work.
			errc <- ns.do(fn)
			runtime.UnlockOSThread()
			return
		}
		f, err := os.Open(ns.Path)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if _, _, e := syscall.RawSyscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
			errc <- fmt.Errorf("setns %s: %w", ns.Path, e)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Listen listens inside the namespace, e.g. Listen("tcp", "127.0.0.1:25").
func (ns *NetNS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := ns.do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket listens for datagrams inside the namespace.
func (ns *NetNS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := ns.do(func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// Dial connects from inside the namespace.
func (ns *NetNS) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() (err error) {
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// Command returns a command that runs name inside the namespace (through
// nsenter, which joins the namespace and then executes name: the
// command's pid is name's).
func (ns *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + ns.Path, "--", name}, args...)...)
}

// WaitListening waits until process pid has joined the namespace and
// then until something listens on 127.0.0.1:port there, as
// /proc/PID/net/tcp shows it. Unlike a test connection, this is invisible
// to the listener (a connection to Sendmail would reach the milter as a
// session of its own).
func (ns *NetNS) WaitListening(pid, port int, timeout time.Duration) error {
	want := fmt.Sprintf("0100007F:%04X", port)
	deadline := time.Now().Add(timeout)
	for {
		// Before nsenter has joined the namespace, /proc/PID/net is the
		// machine's.
		if ns.holds(pid) {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
			if err != nil {
				return fmt.Errorf("process %d: %w", pid, err)
			}
			for _, line := range strings.Split(string(b), "\n")[1:] {
				// sl local_address rem_address st ...; st 0A is LISTEN.
				f := strings.Fields(line)
				if len(f) > 3 && f[1] == want && f[3] == "0A" {
					return nil
				}
			}
		} else if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return fmt.Errorf("process %d: %w", pid, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on 127.0.0.1:%d in %s after %v", port, ns.Name, timeout)
		}
		time.Sleep(pollInterval)
	}
}

// holds reports whether process pid is in the namespace.
func (ns *NetNS) holds(pid int) bool {
	var want, got syscall.Stat_t
	if syscall.Stat(ns.Path, &want) != nil || syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &got) != nil {
		return false
	}
	return want.Ino == got.Ino && want.Dev == got.Dev
}

// run runs a program with a time limit and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%s timed out after %v", name, commandTimeout)
	}
	return string(out), err
}
