package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// miltertestSecret is the [feedback] secret of the miltertest runs.
const miltertestSecret = "miltertest-e2e-test-secret-for-msgate-stamps"

// miltertestScript is the Lua script that drives msgate with miltertest.
var miltertestScript = filepath.Join("..", "..", "testdata", "miltertest", "msgate.lua")

// requireMiltertest returns the path of miltertest, or skips the test
// (fails it with MSGATE_E2E=1, as .ci/test sets) when it is missing.
func requireMiltertest(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("miltertest")
	if err != nil {
		if os.Getenv("MSGATE_E2E") == "1" {
			t.Fatalf("MSGATE_E2E=1 but miltertest is not installed (apt-get install miltertest; bash .ci/test installs it): %v", err)
		}
		t.Skipf("miltertest is not installed (apt-get install miltertest): %v", err)
	}
	return path
}

// startMiltertestServe runs msgate with what msgate.lua expects: a limit of
// one Microsoft recipient, a stamp secret, and a resolver that knows
// example.net is not Microsoft's.
func startMiltertestServe(t *testing.T) (*daemonProc, int) {
	t.Helper()
	ns := startDNS(t)
	ns.setMX("example.net", "mx.example.net")
	d := startServe(t, fmt.Sprintf(`
[microsoft]
resolver = %q
[feedback]
secret = %q
[[rate]]
name = "hourly"
window = "1h"
limit = 1
`, ns.Addr, miltertestSecret))
	var port int
	if _, err := fmt.Sscanf(d.milter, "inet:127.0.0.1:%d", &port); err != nil {
		t.Fatalf("milter address %q: %v", d.milter, err)
	}
	return d, port
}

// runMiltertest runs msgate.lua against the milter on port with the given
// -D definitions and returns its output and exit code.
func runMiltertest(t *testing.T, path string, port int, defs ...string) (string, int) {
	t.Helper()
	args := []string{"-D", fmt.Sprintf("port=%d", port)}
	for _, d := range defs {
		args = append(args, "-D", d)
	}
	args = append(args, "-s", miltertestScript)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("miltertest %s: timed out\n%s", strings.Join(args, " "), out.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("miltertest: %v", err)
	}
	return out.String(), code
}

// OpenDKIM's miltertest plays the MTA: msgate negotiates header additions
// and no body, accepts a Microsoft and a non-Microsoft recipient and stamps
// the message, refuses the Microsoft recipient over the limit with a custom
// reply (SMFIR_REPLYCODE) while accepting the other one, and leaves another
// account alone; the login comes from {auth_authen}.
func TestMiltertestRateLimit(t *testing.T) {
	path := requireMiltertest(t)
	d, port := startMiltertestServe(t)
	out, code := runMiltertest(t, path, port)
	if code != 0 {
		t.Fatalf("miltertest exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		"ok: msgate may add headers (the X-Msgate-Ref stamp)\n",
		"ok: end of message 1 -> SMFIR_CONTINUE\n",
		"ok: message 1 stamped with X-Msgate-Ref\n",
		"ok: RCPT TO:<kim@hotmail.com> over the limit -> SMFIR_REPLYCODE\n",
		"ok: RCPT TO:<lee@example.net> (not Microsoft's: never limited) -> SMFIR_CONTINUE\n",
		"ok: RCPT TO:<jo@outlook.com> from bob -> SMFIR_CONTINUE\n",
		"ok: disconnected\n",
		"PASS\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("miltertest output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("miltertest output has a failure:\n%s", out)
	}
	// What msgate made of it: the SASL login from {auth_authen}, the
	// queue id from i, the refusal with its reply.
	if lines := d.logLines(`"account":"alice"`, `"account_kind":"sasl"`, `"queue_id":"MT0002"`, `"action":"defer"`,
		`"reason":"rate-limit"`, `"rcpt_domain":"hotmail.com"`, `"reply":"451 4.7.1 `); len(lines) != 1 {
		t.Errorf("msgate logged %d deferrals of hotmail.com for alice in MT0002, want 1", len(lines))
	}
	if lines := d.logLines(`"account":"alice"`, `"queue_id":"MT0001"`, `"stage":"end-of-message"`, `"stamped":true`); len(lines) != 1 {
		t.Errorf("msgate logged %d stamped ends of MT0001, want 1", len(lines))
	}
	if lines := d.logLines(`"account":"bob"`, `"queue_id":"MT0003"`, `"action":"accept"`, `"rcpt_domain":"outlook.com"`); len(lines) != 1 {
		t.Errorf("msgate logged %d acceptances of bob's outlook.com recipient, want 1", len(lines))
	}
}

// The script can fail: told to expect "continue" for the recipient over
// the limit, it must stop at that check and miltertest must exit non-zero.
func TestMiltertestScriptFailsOnWrongExpectation(t *testing.T) {
	path := requireMiltertest(t)
	_, port := startMiltertestServe(t)
	out, code := runMiltertest(t, path, port, "expect_over=continue")
	if code == 0 {
		t.Fatalf("miltertest exited 0 although the script expected the wrong reply:\n%s", out)
	}
	const want = "FAIL: RCPT TO:<kim@hotmail.com> over the limit: got SMFIR_REPLYCODE, want SMFIR_CONTINUE\n"
	if !strings.Contains(out, want) {
		t.Errorf("miltertest output lacks %q:\n%s", want, out)
	}
	if strings.Contains(out, "PASS") {
		t.Errorf("the script went on after the failed check:\n%s", out)
	}
}
