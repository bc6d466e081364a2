package milter

import (
	"fmt"
	"net"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// Client drives a milter as an MTA would: for `msgate try`, tests and load.
// One Client is one milter connection, and so one SMTP session.
type Client struct {
	sess *gomilter.ClientSession
}

// Message is one transaction to send through a Client.
type Message struct {
	Login   string // {auth_authen}; empty = not authenticated
	From    string // envelope sender; "" = null sender
	Rcpts   []string
	QueueID string // the "i" macro
	// Headers are sent when the milter asked for them.
	Headers [][2]string
	// AbortAfterRcpt aborts the transaction instead of ending the message.
	AbortAfterRcpt bool
}

// Reply is the milter's answer at one stage.
type Reply struct {
	Stage string // connect, mail, rcpt, end-of-message, abort
	Rcpt  string // for rcpt
	// Action is "continue", "accept", "reject", "tempfail", "discard" or
	// "reply" (a custom SMTP reply in Code and Text).
	Action string
	Code   int
	Text   string
	// Quarantine and AddedHeaders report modifications at end of message.
	Quarantine   string
	AddedHeaders [][2]string
}

func (r Reply) String() string {
	var b strings.Builder
	b.WriteString(r.Stage)
	if r.Rcpt != "" {
		fmt.Fprintf(&b, " <%s>", r.Rcpt)
	}
	b.WriteString(": ")
	if r.Action == "reply" {
		fmt.Fprintf(&b, "%d %s", r.Code, r.Text)
	} else {
		b.WriteString(r.Action)
	}
	if r.Quarantine != "" {
		fmt.Fprintf(&b, " (quarantine: %s)", r.Quarantine)
	}
	for _, h := range r.AddedHeaders {
		fmt.Fprintf(&b, " (add header %s: %s)", h[0], h[1])
	}
	return b.String()
}

// Refused reports a 4xx/5xx answer of any form.
func (r Reply) Refused() bool {
	switch r.Action {
	case "reject", "tempfail", "discard":
		return true
	case "reply":
		return r.Code >= 400
	}
	return false
}

// Dial connects and negotiates as Postfix does (milter protocol 6, offering
// every action and stage, letting the milter take stages away).
func Dial(network, address string, timeout time.Duration) (*Client, error) {
	c := gomilter.NewClientWithOptions(network, address, gomilter.ClientOptions{
		Dialer:       &net.Dialer{Timeout: timeout},
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		// go-milter's own server accepts only masks within protocol 2.
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		return nil, err
	}
	return &Client{sess: s}, nil
}

// Connect sends the connect stage. Port 0 is how Postfix presents mail from
// its sendmail command.
func (c *Client) Connect(hostname, ip string, port uint16) (Reply, error) {
	family := gomilter.FamilyInet
	if strings.Contains(ip, ":") {
		family = gomilter.FamilyInet6
	}
	if err := c.sess.Macros(gomilter.CodeConn, "j", "mx.msgate.test", "{client_addr}", ip, "{daemon_name}", "msgate-try"); err != nil {
		return Reply{}, err
	}
	act, err := c.sess.Conn(hostname, family, port, ip)
	if err != nil {
		return Reply{}, err
	}
	return toReply("connect", "", act), nil
}

// Send runs one transaction and returns the reply at each stage. It stops
// early when a stage ends the transaction (a refusal of MAIL, or every
// recipient refused), as an MTA would.
func (c *Client) Send(m Message) ([]Reply, error) {
	var replies []Reply
	kv := []string{"i", m.QueueID, "{auth_authen}", m.Login}
	if m.Login != "" {
		kv = append(kv, "{auth_type}", "PLAIN")
	}
	if err := c.sess.Macros(gomilter.CodeMail, kv...); err != nil {
		return nil, err
	}
	act, err := c.sess.Mail(m.From, nil)
	if err != nil {
		return nil, err
	}
	r := toReply("mail", "", act)
	replies = append(replies, r)
	if r.Refused() {
		return replies, nil
	}
	accepted := 0
	for _, rcpt := range m.Rcpts {
		if err := c.sess.Macros(gomilter.CodeRcpt, "i", m.QueueID, "{rcpt_addr}", rcpt); err != nil {
			return replies, err
		}
		act, err := c.sess.Rcpt(rcpt, nil)
		if err != nil {
			return replies, err
		}
		r := toReply("rcpt", rcpt, act)
		replies = append(replies, r)
		if !r.Refused() {
			accepted++
		}
	}
	if accepted == 0 || m.AbortAfterRcpt {
		// The MTA tells the milter the transaction is over.
		if err := c.sess.Abort(); err != nil {
			return replies, err
		}
		return append(replies, Reply{Stage: "abort", Action: "sent"}), nil
	}
	if len(m.Headers) > 0 && !c.sess.ProtocolOption(gomilter.OptNoHeaders) {
		for _, h := range m.Headers {
			if _, err := c.sess.HeaderField(h[0], h[1]); err != nil {
				return replies, err
			}
		}
	}
	if !c.sess.ProtocolOption(gomilter.OptNoEOH) {
		if _, err := c.sess.HeaderEnd(); err != nil {
			return replies, err
		}
	}
	if err := c.sess.Macros(gomilter.CodeEOB, "i", m.QueueID); err != nil {
		return replies, err
	}
	mods, act, err := c.sess.End()
	if err != nil {
		return replies, err
	}
	r = toReply("end-of-message", "", act)
	for _, mod := range mods {
		switch mod.Code {
		case gomilter.ActQuarantine:
			r.Quarantine = strings.TrimRight(string(mod.Reason), "\x00")
		case gomilter.ActAddHeader, gomilter.ActInsertHeader:
			r.AddedHeaders = append(r.AddedHeaders, [2]string{mod.HeaderName, mod.HeaderValue})
		}
	}
	return append(replies, r), nil
}

// Close ends the milter session (QUIT).
func (c *Client) Close() error { return c.sess.Close() }

func toReply(stage, rcpt string, act *gomilter.Action) Reply {
	r := Reply{Stage: stage, Rcpt: rcpt}
	switch act.Code {
	case gomilter.ActContinue:
		r.Action = "continue"
	case gomilter.ActAccept:
		r.Action = "accept"
	case gomilter.ActReject:
		r.Action, r.Code = "reject", 550
	case gomilter.ActTempFail:
		r.Action, r.Code = "tempfail", 451
	case gomilter.ActDiscard:
		r.Action = "discard"
	case gomilter.ActReplyCode:
		r.Action, r.Code, r.Text = "reply", act.SMTPCode, act.SMTPText
	default:
		r.Action = fmt.Sprintf("unknown(%c)", act.Code)
	}
	return r
}
