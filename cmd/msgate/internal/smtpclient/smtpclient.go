// Package smtpclient is the small SMTP client of the end-to-end test
// harnesses: one command, one reply, every reply code seen (net/smtp stops
// at the first error, and the tests need each RCPT's 4xx).
package smtpclient

import (
	"bufio"
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
