//go:build linux

package sendmailtest

import (
	"net"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/smtpclient"
)

// ReplyError is a refusal of a command that ends the SMTP dialogue, such
// as a 4xx or 5xx reply to MAIL.
type ReplyError = smtpclient.ReplyError

// smtpTimeout bounds each command of Send; it is above the milter
// timeouts of contrib/sendmail/msgate.mc (R:10s, E:30s) so that a slow
// milter shows as Sendmail's reply.
const smtpTimeout = 60 * time.Second

// Result is what one SMTP transaction got.
type Result = smtpclient.Result

// send submits one message over conn and closes it (smtpclient.Client.Send).
func send(conn net.Conn, from string, rcpts []string, body string) (Result, error) {
	defer conn.Close()
	return smtpclient.New(conn, smtpTimeout).Send(smtpclient.Transaction{From: from, Rcpts: rcpts, Body: body})
}
