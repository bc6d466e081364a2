// Package smtpclient is the small SMTP client of the end-to-end test
// harnesses: one command, one reply, every reply code seen (net/smtp stops
// at the first error, and the tests need each RCPT's 4xx), and Send, the
// whole transaction that the Postfix and Sendmail harnesses both run.
package smtpclient

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Client is one SMTP connection.
type Client struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// New wraps a connection; each command and its reply must complete within
// timeout.
func New(conn net.Conn, timeout time.Duration) *Client {
	return &Client{conn: conn, r: bufio.NewReader(conn), timeout: timeout}
}

// Cmd sends line (nothing when empty, to read the greeting) and reads the
// reply; a multi-line reply has its lines joined by "\n".
func (c *Client) Cmd(line string) (code int, reply string, err error) {
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	if line != "" {
		if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
			return 0, "", fmt.Errorf("smtp: sending %q: %w", FirstLine(line), err)
		}
	}
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return 0, "", fmt.Errorf("smtp: reading the reply to %q: %w", FirstLine(line), err)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 3 {
			return 0, "", fmt.Errorf("smtp: malformed reply %q to %q", l, FirstLine(line))
		}
		lines = append(lines, l)
		if len(l) == 3 || l[3] != '-' {
			code, err = strconv.Atoi(l[:3])
			if err != nil {
				return 0, "", fmt.Errorf("smtp: malformed reply %q to %q", l, FirstLine(line))
			}
			return code, strings.Join(lines, "\n"), nil
		}
	}
}

// Quit says QUIT and ignores the answer.
func (c *Client) Quit() { _, _, _ = c.Cmd("QUIT") }

// FirstLine shortens a command for messages (a message body is one
// "command").
func FirstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i] + "..."
	}
	return s
}

// AngleAddr returns the address of a MAIL or RCPT argument, "<a@b> SIZE=1"
// or "<>" (the sinks of the harnesses read them).
func AngleAddr(args string) string {
	if strings.HasPrefix(args, "<") {
		if i := strings.Index(args, ">"); i > 0 {
			return args[1:i]
		}
	}
	addr, _, _ := strings.Cut(args, " ")
	return addr
}

// DotStuff returns body with CRLF line ends, a final line end, and a dot
// doubled at the start of each line (RFC 5321 §4.5.2).
func DotStuff(body string) string {
	body = strings.ReplaceAll(body, "\r\n", "\n")
	if body != "" && !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(body, "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(strings.TrimSuffix(l, "\n"))
		b.WriteString("\r\n")
	}
	return b.String()
}

// ReplyError is a refusal of a command that ends the SMTP dialogue, such
// as a 4xx or 5xx reply to MAIL.
type ReplyError struct {
	Command string // "MAIL FROM:<a@b>", "EHLO ...", "greeting"
	Code    int    // 451
	Reply   string // the whole reply, lines joined by "\n"
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("smtp: %s: %s", e.Command, e.Reply)
}

// Transaction is one message to submit.
type Transaction struct {
	// User and Pass, when User is set, log in with AUTH PLAIN after EHLO.
	User, Pass string
	From       string
	Rcpts      []string
	// Body is the message (header and body); line ends become CRLF and
	// dots are stuffed.
	Body string
}

// Result is what one transaction got.
type Result struct {
	// RcptReplies[i] is the reply to RCPT TO:<Rcpts[i]> ("250 2.1.5 Ok";
	// a multi-line reply has its lines joined by "\n").
	RcptReplies []string
	// DataReply is the reply to the final "." (or the refusal of DATA);
	// "" when no recipient was accepted and DATA was not sent.
	DataReply string
}

// Send runs t from the greeting to QUIT, recipient by recipient, so that
// every RCPT reply is seen even when it is a 4xx or 5xx; DATA is sent only
// when a recipient was accepted. err is set only when the connection fails
// or a command before RCPT (the greeting, EHLO, AUTH or MAIL) is refused;
// it is then a *ReplyError. What was seen before a failure is in res.
func (c *Client) Send(t Transaction) (res Result, err error) {
	if code, reply, err := c.Cmd(""); err != nil {
		return res, err
	} else if code != 220 {
		return res, &ReplyError{"greeting", code, reply}
	}
	ehlo := "EHLO client.test.local"
	if code, reply, err := c.Cmd(ehlo); err != nil {
		return res, err
	} else if code != 250 {
		return res, &ReplyError{ehlo, code, reply}
	}
	if t.User != "" {
		auth := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+t.User+"\x00"+t.Pass))
		if code, reply, err := c.Cmd(auth); err != nil {
			return res, err
		} else if code != 235 {
			c.Quit()
			return res, &ReplyError{"AUTH PLAIN", code, reply}
		}
	}
	mail := "MAIL FROM:<" + t.From + ">"
	if code, reply, err := c.Cmd(mail); err != nil {
		return res, err
	} else if code/100 != 2 {
		c.Quit()
		return res, &ReplyError{mail, code, reply}
	}
	accepted := 0
	for _, rcpt := range t.Rcpts {
		code, reply, err := c.Cmd("RCPT TO:<" + rcpt + ">")
		if err != nil {
			return res, err
		}
		res.RcptReplies = append(res.RcptReplies, reply)
		if code/100 == 2 {
			accepted++
		}
	}
	if accepted == 0 {
		c.Quit()
		return res, nil
	}
	code, reply, err := c.Cmd("DATA")
	if err != nil {
		return res, err
	}
	if code != 354 {
		res.DataReply = reply
		c.Quit()
		return res, nil
	}
	if _, res.DataReply, err = c.Cmd(DotStuff(t.Body) + "."); err != nil {
		return res, err
	}
	c.Quit()
	return res, nil
}
