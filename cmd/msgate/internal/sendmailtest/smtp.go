//go:build linux

package sendmailtest

import (
	"fmt"
	"net"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/smtpclient"
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
	c := smtpclient.New(conn, smtpTimeout)
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
	mail := "MAIL FROM:<" + from + ">"
	if code, reply, err := c.Cmd(mail); err != nil {
		return res, err
	} else if code/100 != 2 {
		c.Quit()
		return res, &ReplyError{mail, code, reply}
	}
	accepted := 0
	for _, rcpt := range rcpts {
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
	if _, res.DataReply, err = c.Cmd(smtpclient.DotStuff(body) + "."); err != nil {
		return res, err
	}
	c.Quit()
	return res, nil
}
