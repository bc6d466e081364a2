package postfixtest

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
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
	return fmt.Sprintf("postfixtest: %s: %s", e.Command, e.Reply)
}

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

// SendAuth is Send after AUTH PLAIN as user (see Options.SASLUsers).
func (p *Postfix) SendAuth(t testing.TB, user, pass, from string, rcpts []string, body string) (rcptReplies []string, dataReply string, err error) {
	t.Helper()
	return p.send(user, pass, from, rcpts, body)
}

func (p *Postfix) send(user, pass, from string, rcpts []string, body string) (rcptReplies []string, dataReply string, err error) {
	conn, err := net.DialTimeout("tcp", p.SMTPAddr(), 10*time.Second)
	if err != nil {
		return nil, "", fmt.Errorf("postfixtest: connecting to smtpd: %w", err)
	}
	defer conn.Close()
	c := &client{conn: conn, r: bufio.NewReader(conn)}

	if code, reply, err := c.cmd(""); err != nil {
		return nil, "", err
	} else if code != 220 {
		return nil, "", &ReplyError{"greeting", code, reply}
	}
	ehlo := "EHLO client.test.local"
	if code, reply, err := c.cmd(ehlo); err != nil {
		return nil, "", err
	} else if code != 250 {
		return nil, "", &ReplyError{ehlo, code, reply}
	}
	if user != "" {
		auth := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
		if code, reply, err := c.cmd(auth); err != nil {
			return nil, "", err
		} else if code != 235 {
			c.quit()
			return nil, "", &ReplyError{"AUTH PLAIN", code, reply}
		}
	}
	mail := "MAIL FROM:<" + from + ">"
	if code, reply, err := c.cmd(mail); err != nil {
		return nil, "", err
	} else if code/100 != 2 {
		c.quit()
		return nil, "", &ReplyError{mail, code, reply}
	}
	accepted := 0
	for _, rcpt := range rcpts {
		code, reply, err := c.cmd("RCPT TO:<" + rcpt + ">")
		if err != nil {
			return rcptReplies, "", err
		}
		rcptReplies = append(rcptReplies, reply)
		if code/100 == 2 {
			accepted++
		}
	}
	if accepted == 0 {
		c.quit()
		return rcptReplies, "", nil
	}
	code, reply, err := c.cmd("DATA")
	if err != nil {
		return rcptReplies, "", err
	}
	if code != 354 {
		c.quit()
		return rcptReplies, reply, nil
	}
	if _, reply, err = c.cmd(dotStuff(body) + "."); err != nil {
		return rcptReplies, "", err
	}
	c.quit()
	return rcptReplies, reply, nil
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
			return 0, "", fmt.Errorf("postfixtest: sending %q: %w", firstLine(line), err)
		}
	}
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return 0, "", fmt.Errorf("postfixtest: reading the reply to %q: %w", firstLine(line), err)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 3 {
			return 0, "", fmt.Errorf("postfixtest: malformed reply %q to %q", l, firstLine(line))
		}
		lines = append(lines, l)
		if len(l) == 3 || l[3] != '-' {
			code, err = strconv.Atoi(l[:3])
			if err != nil {
				return 0, "", fmt.Errorf("postfixtest: malformed reply %q to %q", l, firstLine(line))
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
