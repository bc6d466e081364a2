package postfixtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/smtpclient"
)

// ReplyError is a refusal of a command that ends the SMTP dialogue, such
// as a 4xx or 5xx reply to MAIL.
type ReplyError = smtpclient.ReplyError

// smtpTimeout bounds each command of Send; it is above Postfix's default
// milter timeouts (30s) so that a slow milter shows as Postfix's reply.
const smtpTimeout = 90 * time.Second

// Send submits one message over SMTP to Postfix's smtpd, recipient by
// recipient, so that every RCPT reply is seen even when it is a 4xx or 5xx.
// rcptReplies[i] is the reply to RCPT TO:<rcpts[i]> ("250 2.1.5 Ok"; a
// multi-line reply has its lines joined by "\n"). DATA is sent only when a
// recipient was accepted; dataReply is then the reply to the final "." (or
// the refusal of DATA), and "" otherwise. body is the message (header and
// body); line ends are turned into CRLF and dots are stuffed.
//
// err is set only when the connection fails or a command before RCPT (the
// greeting, EHLO or MAIL) is refused; it is then a *ReplyError.
func (p *Postfix) Send(t testing.TB, from string, rcpts []string, body string) (rcptReplies []string, dataReply string, err error) {
	t.Helper()
	return p.send("", "", from, rcpts, body)
}

// SendAuth is Send to the submission service after AUTH PLAIN as user (see
// Options.SASLUsers).
func (p *Postfix) SendAuth(t testing.TB, user, pass, from string, rcpts []string, body string) (rcptReplies []string, dataReply string, err error) {
	t.Helper()
	return p.send(user, pass, from, rcpts, body)
}

func (p *Postfix) send(user, pass, from string, rcpts []string, body string) (rcptReplies []string, dataReply string, err error) {
	addr := p.SMTPAddr()
	if user != "" {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p.opts.SubmissionPort))
	}
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, "", fmt.Errorf("postfixtest: connecting to smtpd: %w", err)
	}
	defer conn.Close()
	res, err := smtpclient.New(conn, smtpTimeout).Send(smtpclient.Transaction{User: user, Pass: pass, From: from, Rcpts: rcpts, Body: body})
	return res.RcptReplies, res.DataReply, err
}

// Message returns a small RFC 5322 message. Give each message of a test
// its own subject: Delivered is searched by it (see BySubject).
func Message(from string, to []string, subject, text string) string {
	var id [8]byte
	_, _ = rand.Read(id[:])
	var b strings.Builder
	fmt.Fprintf(&b, "Date: %s\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: <%s>\n", from)
	fmt.Fprintf(&b, "To: %s\n", joinAddrs(to))
	fmt.Fprintf(&b, "Subject: %s\n", subject)
	fmt.Fprintf(&b, "Message-ID: <%s@postfixtest.test.local>\n", hex.EncodeToString(id[:]))
	b.WriteString("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n")
	b.WriteString(text)
	if !strings.HasSuffix(text, "\n") {
		b.WriteString("\n")
	}
	return b.String()
}

func joinAddrs(addrs []string) string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = "<" + a + ">"
	}
	return strings.Join(out, ", ")
}
