package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
	"github.com/msgate/msgate/cmd/msgate/internal/socketmap"
	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/config"
)

const throttleKey = "4.7.650 host hotmail-com.olc.protection.outlook.com[52.101.8.42] said: 451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775) (in reply to MAIL FROM command)"

// Throttle replies fed through the socketmap lower the effective cap by
// replies.cap_factor each; status and /metrics show it; the third within
// an hour suspends delivery (throttled), and Microsoft recipients wait.
func TestThrottleRepliesLowerTheCap(t *testing.T) {
	feed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := startAdminDaemon(t, func(c *config.Config) {
		capConfig(100)(c)
		c.Replies.Listen = "inet:" + feed
	})
	lookup := func(key string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := socketmap.Lookup(ctx, "tcp", feed, "dsn", key)
		if err != nil || r != socketmap.NotFound {
			t.Fatalf("lookup = %q, %v; want NOTFOUND", r, err)
		}
	}
	lookup("2.0.0 250 2.0.0 OK <x@y>")
	lookup(throttleKey)
	lookup(throttleKey)
	st := a.status(t)
	if st.Cap.Limit != 25 || st.Cap.Configured != 100 || st.Cap.Factor != 0.25 || !strings.Contains(st.Cap.Why, "throttled") {
		t.Fatalf("cap after 2 throttles = %+v, want 25 lowered from 100", st.Cap)
	}
	if st.Delivery.State != "normal" || !st.Delivery.Feed {
		t.Fatalf("delivery after 2 throttles = %+v", st.Delivery)
	}
	m := scrapeMetrics(t, a.adminAddr)
	for _, want := range []string{
		"msgate_cap_limit 25", "msgate_cap_factor 0.25", "msgate_microsoft_delivery_state 0",
		`msgate_delivery_replies_total{class="throttle",rule="ip_reputation"} 2`,
		`msgate_delivery_replies_total{class="success",rule=""} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	lookup(throttleKey)
	if st := a.status(t); st.Delivery.State != "throttled" || st.Delivery.Rule != "ip_reputation" || st.Cap.Limit != 12 {
		t.Fatalf("after 3 throttles: delivery %+v, cap %+v", st.Delivery, st.Cap)
	}
	if m := scrapeMetrics(t, a.adminAddr); !strings.Contains(m, "msgate_microsoft_delivery_state 1") {
		t.Errorf("/metrics lacks the throttled state")
	}
	c := dial(t, a.milterAddr)
	got := rcptReplies(t, c, milter.Message{From: "a@example.org", Rcpts: []string{"x@outlook.com", "y@example.net"}})
	if r := got["x@outlook.com"]; !isDefer(r) || !strings.Contains(r.Text, "paused") {
		t.Errorf("Microsoft RCPT while throttled = %+v", r)
	}
	if r := got["y@example.net"]; r.Action != "continue" {
		t.Errorf("other RCPT while throttled = %+v", r)
	}
}

// Postfix with smtp_delivery_status_filter naming a msgate that is not
// running delivers as usual: a socketmap that does not connect is skipped.
func TestPostfixFeedDown(t *testing.T) {
	postfixtest.Require(t)
	p := postfixtest.Start(t, postfixtest.Options{
		RelayDomains: []string{"example.org"},
		MainCF:       map[string]string{"smtp_delivery_status_filter": fmt.Sprintf("socketmap:inet:127.0.0.1:%d:dsn", freePort(t))},
	})
	for i := range 3 {
		to := []string{"dave@example.org"}
		if _, data, err := p.Send(t, "alice@example.org", to, postfixtest.Message("alice@example.org", to, fmt.Sprintf("down-%d", i), "hi")); err != nil || !strings.HasPrefix(data, "250") {
			t.Fatalf("send: %v %q", err, data)
		}
	}
	start := time.Now()
	p.WaitDelivered(t, func(ds []postfixtest.Delivery) bool {
		n := 0
		for i := range 3 {
			n += len(postfixtest.BySubject(ds, fmt.Sprintf("down-%d", i)))
		}
		return n == 3
	}, "3 messages with the status filter down")
	t.Logf("delivered %v after the last was accepted", time.Since(start).Round(time.Millisecond))
}

// The delivery state survives a restart; a damaged state file is kept
// aside and the daemon starts from normal.
func TestDeliveryStateFile(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.State.Path = dir + "/state.db"
	restart := restarter(t, cfg)
	newFeed := func() *deliveryFeed { return restart().feed }
	f := newFeed()
	for range 5 {
		f.lookup("dsn", "5.7.1 host x[1.2.3.4] said: 550 5.7.1 ... on our block list (S3150)")
	}
	f.step(context.Background())
	if st := newFeed().status(); st.State != "blocked" {
		t.Fatalf("after a restart: %+v", st)
	}
	// Counts between transitions are kept too.
	os.Remove(cfg.ReplyStateFile())
	f = newFeed()
	for range 4 {
		f.lookup("dsn", "5.7.1 host x[1.2.3.4] said: 550 5.7.1 ... on our block list (S3150)")
	}
	f.step(context.Background())
	f = newFeed()
	f.lookup("dsn", "5.7.1 host x[1.2.3.4] said: 550 5.7.1 ... on our block list (S3150)")
	if st := f.status(); st.State != "blocked" {
		t.Fatalf("the fifth reply after a restart: %+v", st)
	}
	if err := os.WriteFile(cfg.ReplyStateFile(), []byte(`{"state": {"mode": "blo`), 0o644); err != nil {
		t.Fatal(err)
	}
	if st := newFeed().status(); st.State != "normal" {
		t.Fatalf("from a damaged file: %+v", st)
	}
	if _, err := os.Stat(cfg.ReplyStateFile() + ".damaged"); err != nil {
		t.Errorf("the damaged file was not kept: %v", err)
	}
}

// Following a mail log instead of the socketmap: five block-list bounces
// as Postfix logs them block delivery.
func TestLogFileFeed(t *testing.T) {
	logFile := t.TempDir() + "/mail.log"
	if err := os.WriteFile(logFile, []byte("Dec  3 11:00:00 mx postfix/smtp[1]: OLD1: to=<x@outlook.com>, relay=r, dsn=5.7.1, status=bounced (host h said: 550 5.7.1 (S3150))\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAdminDaemon(t, func(c *config.Config) { c.Replies.LogFile = logFile })
	time.Sleep(300 * time.Millisecond) // the follower has opened the log at its end
	f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		fmt.Fprintf(f, "Dec  3 12:00:0%d mx postfix/smtp[2]: Q%d: to=<bob@outlook.com>, relay=hotmail-com.olc.protection.outlook.com[52.101.8.42]:25, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced (host hotmail-com.olc.protection.outlook.com[52.101.8.42] said: 550 5.7.1 Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). (in reply to MAIL FROM command))\n", i, i)
	}
	f.Close()
	time.Sleep(600 * time.Millisecond)
	// The line from before msgate started does not count: four are not five.
	if st := a.status(t); st.Delivery.State != "normal" || !st.Delivery.Feed {
		t.Fatalf("after 4 new lines: %+v", st.Delivery)
	}
	f, _ = os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintln(f, "Dec  3 12:00:09 mx postfix/smtp[2]: Q9: to=<bob@outlook.com>, relay=r, dsn=5.7.1, status=bounced (host h said: 550 5.7.1 on our block list (S3150). (in reply to MAIL FROM command))")
	f.Close()
	for i := 0; a.status(t).Delivery.State != "blocked"; i++ {
		if i > 100 {
			t.Fatalf("not blocked after the fifth line: %+v", a.status(t).Delivery)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A msgate that accepts the socketmap connection and never answers (hung,
// e.g. stopped with SIGSTOP) holds each delivery for Postfix's socketmap
// timeout (100s), and then Postfix delivers: the documented bound.
func TestPostfixFeedHung(t *testing.T) {
	postfixtest.Require(t)
	if testing.Short() {
		t.Skip("waits for Postfix's 100s socketmap timeout")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	p := postfixtest.Start(t, postfixtest.Options{
		RelayDomains: []string{"example.org"},
		MainCF:       map[string]string{"smtp_delivery_status_filter": "socketmap:inet:" + ln.Addr().String() + ":dsn"},
	})
	to := []string{"dave@example.org"}
	if _, data, err := p.Send(t, "alice@example.org", to, postfixtest.Message("alice@example.org", to, "hung-1", "hi")); err != nil || !strings.HasPrefix(data, "250") {
		t.Fatalf("send: %v %q", err, data)
	}
	// The sink has the message at once; Postfix records the outcome (and
	// removes the queue file) once the lookup gives up.
	start := time.Now()
	for {
		if len(postfixtest.BySubject(p.Delivered(t), "hung-1")) == 1 && strings.Contains(p.Log(t), "status=sent") {
			break
		}
		if time.Since(start) > 200*time.Second {
			t.Fatalf("not delivered after %v with the status filter hung; postfix log:\n%s", time.Since(start), p.Log(t))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("with the status filter hung, Postfix recorded the delivery %v after it was accepted", time.Since(start).Round(time.Second))
	if n := len(postfixtest.BySubject(p.Delivered(t), "hung-1")); n != 1 {
		t.Errorf("delivered %d times", n)
	}
	for i := 0; len(p.Queue(t)) != 0; i++ {
		if i > 40 {
			t.Fatalf("left in the queue: %+v", p.Queue(t))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Throttle replies from the scripted MX, through Postfix's status filter,
// lower the effective cap; status and /metrics show it.
func TestPostfixThrottleLowersCap(t *testing.T) {
	postfixtest.Require(t)
	mx := startFakeMX(t, map[string]string{
		"bob@outlook.com": "451 4.7.650 The mail server [127.0.0.1] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
	})
	feed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := startAdminDaemon(t, func(c *config.Config) {
		capConfig(400)(c)
		c.Replies.Listen = "inet:" + feed
	})
	const sinkPort = 2526
	p := postfixtest.Start(t, postfixtest.Options{
		MilterAddr: "inet:" + a.milterAddr,
		SinkPort:   sinkPort,
		MainCF: map[string]string{
			"transport_maps":              fmt.Sprintf("inline:{ outlook.com=smtp:[127.0.0.1]:%s }", mx.port()),
			"smtp_delivery_status_filter": "socketmap:inet:" + feed + ":dsn",
		},
	})
	to := []string{"bob@outlook.com"}
	if _, data, err := p.Send(t, "alice@example.org", to, postfixtest.Message("alice@example.org", to, "throttled-1", "hi")); err != nil || !strings.HasPrefix(data, "250") {
		t.Fatalf("send: %v %q", err, data)
	}
	p.WaitLog(t, "rate limited due to IP reputation", "the MX's throttle reply")
	var st admin.Status
	for i := 0; ; i++ {
		var err error
		if st, err = admin.NewClient("tcp", a.adminAddr, 10*time.Second).Status(0); err != nil {
			t.Fatal(err)
		}
		if st.Cap.Limit < 400 {
			break
		}
		if i > 200 {
			t.Fatalf("cap not lowered: %+v", st.Cap)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Cap.Configured != 400 || st.Cap.Limit != int64(400*st.Cap.Factor) || st.Cap.Why == "" {
		t.Errorf("status cap = %+v", st.Cap)
	}
	resp, err := http.Get("http://" + a.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `msgate_delivery_replies_total{class="throttle",rule="ip_reputation"}`) ||
		strings.Contains(string(b), "msgate_cap_factor 1\n") {
		t.Errorf("/metrics: no throttle counted or the factor not lowered")
	}
}

// While paused, the transport map takes in Microsoft domains msgate meets
// meanwhile (at most once a minute); on resume it is emptied.
func TestTransportMapRefresh(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.State.Path = dir + "/state.db"
	cfg.Replies.TransportFile = dir + "/transport"
	// postmap stands in as /bin/touch of the .db it would write.
	cfg.Replies.Postmap, cfg.Replies.Reload, cfg.Replies.OnResume = []string{"/bin/sh", "-c", `touch "${0#hash:}.db"`}, nil, nil
	d, err := newDaemon(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	domains := []string{"outlook.com"}
	f := d.feed
	f.now = func() time.Time { return now }
	f.known = func(time.Time) []string { return domains }
	mapText := func() string {
		b, err := os.ReadFile(cfg.Replies.TransportFile)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for range 5 {
		f.lookup("dsn", "5.7.1 host x[1.2.3.4] said: 550 5.7.1 ... on our block list (S3150)")
	}
	f.step(context.Background())
	if m := mapText(); !strings.Contains(m, "outlook.com retry:4.7.1") || strings.Contains(m, "contoso") {
		t.Fatalf("paused map:\n%s", m)
	}
	domains = append(domains, "contoso.example")
	now = now.Add(30 * time.Second)
	f.step(context.Background())
	if strings.Contains(mapText(), "contoso") {
		t.Fatalf("rewritten within a minute:\n%s", mapText())
	}
	now = now.Add(31 * time.Second)
	f.step(context.Background())
	if m := mapText(); !strings.Contains(m, "contoso.example retry:4.7.1") {
		t.Fatalf("a domain met during the pause is not in the map:\n%s", m)
	}
	now = now.Add(2 * time.Hour)
	f.step(context.Background())
	if m := mapText(); strings.Contains(m, "retry:") {
		t.Fatalf("map after the resume:\n%s", m)
	}
}
