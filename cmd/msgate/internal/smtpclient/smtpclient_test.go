package smtpclient

import (
	"bufio"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeServer answers each line the client sends with the reply that
// replies gives it ("" for the greeting), and records the lines (the
// message as one entry, up to its final dot).
func fakeServer(t *testing.T, replies func(line string) string) (net.Conn, <-chan []string) {
	t.Helper()
	client, server := net.Pipe()
	seen := make(chan []string, 1)
	go func() {
		defer server.Close()
		var lines []string
		defer func() { seen <- lines }()
		r := bufio.NewReader(server)
		write := func(reply string) bool {
			_, err := server.Write([]byte(reply + "\r\n"))
			return err == nil
		}
		if !write(replies("")) {
			return
		}
		inData := false
		var msg strings.Builder
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if inData {
				if l != ".\r\n" {
					msg.WriteString(l)
					continue
				}
				inData = false
				l = "MESSAGE " + msg.String()
			}
			lines = append(lines, strings.TrimSuffix(l, "\r\n"))
			reply := replies(strings.TrimSuffix(l, "\r\n"))
			inData = strings.HasPrefix(reply, "354")
			if !write(reply) || strings.HasPrefix(l, "QUIT") {
				return
			}
		}
	}()
	return client, seen
}

func TestSend(t *testing.T) {
	conn, seen := fakeServer(t, func(line string) string {
		switch {
		case line == "":
			return "220 fake ESMTP"
		case strings.HasPrefix(line, "EHLO"):
			return "250-fake\r\n250 AUTH PLAIN"
		case strings.HasPrefix(line, "AUTH"):
			return "235 2.7.0 ok"
		case line == "RCPT TO:<later@outlook.com>":
			return "451 4.7.1 try later"
		case line == "DATA":
			return "354 go on"
		case strings.HasPrefix(line, "MESSAGE"):
			return "250 2.0.0 Ok: queued as ABC"
		case line == "QUIT":
			return "221 bye"
		}
		return "250 ok"
	})
	res, err := New(conn, 5*time.Second).Send(Transaction{User: "alice", Pass: "pw", From: "a@test.local",
		Rcpts: []string{"b@example.net", "later@outlook.com"}, Body: "Subject: x\n\n.dot\n"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RcptReplies) != 2 || res.RcptReplies[0] != "250 ok" || res.RcptReplies[1] != "451 4.7.1 try later" ||
		res.DataReply != "250 2.0.0 Ok: queued as ABC" {
		t.Errorf("result %+v", res)
	}
	want := []string{
		"EHLO client.test.local",
		"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pw")),
		"MAIL FROM:<a@test.local>",
		"RCPT TO:<b@example.net>",
		"RCPT TO:<later@outlook.com>",
		"DATA",
		"MESSAGE Subject: x\r\n\r\n..dot", // the fake drops the last line end, as of every line
		"QUIT",
	}
	if got := <-seen; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the server saw\n%q\nwant\n%q", got, want)
	}
}

// No recipient accepted: no DATA. A refused MAIL ends the transaction
// with a *ReplyError.
func TestSendRefusals(t *testing.T) {
	conn, seen := fakeServer(t, func(line string) string {
		switch {
		case line == "":
			return "220 fake"
		case strings.HasPrefix(line, "RCPT"):
			return "550 5.1.1 no"
		case line == "QUIT":
			return "221 bye"
		}
		return "250 ok"
	})
	res, err := New(conn, 5*time.Second).Send(Transaction{From: "a@test.local", Rcpts: []string{"x@example.net"}, Body: "x"})
	if err != nil || res.DataReply != "" || len(res.RcptReplies) != 1 {
		t.Errorf("all refused: %+v, %v", res, err)
	}
	if got := strings.Join(<-seen, "|"); strings.Contains(got, "DATA") || strings.Contains(got, "AUTH") {
		t.Errorf("the server saw %q", got)
	}

	conn, _ = fakeServer(t, func(line string) string {
		switch {
		case line == "":
			return "220 fake"
		case strings.HasPrefix(line, "MAIL"):
			return "451 4.7.1 milter says later"
		}
		return "250 ok"
	})
	_, err = New(conn, 5*time.Second).Send(Transaction{From: "a@test.local", Rcpts: []string{"x@example.net"}})
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 451 || re.Command != "MAIL FROM:<a@test.local>" || re.Reply != "451 4.7.1 milter says later" {
		t.Errorf("refused MAIL: %v", err)
	}
}

func TestAngleAddr(t *testing.T) {
	for in, want := range map[string]string{
		"<a@b.example> SIZE=10": "a@b.example",
		"<>":                    "",
		"<> BODY=8BITMIME":      "",
		"a@b.example SIZE=1":    "a@b.example",
	} {
		if got := AngleAddr(in); got != want {
			t.Errorf("AngleAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
