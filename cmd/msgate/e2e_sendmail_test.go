//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
	"github.com/msgate/msgate/cmd/msgate/internal/sendmailtest"
	"github.com/msgate/msgate/policy/feedback"
)

// sendmailMilterPort is msgate's default milter port, which
// contrib/sendmail/msgate.mc names (S=inet:8895@127.0.0.1). msgate runs in
// the test's own network namespace, where the port is always free, so the
// contrib file is used unchanged.
const sendmailMilterPort = 8895

// sendmailTestSecret is the [feedback] secret of the Sendmail tests.
const sendmailTestSecret = "sendmail-e2e-test-secret-for-msgate-stamps"

var sendmailStampLine = regexp.MustCompile(`(?m)^X-Msgate-Ref: (\S+)$`)

// contribSendmailMC returns contrib/sendmail/msgate.mc, the lines an admin
// adds to sendmail.mc: the tests build their sendmail.cf with them.
func contribSendmailMC(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "contrib", "sendmail", "msgate.mc"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// nsDaemon is `msgate serve` running inside a test's network namespace.
type nsDaemon struct {
	*daemonProc
	exited chan struct{} // closed once the process has been waited for
}

// stop ends msgate with SIGTERM (SIGKILL after 30 seconds).
func (d *nsDaemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// startServeIn is startServe for a network namespace: msgate listens on
// 127.0.0.1:8895 inside ns, beside Sendmail; its admin socket is a unix
// socket, reachable from the test (and from `msgate fbl`) as usual.
func startServeIn(t *testing.T, ns *sendmailtest.NetNS, config string) *nsDaemon {
	t.Helper()
	milterAddr := fmt.Sprintf("inet:127.0.0.1:%d", sendmailMilterPort)
	path := filepath.Join(t.TempDir(), "msgate.toml")
	dir := t.TempDir()
	cfg := fmt.Sprintf("[milter]\nlisten = %q\n[admin]\nlisten = \"unix:%s/admin.sock\"\n[state]\npath = \"%s/state.db\"\n[log]\nlevel = \"debug\"\nflush_interval = \"10ms\"\n%s",
		milterAddr, dir, dir, config)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(msgateBinary(t), "check", "-config", path).CombinedOutput(); err != nil {
		t.Fatalf("msgate check: %v\n%s", err, out)
	}
	d := &nsDaemon{
		daemonProc: &daemonProc{log: &syncBuffer{}, milter: milterAddr, done: make(chan error, 1)},
		exited:     make(chan struct{}),
	}
	d.cmd = ns.Command(msgateBinary(t), "serve", "-config", path)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.done <- d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("msgate log:\n%s", d.log.String())
		}
	})
	if err := ns.WaitListening(d.cmd.Process.Pid, sendmailMilterPort, 15*time.Second); err != nil {
		t.Fatalf("msgate serve in %s: %v\n%s", ns.Name, err, d.log.String())
	}
	return d
}

// startDNSIn serves testDNS on 127.0.0.1:53 inside ns: the resolver of
// msgate and of Sendmail (whose resolv.conf names 127.0.0.1) there.
func startDNSIn(t *testing.T, ns *sendmailtest.NetNS) *testDNS {
	t.Helper()
	pc, err := ns.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	return serveDNS(t, pc)
}

// smDelivered waits until the message with subject has reached the sink
// for every one of rcpts and returns its copies.
func smDelivered(t *testing.T, sm *sendmailtest.Sendmail, subject string, rcpts ...string) []postfixtest.Delivery {
	t.Helper()
	ds := sm.WaitDelivered(t, func(ds []postfixtest.Delivery) bool {
		return deliveredToAll(ds, subject, rcpts)
	}, fmt.Sprintf("%q delivered to %v", subject, rcpts))
	return postfixtest.BySubject(ds, subject)
}

// smLogLine returns the first line of the Sendmail log that contains every
// one of subs, or "".
func smLogLine(log string, subs ...string) string {
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			return line
		}
	}
	return ""
}

// Through a real Sendmail 8.17 with the real msgate binary, hooked up by
// contrib/sendmail/msgate.mc: under the limit mail to outlook.com and
// example.net is delivered, stamped; over it the Microsoft recipient gets
// 451 4.7.1 while the other recipient of the same message is delivered;
// the account is the envelope sender (Sendmail without SMTP AUTH passes no
// {auth_authen}), and msgate logs Sendmail's queue id; the stamp survives
// Sendmail and attributes a complaint; with msgate down, F=T defers mail.
func TestSendmailRateLimit(t *testing.T) {
	sendmailtest.Require(t)
	ns := sendmailtest.NewNetNS(t)
	names := startDNSIn(t, ns)
	names.setMX("contoso.test", "contoso-test.mail.protection.outlook.com")
	names.setMX("example.net", "mx.example.net")
	d := startServeIn(t, ns, fmt.Sprintf(`
[microsoft]
resolver = "127.0.0.1:53"
[feedback]
secret = %q
[[rate]]
name = "hourly"
window = "1h"
limit = 2
`, sendmailTestSecret))
	sm := sendmailtest.Start(t, ns, sendmailtest.Options{MilterMC: contribSendmailMC(t)})

	// contrib/sendmail/msgate.mc made it into sendmail.cf.
	cf := sm.CF(t)
	for _, want := range []string{
		"O InputMailFilters=msgate\n",
		"Xmsgate, S=inet:8895@127.0.0.1, F=T, T=C:10s;S:10s;R:10s;E:30s\n",
		"O Milter.macros.connect=j, _, {daemon_name}, {if_name}, {if_addr}, {client_addr}\n",
		"O Milter.macros.envfrom=i, {auth_type}, {auth_authen}, {auth_ssf}, {auth_author}, {mail_mailer}, {mail_host}, {mail_addr}, {client_addr}\n",
		"O Milter.macros.envrcpt=i, {rcpt_mailer}, {rcpt_host}, {rcpt_addr}\n",
		"O Milter.macros.eom=i, {msg_id}\n",
		"O Timeout.command=5m\n",
	} {
		if !strings.Contains(cf, want) {
			t.Errorf("sendmail.cf built from contrib/sendmail/msgate.mc lacks %q", strings.TrimSpace(want))
		}
	}

	// (a) Under the limit: both recipients delivered. The sender is
	// mixed-case: the account is the lower-cased envelope sender.
	from := "Alice@Test.Local"
	const alice = "alice@test.local"
	rcpts := []string{"a@outlook.com", "b@example.net"}
	res, err := sm.Send(t, from, rcpts, postfixtest.Message(from, rcpts, "sm-under-limit", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.RcptReplies {
		if !strings.HasPrefix(r, "250 2.1.5 ") {
			t.Errorf("RCPT %s: %q, want 250", rcpts[i], r)
		}
	}
	qid1 := sendmailtest.QueueID(res.DataReply)
	if qid1 == "" {
		t.Fatalf("DATA: %q, want Sendmail's 250 with a queue id", res.DataReply)
	}
	copies := smDelivered(t, sm, "sm-under-limit", rcpts...)
	if len(copies) != 1 {
		t.Fatalf("%d copies of the first message in the sink, want 1 for both recipients", len(copies))
	}
	first := copies[0].Message

	// (d) The stamp: msgate adds X-Msgate-Ref at end of message
	// (SMFIR_ADDHEADER, negotiated as SMFIF_ADDHDRS) and Sendmail applies it.
	m := sendmailStampLine.FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("the copy in the sink carries no X-Msgate-Ref:\n%s\nsendmail log:\n%s", first, sm.Log())
	}
	token := m[1]
	log := sm.WaitLog(t, qid1+": to=<", "the delivery of the first message")
	if smLogLine(log, qid1+": Milter (msgate) add: header: X-Msgate-Ref: "+token) == "" {
		t.Errorf("Sendmail logged no header addition of the stamp for %s", qid1)
	}
	if line := smLogLine(log, qid1+": to=<"); !strings.Contains(line, "stat=Sent") {
		t.Errorf("first message: %q, want stat=Sent", line)
	}
	if !strings.Contains(first, "with ESMTP id "+qid1) {
		t.Errorf("no Received header of Sendmail with queue id %s in the copy:\n%s", qid1, first)
	}

	// (c) The account: Sendmail passes no {auth_authen} without SMTP AUTH,
	// so the account is the envelope sender. Sendmail gives the queue id
	// (macro i) already at MAIL: msgate logs and remembers Sendmail's id.
	if lines := d.logLines(`"account":"`+alice+`"`, `"account_kind":"sender"`, `"queue_id":"`+qid1+`"`,
		`"stage":"recipient"`, `"action":"accept"`, `"rcpt_domain":"outlook.com"`, `"provider":"consumer"`); len(lines) == 0 {
		t.Errorf("no decision for alice's outlook.com recipient with Sendmail's queue id %s", qid1)
	}
	if lines := d.logLines(`"account":"`+alice+`"`, `"queue_id":"`+qid1+`"`, `"stage":"end-of-message"`, `"stamped":true`); len(lines) == 0 {
		t.Errorf("no stamped end-of-message decision for %s", qid1)
	}
	if lines := d.logLines(`"rcpt_domain":"example.net"`, `"reason":"not-microsoft"`); len(lines) == 0 {
		t.Errorf("example.net was not looked up and found not Microsoft's (the namespace's DNS)")
	}

	// (b) Over the limit (2 units: a@outlook.com, c@contoso.test): the
	// third Microsoft recipient gets 451 4.7.1, the others go through.
	rcpts = []string{"c@contoso.test", "d@hotmail.fr", "e@example.net"}
	res, err = sm.Send(t, from, rcpts, postfixtest.Message(from, rcpts, "sm-over-limit", "hello again"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RcptReplies) != 3 {
		t.Fatalf("RCPT replies %q", res.RcptReplies)
	}
	const refusal = "451 4.7.1 This account has sent too much mail to Microsoft-hosted mailboxes; try again later"
	if res.RcptReplies[1] != refusal {
		t.Errorf("limit+1 Microsoft recipient: %q, want %q", res.RcptReplies[1], refusal)
	}
	if !strings.HasPrefix(res.RcptReplies[0], "250 ") || !strings.HasPrefix(res.RcptReplies[2], "250 ") {
		t.Errorf("the recipients within the limit and not Microsoft's: %q", res.RcptReplies)
	}
	qid2 := sendmailtest.QueueID(res.DataReply)
	if qid2 == "" {
		t.Fatalf("DATA: %q", res.DataReply)
	}
	copies = smDelivered(t, sm, "sm-over-limit", "c@contoso.test", "e@example.net")
	for _, r := range postfixtest.AllRecipients(copies) {
		if strings.EqualFold(r, "d@hotmail.fr") {
			t.Errorf("the refused recipient d@hotmail.fr was delivered")
		}
	}
	if sendmailStampLine.FindString(copies[0].Message) == "" {
		t.Errorf("the second message (with a Microsoft 365 recipient) carries no stamp")
	}
	log = sm.WaitLog(t, qid2+": to=<", "the delivery of the second message")
	if smLogLine(log, qid2+": Milter: to=<d@hotmail.fr>, reject="+refusal) == "" {
		t.Errorf("Sendmail logged no milter refusal of d@hotmail.fr in %s", qid2)
	}
	if line := smLogLine(log, qid2+": to=<"); !strings.Contains(line, "stat=Sent") || strings.Contains(line, "hotmail.fr") {
		t.Errorf("second message: %q, want stat=Sent to c@contoso.test and e@example.net only", line)
	}
	if lines := d.logLines(`"account":"`+alice+`"`, `"queue_id":"`+qid2+`"`, `"action":"defer"`, `"reason":"rate-limit"`,
		`"rule":"hourly"`, `"rcpt_domain":"hotmail.fr"`); len(lines) == 0 {
		t.Errorf("msgate logged no deferral of hotmail.fr for %s", qid2)
	}
	if lines := d.logLines(`"queue_id":"`+qid2+`"`, `"rcpt_domain":"contoso.test"`, `"provider":"microsoft365"`); len(lines) == 0 {
		t.Errorf("contoso.test was not recognised as Microsoft 365 by its MX")
	}

	// Another account is untouched.
	bob := "bob@test.local"
	res, err = sm.Send(t, bob, []string{"f@outlook.com"}, postfixtest.Message(bob, []string{"f@outlook.com"}, "sm-bob", "hi"))
	if err != nil || len(res.RcptReplies) != 1 || !strings.HasPrefix(res.RcptReplies[0], "250 ") {
		t.Fatalf("bob: %+v %v", res, err)
	}
	smDelivered(t, sm, "sm-bob", "f@outlook.com")

	// Every milter session negotiated; none failed.
	log = sm.Log()
	if !strings.Contains(log, "Milter (msgate): init success to negotiate") {
		t.Errorf("Sendmail never logged a successful negotiation with msgate")
	}
	for _, bad := range []string{"Milter (msgate): to error state", "SYSERR", "milter_read(msgate)", "Milter (msgate): timeout"} {
		if line := smLogLine(log, bad); line != "" {
			t.Errorf("Sendmail logged %q", line)
		}
	}

	// (d) The stamp survived Sendmail unaltered: a complaint about the
	// first copy is attributed to alice by it.
	cfgPath := d.cmd.Args[len(d.cmd.Args)-1]
	fb := fblBinary(t, cfgPath, jmrpAround("sendmail-stamped", first))
	if fb.Outcome != feedback.OutcomeRecorded || fb.Account != alice || fb.AttributedBy != "stamp" {
		t.Errorf("complaint about the Sendmail copy: %+v, want recorded for %s by stamp", fb, alice)
	}

	// F=T: with msgate down, Sendmail defers mail rather than accepting
	// it unchecked.
	d.stop()
	res, err = sm.Send(t, bob, []string{"g@outlook.com"}, postfixtest.Message(bob, []string{"g@outlook.com"}, "sm-milter-down", "hi"))
	// Sendmail cannot connect to the milter when the SMTP session starts
	// and answers MAIL with 451 4.3.2.
	if re, ok := err.(*sendmailtest.ReplyError); !ok || re.Code != 451 || !strings.HasPrefix(re.Reply, "451 4.3.2 ") {
		t.Errorf("with msgate down: %+v %v, want 451 4.3.2 at MAIL (F=T)", res, err)
	}
	sm.WaitLog(t, "Milter: initialization failed, temp failing commands", "Sendmail's F=T log line")
	for _, dl := range sm.Delivered() {
		if dl.Header("Subject") == "sm-milter-down" {
			t.Errorf("mail was delivered unchecked while msgate was down")
		}
	}
}
