//go:build linux

package sendmailtest

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ReplyError is a refusal of a command that ends the SMTP dialogue, such
// as a 4xx or 5xx reply to MAIL.
type ReplyError struct {
	Command string // "MAIL FROM:<a@b>", "EHLO ...", "greeting"
	Code    int    // 451
	Reply   string // the whole reply, lines joined by "\n"
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("sendmailtest: %s: %s", e.Command, e.Reply)
}

// smtpTimeout bounds each command of Send; it is above the milter
// timeouts of contrib/sendmail/msgate.mc (R:10s, E:30s) so that a slow
// milter shows as Sendmail's reply.
const smtpTimeout = 60 * time.Second

// Result is what one SMTP transaction got.
type Result struct {
	// RcptReplies[i] is the reply to RCPT TO:<rcpts[i]> ("250 2.1.5 ...";
	// a multi-line reply has its lines joined by "\n").
	RcptReplies []string
	// DataReply is the reply to the final "." (or the refusal of DATA);
	// "" when no recipient was accepted and DATA was not sent.
	DataReply string
}

// send submits one message over conn, recipient by recipient, so that
// every RCPT reply is seen even when it is a 4xx or 5xx. body is the
// message (header and body); line ends become CRLF and dots are stuffed.
// err is set only when the connection fails or a command before RCPT (the
// greeting, EHLO or MAIL) is refused; it is then a *ReplyError.
func send(conn net.Conn, from string, rcpts []string, body string) (res Result, err error) {
	defer conn.Close()
	c := &client{conn: conn, r: bufio.NewReader(conn)}
	if code, reply, err := c.cmd(""); err != nil {
		return res, err
	} else if code != 220 {
		return res, &ReplyError{"greeting", code, reply}
	}
	ehlo := "EHLO client.test.local"
	if code, reply, err := c.cmd(ehlo); err != nil {
		return res, err
	} else if code != 250 {
		return res, &ReplyError{ehlo, code, reply}
	}
	mail := "MAIL FROM:<" + from + ">"
	if code, reply, err := c.cmd(mail); err != nil {
		return res, err
	} else if code/100 != 2 {
		c.quit()
		return res, &ReplyError{mail, code, reply}
	}
	accepted := 0
	for _, rcpt := range rcpts {
		code, reply, err := c.cmd("RCPT TO:<" + rcpt + ">")
		if err != nil {
			return res, err
		}
		res.RcptReplies = append(res.RcptReplies, reply)
		if code/100 == 2 {
			accepted++
		}
	}
	if accepted == 0 {
		c.quit()
		return res, nil
	}
	code, reply, err := c.cmd("DATA")
	if err != nil {
		return res, err
	}
	if code != 354 {
		res.DataReply = reply
		c.quit()
		return res, nil
	}
	if _, res.DataReply, err = c.cmd(dotStuff(body) + "."); err != nil {
		return res, err
	}
	c.quit()
	return res, nil
}

type client struct {
	conn net.Conn
	r    *bufio.Reader
}

// cmd sends line (none if empty) and reads the reply.
func (c *client) cmd(line string) (code int, reply string, err error) {
	_ = c.conn.SetDeadline(time.Now().Add(smtpTimeout))
	if line != "" {
		if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
			return 0, "", fmt.Errorf("sendmailtest: sending %q: %w", firstLine(line), err)
		}
	}
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return 0, "", fmt.Errorf("sendmailtest: reading the reply to %q: %w", firstLine(line), err)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 3 {
			return 0, "", fmt.Errorf("sendmailtest: malformed reply %q to %q", l, firstLine(line))
		}
		lines = append(lines, l)
		if len(l) == 3 || l[3] != '-' {
			code, err = strconv.Atoi(l[:3])
			if err != nil {
				return 0, "", fmt.Errorf("sendmailtest: malformed reply %q to %q", l, firstLine(line))
			}
			return code, strings.Join(lines, "\n"), nil
		}
	}
}

func (c *client) quit() { _, _, _ = c.cmd("QUIT") }

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i] + "..."
	}
	return s
}

// dotStuff returns body with CRLF line ends, a final line end, and a dot
// doubled at the start of each line (RFC 5321 §4.5.2).
func dotStuff(body string) string {
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
