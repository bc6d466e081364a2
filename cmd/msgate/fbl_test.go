package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/cmd/msgate/internal/spool"
	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/feedback"
)

const testSecret = "a-test-secret-for-msgate-stamps-0123"

// jmrpAround wraps an original message as Microsoft's JMRP does.
func jmrpAround(guid, original string) []byte {
	return []byte(fmt.Sprintf(`From: staff@hotmail.com
To: fbl@test.local
Subject: complaint about message from 198.51.100.20
Message-ID: <%s@BAY0-XMR.phx.gbl>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="jmrp-%s"

--jmrp-%s
Content-Type: message/rfc822
Content-Disposition: inline

X-HmXmrOriginalRecipient: jo@outlook.com
X-Message-Guid: %s
%s
--jmrp-%s--
`, guid, guid, guid, guid, original, guid))
}

func (a *adminDaemon) fbl(t *testing.T, raw []byte) (feedback.Result, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.eml")
	os.WriteFile(path, raw, 0o644)
	var stdout, stderr bytes.Buffer
	code := run([]string{"fbl", "-config", a.configPath, path}, &stdout, &stderr)
	var res feedback.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("fbl printed %q (stderr %q): %v", stdout.String(), stderr.String(), err)
	}
	return res, code
}

func withFeedback(c *config.Config) {
	c.Feedback.Secret = testSecret
}

// The loop through msgate serve: the stamp added at end of message comes
// back in a complaint, which flags the account; bob is untouched.
func TestFeedbackLoop(t *testing.T) {
	a := startAdminDaemon(t, withFeedback)
	c := dial(t, a.milterAddr)
	rs, err := c.Send(milter.Message{Login: "alice", From: "alice@example.org", Rcpts: []string{"jo@outlook.com"}, QueueID: "4AliceQ1"})
	if err != nil {
		t.Fatal(err)
	}
	eom := rs[len(rs)-1]
	if len(eom.AddedHeaders) != 1 || eom.AddedHeaders[0][0] != "X-Msgate-Ref" {
		t.Fatalf("end of message added %v, want the stamp header", eom.AddedHeaders)
	}
	stampValue := eom.AddedHeaders[0][1]
	original := "Received: from [192.0.2.4] by mx.test.local (Postfix) with ESMTPSA id 4AliceQ1\n\tfor <jo@outlook.com>; Fri, 27 Nov 2026 10:00:00 +0000\n" +
		"From: alice@example.org\nSubject: hi\nX-Msgate-Ref: " + stampValue + "\n\nbody\n"

	// An altered stamp flags nobody.
	altered := strings.Replace(original, stampValue, stampValue[:len(stampValue)-2]+"xx", 1)
	if res, code := a.fbl(t, jmrpAround("g0", altered)); code != 0 || res.Outcome != feedback.OutcomeForged || res.Account != "" {
		t.Fatalf("altered stamp: %+v exit %d", res, code)
	}
	if r := rcptReplies(t, c, milter.Message{Login: "alice", Rcpts: []string{"x@outlook.com"}})["x@outlook.com"]; r.Refused() {
		t.Fatalf("alice refused after a forged report: %v", r)
	}

	res, code := a.fbl(t, jmrpAround("g1", original))
	if code != 0 || res.Outcome != feedback.OutcomeRecorded || res.Account != "alice" || res.AttributedBy != "stamp" ||
		res.Format != "jmrp" || res.FeedbackType != "abuse" {
		t.Fatalf("fbl: %+v exit %d", res, code)
	}
	if res, _ := a.fbl(t, jmrpAround("g1", original)); res.Outcome != feedback.OutcomeDuplicate {
		t.Fatalf("the same report again: %+v", res)
	}
	r := rcptReplies(t, c, milter.Message{Login: "alice", Rcpts: []string{"y@outlook.com", "z@example.net"}})
	if !isDefer(r["y@outlook.com"]) || !strings.Contains(r["y@outlook.com"].Text, "complained") {
		t.Errorf("alice's next Microsoft recipient: %v, want deferred with the complaint reason", r["y@outlook.com"])
	}
	if r["z@example.net"].Refused() {
		t.Errorf("alice's non-Microsoft recipient refused: %v", r["z@example.net"])
	}
	if r := rcptReplies(t, c, milter.Message{Login: "bob", Rcpts: []string{"y@outlook.com"}})["y@outlook.com"]; r.Refused() {
		t.Errorf("bob refused: %v", r)
	}
	st := a.status(t)
	if len(st.Flagged) != 1 || st.Flagged[0].Account != "alice" || st.Flagged[0].Reason != "complaints" || st.Flagged[0].Complaints != 1 {
		t.Fatalf("status flagged = %+v", st.Flagged)
	}

	// A copy that lost the stamp is still attributed, by queue id.
	stripped := strings.Replace(original, "X-Msgate-Ref: "+stampValue+"\n", "", 1)
	if res, _ := a.fbl(t, jmrpAround("g2", stripped)); res.Outcome != feedback.OutcomeRecorded || res.Account != "alice" || res.AttributedBy != "queue-id" {
		t.Fatalf("stamp stripped: %+v", res)
	}

	// Unflag forgives: alice sends again.
	if out, code := a.cli(t, "account", "unflag", "alice"); code != 0 {
		t.Fatalf("unflag: %s", out)
	}
	if r := rcptReplies(t, c, milter.Message{Login: "alice", Rcpts: []string{"w@outlook.com"}})["w@outlook.com"]; r.Refused() {
		t.Errorf("alice after unflag: %v", r)
	}
}

func TestFblNotComplaintsAndGarbage(t *testing.T) {
	a := startAdminDaemon(t, withFeedback)
	for file, want := range map[string]string{
		"arf-auth-failure.eml": feedback.OutcomeNotComplaint,
		"dsn.eml":              feedback.OutcomeNotComplaint,
		"garbage.eml":          feedback.OutcomeUnparseable,
		"truncated.eml":        feedback.OutcomeUnattributed,
	} {
		raw, err := os.ReadFile("../../testdata/reports/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if res, code := a.fbl(t, raw); code != 0 || res.Outcome != want {
			t.Errorf("%s: %+v exit %d, want %s and exit 0", file, res, code, want)
		}
	}
	kept, _ := os.ReadDir(filepath.Join(a.d.spoolDir(), spool.Unparseable))
	if len(kept) != 1 {
		t.Errorf("unparseable reports kept: %d, want 1", len(kept))
	}
}

// Reports handed to msgate fbl while the daemon is down are spooled, and
// counted once the daemon runs.
func TestFblSpoolsWhileDaemonDown(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	withFeedback(cfg)
	cfg.State.Path = filepath.Join(dir, "state.db")
	cfg.Admin.Listen = "unix:" + filepath.Join(dir, "admin.sock")
	cfg.Milter.Listen = "inet:127.0.0.1:1"
	path := filepath.Join(dir, "msgate.toml")
	writeConfig(t, path, cfg)
	sealer, err := buildSealer(config.Feedback{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := sealer.Seal("carol", time.Now().Add(-time.Hour))
	raw := jmrpAround("g9", "From: carol@example.org\nX-Msgate-Ref: "+tok+"\n\nbody\n")
	down := &adminDaemon{configPath: path}
	res, code := down.fbl(t, raw)
	if code != 0 || res.Outcome != OutcomeSpooled || res.Format != "jmrp" {
		t.Fatalf("fbl with the daemon down: %+v exit %d", res, code)
	}
	if p, _ := spool.Pending(filepath.Join(dir, "spool")); len(p) != 1 {
		t.Fatalf("spool holds %d reports, want 1", len(p))
	}

	loaded, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDaemon(loaded, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	aln, err := listen(loaded.Admin.Listen, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx, ln, aln) }()
	defer func() { cancel(); <-done; d.close() }()
	client := admin.NewClient("unix", filepath.Join(dir, "admin.sock"), 5*time.Second)
	// The report is counted, then removed from the spool.
	for i := 0; ; i++ {
		st, err := client.Status(0)
		pending, _ := spool.Pending(filepath.Join(dir, "spool"))
		if err == nil && len(st.Flagged) == 1 && st.Flagged[0].Account == "carol" && len(pending) == 0 {
			break
		}
		if i > 200 {
			t.Fatalf("the spooled complaint was never counted and removed: %+v %v, %d pending", st, err, len(pending))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
