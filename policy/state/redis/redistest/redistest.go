// Package redistest runs a real redis-server (Debian's redis-server
// package) on a free loopback port for one test, in a folder of the test's
// own, and stops it by its pid when the test ends. bash .ci/test installs
// the package; with MSGATE_E2E=1 a missing redis-server fails the test
// instead of skipping it.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	t    testing.TB
	Addr string // 127.0.0.1:PORT
	Dir  string // its working folder: the append-only file lives here
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// Options choose the server's durability.
type Options struct {
	// AppendOnly turns on the append-only file with appendfsync always, so
	// that a restart keeps every write.
	AppendOnly bool
	// Cluster runs the server as a Redis Cluster of one node that serves
	// every hash slot.
	Cluster bool
	// ReplicaOf makes the server a replica of another.
	ReplicaOf *Server
}

// Require skips the test when redis-server is not installed, or fails it
// when MSGATE_E2E=1.
func Require(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server"} {
			if _, e := os.Stat(p); e == nil {
				return p
			}
		}
		msg := "redis-server not installed (apt-get install redis-server; bash .ci/test installs it)"
		if os.Getenv("MSGATE_E2E") == "1" {
			t.Fatalf("MSGATE_E2E=1 but %s", msg)
		}
		t.Skip(msg)
	}
	return path
}

// newServer picks redis-server, a folder and a free loopback port for a
// server not started yet.
func newServer(t testing.TB) (s *Server, bin string, port int) {
	t.Helper()
	bin = Require(t)
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return &Server{t: t, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir}, bin, port
}

// Start runs redis-server until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, bin, port := newServer(t)
	dir := s.Dir
	s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--daemonize", "no", "--protected-mode", "yes", "--logfile", filepath.Join(dir, "redis.log")}
	if opts.AppendOnly {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	if opts.Cluster {
		s.args = append(s.args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"))
	}
	if m := opts.ReplicaOf; m != nil {
		host, port, _ := net.SplitHostPort(m.Addr)
		s.args = append(s.args, "--replicaof", host, port)
	}
	s.args = append([]string{bin}, s.args...)
	s.start()
	t.Cleanup(s.Stop)
	if opts.Cluster {
		s.clusterServeAllSlots()
	}
	return s
}

// StartSentinel runs a Redis Sentinel (redis-server --sentinel, which is
// all Debian's redis-sentinel package adds) that watches master under the
// name "mymaster", with a quorum of one and a master judged down after
// downAfter. Clients find the master through Sentinel's Addr.
func StartSentinel(t testing.TB, master *Server, downAfter time.Duration) *Server {
	t.Helper()
	s, bin, port := newServer(t)
	dir := s.Dir
	host, mport, _ := net.SplitHostPort(master.Addr)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile %s\n"+
		"sentinel monitor mymaster %s %s 1\nsentinel down-after-milliseconds mymaster %d\n"+
		"sentinel failover-timeout mymaster 10000\n",
		port, dir, filepath.Join(dir, "redis.log"), host, mport, downAfter.Milliseconds())
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{bin, conf, "--sentinel"}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Master asks a Sentinel for the address of the master it watches.
func (s *Server) Master() (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("SENTINEL get-master-addr-by-name mymaster\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	var parts []string
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "*2") {
		return "", fmt.Errorf("sentinel answered %q: %v", strings.TrimSpace(line), err)
	}
	for range 2 {
		if _, err := r.ReadString('\n'); err != nil { // $len
			return "", err
		}
		v, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		parts = append(parts, strings.TrimSpace(v))
	}
	return net.JoinHostPort(parts[0], parts[1]), nil
}

// clusterServeAllSlots gives the one node every hash slot and waits until
// the cluster says it is ok.
func (s *Server) clusterServeAllSlots() {
	s.t.Helper()
	if reply, err := command(s.Addr, "CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil || !strings.HasPrefix(reply, "+OK") {
		s.t.Fatalf("CLUSTER ADDSLOTSRANGE: %q %v", reply, err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		reply, err := command(s.Addr, "CLUSTER", "INFO")
		if err == nil && strings.Contains(reply, "cluster_state:ok") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the one-node cluster never got ok: %q %v", reply, err)
		}
	}
}

// command sends one command and returns the reply's text (the whole bulk
// string for a bulk reply).
func command(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "$") {
		return line, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 {
		return line, err
	}
	body := make([]byte, n+2)
	_, err = io.ReadFull(r, body)
	return string(body[:n]), err
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := ping(s.Addr); err == nil {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("redis-server exited at start:\n%s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("redis-server did not answer on %s:\n%s", s.Addr, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server with SIGTERM (Redis flushes its append-only file),
// and with SIGKILL when it has not exited after 10 seconds. It may be
// called more than once.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Restart stops the server and starts it again on the same port and
// folder.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Pause stops the server's process (SIGSTOP): it keeps its port open and
// answers nothing, as a hung Redis does, until Resume.
func (s *Server) Pause()  { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return string(b)
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// freePort is a loopback port below the ephemeral range that nothing
// listens on.
func freePort() (int, error) {
	for range 200 {
		port := 21000 + rand.IntN(11000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("redistest: no free port")
}
