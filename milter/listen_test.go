package milter_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/state/memory"
)

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "msgate.sock")

	ln, err := milter.Listen("unix", path, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("socket mode %v, %v; want 0640", fi.Mode().Perm(), err)
	}
	// A live socket is not taken over.
	if _, err := milter.Listen("unix", path, 0o660); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	// A stale socket (its server gone without removing it) is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the stale socket should still be there: %v", err)
	}
	ln, err = milter.Listen("unix", path, 0o660)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()

	// A regular file is never removed.
	file := filepath.Join(dir, "not-a-socket")
	os.WriteFile(file, []byte("data"), 0o644)
	if _, err := milter.Listen("unix", file, 0o660); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "data" {
		t.Fatal("the regular file was touched")
	}
}

func TestServeOverUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.sock")
	ln, err := milter.Listen("unix", path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(hourly(1), fakeDetector{}, memory.New())
	srv := milter.NewServer(milter.Options{Policy: eng})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() { srv.Shutdown(context.Background()); <-done }()
	c, err := milter.Dial("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("Dial over unix: %v", err)
	}
	defer c.Close()
	if _, err := c.Connect("localhost", "127.0.0.1", 25); err != nil {
		t.Fatal(err)
	}
	rs, err := c.Send(milter.Message{Login: "alice", Rcpts: []string{"a@outlook.com", "b@outlook.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rcptReplies(rs); got["a@outlook.com"].Refused() || !got["b@outlook.com"].Refused() {
		t.Fatalf("over a unix socket: %v", rs)
	}
}
