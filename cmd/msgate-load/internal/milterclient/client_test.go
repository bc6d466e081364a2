package milterclient

import (
	"errors"
	"strings"
	"testing"
)

var testClient = Client{Name: "client.test", Addr: "192.0.2.1", Port: 40000, Helo: "client.test"}

func testMessage() *Message {
	return &Message{
		QueueID: "ABC123",
		Login:   "alice@example.org",
		From:    "alice@example.org",
		Rcpts:   []string{"bob@outlook.com", "carol@example.net"},
		Headers: []Header{{"From", "alice@example.org"}, {"Subject", "hi"}},
		Body:    []byte("hello\r\n"),
	}
}

// commands lists the commands received, macro packets left out.
func commands(ps []packet) string {
	var s []string
	for _, p := range ps {
		if p.cmd != 'D' {
			s = append(s, string(p.cmd))
		}
	}
	return strings.Join(s, " ")
}

// macros returns the macro packets for a stage (by command letter), each
// as its name=value pairs.
func macros(ps []packet, stage byte) []string {
	var out []string
	for _, p := range ps {
		if p.cmd == 'D' && len(p.data) > 0 && p.data[0] == stage {
			kv := cstrings(p.data[1:])
			var pairs []string
			for i := 0; i+1 < len(kv); i += 2 {
				pairs = append(pairs, kv[i]+"="+kv[i+1])
			}
			out = append(out, strings.Join(pairs, " "))
		}
	}
	return out
}

func outcomes(res *Result) string {
	var s []string
	for _, r := range res.Rcpts {
		s = append(s, r.Stage.String()+":"+r.Outcome())
	}
	return strings.Join(s, " ")
}

func send(t *testing.T, c *Conn, m *Message) *Result {
	t.Helper()
	var res Result
	if err := c.Send(m, &res); err != nil {
		t.Fatalf("Send: %v", err)
	}
	return &res
}

func open(t *testing.T, c *Conn) Reply {
	t.Helper()
	r, err := c.Open(testClient)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// An rspamd-like milter (protocol 6, answers only at end of message) gets
// every stage, DATA included, and is waited for once per message.
func TestNoReplyFlags(t *testing.T) {
	const rspamdNoReply = NoReplyConnect | NoReplyHelo | NoReplyMail | NoReplyRcpt | NoReplyData |
		NoReplyUnknown | NoReplyHeader | NoReplyEOH | NoReplyBody
	f := &fakeMilter{version: 6, actions: AddHeaders | AddRcpt | DelRcpt | ChangeHeaders, proto: rspamdNoReply,
		answer: func(p packet) [][]byte {
			if p.cmd == 'E' {
				return [][]byte{pkt('h', "X-Spam\x00", "no\x00"), pkt('a')}
			}
			return nil
		}}
	c := f.start(t, Options{})
	open(t, c)
	res := send(t, c, testMessage())
	if got, want := outcomes(res), "end-of-message:accept end-of-message:accept"; got != want {
		t.Errorf("outcomes %q, want %q", got, want)
	}
	if res.Mods.AddHeader != 1 || res.Aborted {
		t.Errorf("mods %+v aborted %v, want one added header, not aborted", res.Mods, res.Aborted)
	}
	if c.RoundTrips() != 1 {
		t.Errorf("%d round trips, want 1 (end of message only)", c.RoundTrips())
	}
	got := f.received(t, c)
	if want := "C H M R R T L L N B E Q"; commands(got) != want {
		t.Errorf("commands %q, want %q", commands(got), want)
	}
	if m, want := macros(got, 'T'), "i=ABC123"; len(m) != 1 || m[0] != want {
		t.Errorf("DATA macros %q, want [%q]", m, want)
	}
}

// A protocol-2 milter that takes away what msgate takes away gets connect,
// MAIL, RCPT and end of message; the macros of end of headers still go,
// as Postfix sends them, but nothing of DATA, which version 2 lacks.
func TestEnvelopeOnly(t *testing.T) {
	f := &fakeMilter{version: 2, proto: NoHelo | NoHeaders | NoEOH | NoBody | NoUnknown | NoData}
	c := f.start(t, Options{})
	for _, s := range []Stage{StageHelo, StageData, StageHeader, StageEOH, StageBody} {
		if c.Sends(s) {
			t.Errorf("Sends(%s) = true", s)
		}
	}
	open(t, c)
	res := send(t, c, testMessage())
	if got, want := outcomes(res), "end-of-message:continue end-of-message:continue"; got != want {
		t.Errorf("outcomes %q, want %q", got, want)
	}
	if c.RoundTrips() != 5 {
		t.Errorf("%d round trips, want 5 (connect, mail, 2 rcpt, end of message)", c.RoundTrips())
	}
	got := f.received(t, c)
	if want := "C M R R E Q"; commands(got) != want {
		t.Errorf("commands %q, want %q", commands(got), want)
	}
	if m := macros(got, 'T'); len(m) != 0 {
		t.Errorf("DATA macros sent to a version 2 milter: %q", m)
	}
	if m := macros(got, 'N'); len(m) != 1 {
		t.Errorf("end-of-header macros %q, want one packet as Postfix sends", m)
	}
	wantMail := "i=ABC123 {auth_type}=PLAIN {auth_authen}=alice@example.org {mail_addr}=alice@example.org {mail_host}=example.org"
	if m := macros(got, 'M'); len(m) != 1 || m[0] != wantMail {
		t.Errorf("MAIL macros %q, want [%q]", m, wantMail)
	}
	wantConn := "j=mx.load.test {daemon_name}=msgate-load {daemon_addr}=127.0.0.1 v=Postfix 3.7.11 _=client.test [192.0.2.1] {client_addr}=192.0.2.1 {client_name}=client.test"
	if m := macros(got, 'C'); len(m) != 1 || m[0] != wantConn {
		t.Errorf("connect macros %q, want [%q]", m, wantConn)
	}
}

// A protocol-2 milter that negotiates every stage gets them all but DATA,
// each waited for.
func TestFullVersion2(t *testing.T) {
	f := &fakeMilter{version: 2}
	c := f.start(t, Options{})
	open(t, c)
	send(t, c, testMessage())
	if c.RoundTrips() != 10 {
		t.Errorf("%d round trips, want 10", c.RoundTrips())
	}
	if got, want := commands(f.received(t, c)), "C H M R R L L N B E Q"; got != want {
		t.Errorf("commands %q, want %q", got, want)
	}
}

// The milter's own macro lists replace the defaults for their stages only.
func TestSymList(t *testing.T) {
	f := &fakeMilter{version: 6, actions: SetSymList, proto: NoHelo | NoHeaders | NoEOH | NoBody | NoData,
		symlists: map[uint32]string{macroConnect: "j {client_addr}", macroMail: "{auth_authen} i {client_addr}"}}
	c := f.start(t, Options{})
	if names, chosen := c.MacroList(StageMail); !chosen || strings.Join(names, ",") != "{auth_authen},i,{client_addr}" {
		t.Errorf("MacroList(mail) = %q, %v", names, chosen)
	}
	open(t, c)
	send(t, c, testMessage())
	anon := testMessage()
	anon.Login = ""
	send(t, c, anon)
	got := f.received(t, c)
	want := []string{
		"{auth_authen}=alice@example.org i=ABC123 {client_addr}=192.0.2.1",
		"i=ABC123 {client_addr}=192.0.2.1",
	}
	if m := macros(got, 'M'); strings.Join(m, "|") != strings.Join(want, "|") {
		t.Errorf("MAIL macros %q, want %q", m, want)
	}
	if m := macros(got, 'C'); len(m) != 1 || m[0] != "j=mx.load.test {client_addr}=192.0.2.1" {
		t.Errorf("connect macros %q", m)
	}
	if m := macros(got, 'R'); len(m) != 4 || m[0] != "i=ABC123 {rcpt_addr}=bob@outlook.com {rcpt_host}=outlook.com {rcpt_mailer}=smtp" {
		t.Errorf("RCPT macros %q: want Postfix's defaults", m)
	}
}

// msgateLike refuses Microsoft recipients with a custom 451, as msgate
// does past a limit, and adds its stamp at end of message.
func msgateLike(p packet) [][]byte {
	switch {
	case p.cmd == 'R' && strings.Contains(string(p.data), "@outlook.com"):
		return [][]byte{pkt('y', "451 4.7.1 Try again later\x00")}
	case p.cmd == 'E':
		return [][]byte{pkt('h', "X-Msgate-Ref\x00", "v1.x\x00"), pkt('c')}
	}
	return [][]byte{pkt('c')}
}

func TestRecipientRefused(t *testing.T) {
	f := &fakeMilter{version: 2, actions: AddHeaders, proto: NoHelo | NoHeaders | NoEOH | NoBody | NoData, answer: msgateLike}
	c := f.start(t, Options{})
	open(t, c)

	res := send(t, c, testMessage())
	if got, want := outcomes(res), "rcpt:reply-4xx end-of-message:continue"; got != want {
		t.Errorf("outcomes %q, want %q", got, want)
	}
	if r := res.Rcpts[0]; r.Code != 451 || r.Text != "4.7.1 Try again later" {
		t.Errorf("refusal %d %q", r.Code, r.Text)
	}
	if res.Mods.AddHeader != 1 || res.Aborted {
		t.Errorf("mods %+v aborted %v", res.Mods, res.Aborted)
	}

	// Every recipient refused: the transaction is aborted, no end of message.
	only := testMessage()
	only.Rcpts = only.Rcpts[:1]
	res = send(t, c, only)
	if got, want := outcomes(res), "rcpt:reply-4xx"; got != want || !res.Aborted {
		t.Errorf("outcomes %q aborted %v, want %q aborted", got, res.Aborted, want)
	}
	// The connection goes on.
	send(t, c, testMessage())
	if got, want := commands(f.received(t, c)), "C M R R E M R A M R R E Q"; got != want {
		t.Errorf("commands %q, want %q", got, want)
	}
}

func TestMessageLevelAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answer   func(packet) [][]byte
		outcomes string
		commands string
		aborted  bool
	}{
		{"tempfail at MAIL", answerAt('M', 't'), "mail:tempfail mail:tempfail", "C M A Q", true},
		{"accept at MAIL", answerAt('M', 'a'), "mail:accept mail:accept", "C M Q", false},
		{"discard at RCPT", answerAt('R', 'd'), "rcpt:discard rcpt:discard", "C M R Q", false},
		{"accept at first RCPT", answerAt('R', 'a'), "rcpt:accept rcpt:accept", "C M R Q", false},
		{"reject at end of header", answerAt('N', 'r'), "end-of-header:reject end-of-header:reject", "C M R R L L N A Q", true},
		{"reject at end of message", answerAt('E', 'r'), "end-of-message:reject end-of-message:reject", "C M R R L L N B E A Q", true},
		{"progress then continue", progress, "end-of-message:continue end-of-message:continue", "C M R R L L N B E Q", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeMilter{version: 6, proto: NoHelo | NoData, answer: tc.answer}
			c := f.start(t, Options{})
			open(t, c)
			res := send(t, c, testMessage())
			if got := outcomes(res); got != tc.outcomes {
				t.Errorf("outcomes %q, want %q", got, tc.outcomes)
			}
			if res.Aborted != tc.aborted {
				t.Errorf("aborted %v, want %v", res.Aborted, tc.aborted)
			}
			if got := commands(f.received(t, c)); got != tc.commands {
				t.Errorf("commands %q, want %q", got, tc.commands)
			}
		})
	}
}

// answerAt answers cmd with action, everything else with continue.
func answerAt(cmd, action byte) func(packet) [][]byte {
	return func(p packet) [][]byte {
		if p.cmd == cmd {
			return [][]byte{pkt(action)}
		}
		return [][]byte{pkt('c')}
	}
}

func progress(p packet) [][]byte {
	if p.cmd == 'E' {
		return [][]byte{pkt('p'), pkt('p'), pkt('c')}
	}
	return [][]byte{pkt('c')}
}

// An accept at connect holds for the whole connection: nothing more is sent.
func TestAcceptAtConnect(t *testing.T) {
	f := &fakeMilter{version: 2, answer: answerAt('C', 'a')}
	c := f.start(t, Options{})
	if r := open(t, c); r.Action != Accept {
		t.Fatalf("Open = %+v, want accept", r)
	}
	res := send(t, c, testMessage())
	if got, want := outcomes(res), "connect:accept connect:accept"; got != want {
		t.Errorf("outcomes %q, want %q", got, want)
	}
	if got, want := commands(f.received(t, c)), "C Q"; got != want {
		t.Errorf("commands %q, want %q", got, want)
	}
}

func TestSkipAndLeadingSpace(t *testing.T) {
	f := &fakeMilter{version: 6, proto: NoHelo | NoData | Skip | HeaderLeadSpace, answer: answerAt('B', 's')}
	c := f.start(t, Options{})
	open(t, c)
	m := testMessage()
	m.Body = make([]byte, 2*maxBodyChunk+10) // three chunks
	send(t, c, m)
	got := f.received(t, c)
	if want := "C M R R L L N B E Q"; commands(got) != want {
		t.Errorf("commands %q, want %q: the body stops at skip", commands(got), want)
	}
	for _, p := range got {
		if p.cmd == 'L' {
			if kv := cstrings(p.data); len(kv) != 2 || !strings.HasPrefix(kv[1], " ") {
				t.Errorf("header %q: want the value with its leading space", kv)
			}
		}
	}
}

func TestProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      *fakeMilter
		opts   Options
		inOpen bool
	}{
		{"version 7", &fakeMilter{version: 7}, Options{}, true},
		{"version 1", &fakeMilter{version: 1}, Options{}, true},
		{"actions not offered", &fakeMilter{version: 6, actions: Quarantine}, Options{Actions: AddHeaders}, true},
		{"protocol not offered", &fakeMilter{version: 6, proto: NoReplyRcpt}, Options{Protocol: NoHelo}, true},
		{"edit not negotiated", &fakeMilter{version: 2, answer: func(p packet) [][]byte {
			if p.cmd == 'E' {
				return [][]byte{pkt('h', "X\x00", "y\x00"), pkt('c')}
			}
			return [][]byte{pkt('c')}
		}}, Options{}, false},
		{"malformed reply code", &fakeMilter{version: 2, answer: func(p packet) [][]byte {
			if p.cmd == 'R' {
				return [][]byte{pkt('y', "250 fine\x00")}
			}
			return [][]byte{pkt('c')}
		}}, Options{}, false},
		{"edit before end of message", &fakeMilter{version: 2, actions: AddHeaders, answer: answerAt('M', 'h')}, Options{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.inOpen {
				tc.f.done = make(chan struct{})
				mta, milter := pipe()
				go tc.f.serve(milter)
				defer func() { mta.Close(); <-tc.f.done }()
				if _, err := New(mta, tc.opts); !errors.Is(err, ErrProtocol) {
					t.Fatalf("New: %v, want ErrProtocol", err)
				}
				return
			}
			c := tc.f.start(t, tc.opts)
			open(t, c)
			var res Result
			err := c.Send(testMessage(), &res)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("Send: %v, want ErrProtocol", err)
			}
			if err2 := c.Send(testMessage(), &res); err2 != err {
				t.Errorf("second Send: %v, want the same error", err2)
			}
		})
	}
}
