package embedded_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/embedded"
)

// crashEnv switches the test binary into the child of TestCrash;
// crashSmallEnv makes the child's log seal an epoch every 2 KiB, so that
// the kill is likely to land in a checkpoint.
const (
	crashEnv      = "MSGATE_EMBEDDED_CRASH_CHILD"
	crashSmallEnv = "MSGATE_EMBEDDED_CRASH_SMALL_EPOCHS"
)

const crashWorkers = 8

func crashCounters(g int) []state.Counter {
	return []state.Counter{
		{Key: fmt.Sprintf("rate/hourly/worker%d", g), Window: time.Hour, Limit: 1 << 40},
		{Key: "cap", Window: 24 * time.Hour, Limit: 1 << 40},
	}
}

func crashQueueID(g, n int) string { return fmt.Sprintf("%dQ%d", g, n) }

func crashAccount(g int) string { return fmt.Sprintf("worker%d@example.com", g) }

// crashChild commits units from several goroutines until it is killed, and
// prints "ack G" for each unit only after Commit returned nil. After each
// commit a worker remembers a queue id, as the engine does; nothing waits
// for those. Another goroutine adds complaints one after the other and
// prints "complaint N" after AddComplaint of report rN returned true.
func crashChild(path string) {
	openStore := embedded.Open
	if os.Getenv(crashSmallEnv) != "" {
		openStore = embedded.OpenSmallEpochs
	}
	s, err := openStore(embedded.Options{Path: path, Now: at(t0)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range crashWorkers {
		wg.Go(func() {
			ctx := context.Background()
			cs := crashCounters(g)
			line := []byte("ack " + strconv.Itoa(g) + "\n")
			for n := 0; ; n++ {
				out, err := s.Reserve(ctx, cs, t0)
				if err == nil {
					err = s.Commit(ctx, out.Reservation, t0)
				}
				if err == nil {
					err = s.Remember(ctx, crashQueueID(g, n), crashAccount(g), t0)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				// One write(2) of a few bytes per line: a line is either
				// whole in the pipe or not there at all.
				mu.Lock()
				os.Stdout.Write(line)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for n := 0; ; n++ {
			c := state.Complaint{Account: "complained", ReportID: fmt.Sprint("r", n), At: t0.Add(time.Duration(n) * time.Millisecond)}
			if added, err := s.AddComplaint(context.Background(), c); err != nil || !added {
				fmt.Fprintln(os.Stderr, "AddComplaint:", added, err)
				os.Exit(1)
			}
			line := []byte("complaint " + strconv.Itoa(n) + "\n")
			mu.Lock()
			os.Stdout.Write(line)
			mu.Unlock()
		}
	})
	wg.Wait()
}

// TestCrash kills (SIGKILL) a process that is committing units, remembering
// queue ids and adding complaints, reopens its file and checks that every
// acknowledged unit and complaint is there, and that the attributions, which
// are not acknowledged, are whole: for each worker the first ones, with no
// hole, each of the right account.
//
// Each worker runs Reserve, Commit, print, in a loop. When the kill lands,
// every unit a worker printed is acknowledged and must be on disk; the unit
// it was working on may be on disk too (Commit's fsync done, line not yet
// printed) or not (still reserved, or being written). So per worker,
// acked <= counted <= acked+1, and for the counter all workers share,
// acked <= counted <= acked+workers.
//
// Commits reach the file through the log: the default run is killed
// before any checkpoint, so Open replays what the log holds; with small
// epochs, checkpoints run all the time and the kill often lands in one.
func TestCrash(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	t.Run("default", func(t *testing.T) { testCrash(t, nil, 500) })
	t.Run("small-epochs", func(t *testing.T) { testCrash(t, []string{crashSmallEnv + "=1"}, 3000) })
}

// testCrash runs the child with env added until it acknowledged at least
// commits units, kills it and checks its file.
func testCrash(t *testing.T, env []string, commits int64) {
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$")
	cmd.Env = append(append(os.Environ(), crashEnv+"="+path), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := make([]int64, crashWorkers)
	var total int64
	complaints := 0 // acknowledged: r0 to r(complaints-1)
	count := func(line string) {
		if n, ok := strings.CutPrefix(line, "complaint "); ok {
			if n != strconv.Itoa(complaints) {
				t.Errorf("child printed %q after complaint %d", line, complaints-1)
			}
			complaints++
			return
		}
		g, err := strconv.Atoi(strings.TrimPrefix(line, "ack "))
		if !strings.HasPrefix(line, "ack ") || err != nil || g < 0 || g >= crashWorkers {
			t.Errorf("child printed %q", line)
			return
		}
		acked[g]++
		total++
	}
	lines := bufio.NewScanner(stdout)
	deadline := time.Now().Add(30 * time.Second)
	for (total < commits || complaints < 20) && time.Now().Before(deadline) && lines.Scan() {
		count(lines.Text())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL, to this pid only
		t.Fatal(err)
	}
	// Lines already in the pipe were acknowledged before the kill.
	for lines.Scan() {
		count(lines.Text())
	}
	if err := lines.Err(); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if total == 0 {
		t.Fatalf("child acknowledged nothing (%v): %s", err, stderr.String())
	}
	if !strings.Contains(fmt.Sprint(err), "killed") {
		t.Fatalf("child ended by itself (%v) instead of being killed: %s", err, stderr.String())
	}

	s := open(t, embedded.Options{Path: path, Now: at(t0)})
	defer s.Close()
	t.Logf("the log resumes at epoch %d", s.LogEpoch())
	for g := range crashWorkers {
		cs := crashCounters(g)
		got := usage(t, s, cs[0].Key, cs[0].Window, t0).Committed
		if got < acked[g] || got > acked[g]+1 {
			t.Errorf("worker %d: %d units counted after the crash, %d acknowledged: want %d or %d", g, got, acked[g], acked[g], acked[g]+1)
		}
	}
	got := usage(t, s, "cap", 24*time.Hour, t0).Committed
	if got < total || got > total+crashWorkers {
		t.Errorf("cap: %d units counted after the crash, %d acknowledged: want %d to %d", got, total, total, total+crashWorkers)
	}
	t.Logf("killed after %d acknowledged commits; %d counted after restart", total, got)

	ctx := context.Background()
	all, err := s.ComplainedSince(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < complaints || len(all) > complaints+1 {
		t.Errorf("%d complaints after the crash, %d acknowledged: want %d or %d", len(all), complaints, complaints, complaints+1)
	}
	for i, c := range all {
		if c.ReportID != fmt.Sprint("r", i) || c.Account != "complained" || !c.At.Equal(t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("complaint %d after the crash: %+v", i, c)
		}
	}
	t.Logf("%d complaints acknowledged; %d there after restart", complaints, len(all))

	remembered := 0
	for g := range crashWorkers {
		n := 0
		for ; ; n++ {
			acct, _, ok, err := s.Attribute(ctx, crashQueueID(g, n))
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if acct != crashAccount(g) {
				t.Errorf("%s attributed to %s, want %s", crashQueueID(g, n), acct, crashAccount(g))
			}
		}
		if int64(n) > acked[g]+1 {
			t.Errorf("worker %d: %d queue ids remembered for %d commits acknowledged", g, n, acked[g])
		}
		remembered += n
	}
	if onDisk, err := s.DiskRecords("attributions"); err != nil || onDisk != remembered {
		t.Errorf("%d attributions on disk (%v), %d found without a hole", onDisk, err, remembered)
	}
	t.Logf("%d queue ids remembered after restart, for %d commits acknowledged", remembered, total)
}
