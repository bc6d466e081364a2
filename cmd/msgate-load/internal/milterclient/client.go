package milterclient

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrProtocol is wrapped by errors for answers the protocol does not allow.
var ErrProtocol = errors.New("milter protocol violation")

// maxPacket bounds a reply packet, as go-milter's server bounds commands.
const maxPacket = 1 << 20

// maxBodyChunk is the largest SMFIC_BODY payload.
const maxBodyChunk = 65535

// Options configure a connection.
type Options struct {
	// Actions and Protocol are what is offered; 0 means everything
	// (AllActions, AllProtocol), as Postfix does.
	Actions  Actions
	Protocol Protocol
	// Macros replaces DefaultMacros for the lists that are not nil.
	Macros [numMacroLists][]string
	// MTA names the MTA in the j, {daemon_name}, {daemon_addr} and v
	// macros; empty fields get defaults.
	MTA MTA
	// Timeout bounds the dial and the negotiation; 0 means 10s. Later
	// deadlines are the caller's (SetDeadline).
	Timeout time.Duration
}

// MTA is what the macros say about the MTA.
type MTA struct {
	Hostname   string // j
	DaemonName string // {daemon_name}
	DaemonAddr string // {daemon_addr}
	Version    string // v
}

// Client is the SMTP client whose session the connection stands for.
type Client struct {
	Name string // {client_name}, and the host name of the connect stage
	Addr string // IP address: {client_addr}
	Port uint16
	Helo string
}

// Header is one header field; Value has no leading space.
type Header struct{ Name, Value string }

// Message is one SMTP transaction.
type Message struct {
	QueueID string // the i macro
	Login   string // {auth_authen}; "" means not authenticated
	From    string // the envelope sender without brackets; "" is the null sender
	Rcpts   []string
	Headers []Header
	Body    []byte // CRLF line ends
}

// Result is what became of a Message. Its slices are reused by Send.
type Result struct {
	// Rcpts holds, for each recipient, the reply that decided it: its own
	// RCPT reply when that refused it, else the reply that ended the
	// message (end of message, or an earlier accept, discard or refusal).
	Rcpts []Reply
	// Mods are the edits asked for at end of message.
	Mods Modifications
	// Aborted is set when the transaction ended with SMFIC_ABORT.
	Aborted bool
}

// Conn is one milter connection: one SMTP session of the MTA. It is not
// safe for concurrent use.
type Conn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer

	version uint32
	actions Actions
	proto   Protocol
	// macros are the lists in force: the milter's where it sent one.
	macros   [numMacroLists][]string
	symlists [numMacroLists]bool

	mta        MTA
	client     Client
	clientPort string
	clientID   string // the _ macro: "name [addr]"
	// connDecided is the connect or HELO answer that holds for the whole
	// connection (an accept or a refusal), if any.
	connDecided *Reply

	msg  *Message
	rcpt string
	mods Modifications

	pkt        []byte
	rbuf       []byte
	hdr        [4]byte
	roundTrips uint64
	err        error // sticky: the connection is unusable after an error
}

// Dial connects to a milter and negotiates. network and address are as for
// net.Dial ("tcp", "unix").
func Dial(ctx context.Context, network, address string, opts Options) (*Conn, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("milter: connecting: %w", err)
	}
	nc.SetDeadline(time.Now().Add(timeout))
	c, err := New(nc, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// New negotiates on an open connection.
func New(nc net.Conn, opts Options) (*Conn, error) {
	c := &Conn{
		nc:   nc,
		r:    bufio.NewReaderSize(nc, 4096),
		w:    bufio.NewWriterSize(nc, 16384),
		mta:  opts.MTA,
		pkt:  make([]byte, 0, 512),
		rbuf: make([]byte, 256),
	}
	if c.mta.Hostname == "" {
		c.mta.Hostname = "mx.load.test"
	}
	if c.mta.DaemonName == "" {
		c.mta.DaemonName = "msgate-load"
	}
	if c.mta.DaemonAddr == "" {
		c.mta.DaemonAddr = "127.0.0.1"
	}
	if c.mta.Version == "" {
		c.mta.Version = "Postfix 3.7.11"
	}
	for i := range c.macros {
		c.macros[i] = DefaultMacros[i]
		if opts.Macros[i] != nil {
			c.macros[i] = opts.Macros[i]
		}
	}
	actions, proto := opts.Actions, opts.Protocol
	if actions == 0 {
		actions = AllActions
	}
	if proto == 0 {
		proto = AllProtocol
	}
	if err := c.negotiate(actions, proto); err != nil {
		return nil, fmt.Errorf("milter: negotiation: %w", err)
	}
	return c, nil
}

// negotiate offers version 6 and the given flags, and takes the milter's
// answer as the Postfix client does: a version from 2 to 6, flags within
// those offered, and optionally its macro lists.
func (c *Conn) negotiate(actions Actions, proto Protocol) error {
	c.start('O')
	c.pkt = binary.BigEndian.AppendUint32(c.pkt, Version)
	c.pkt = binary.BigEndian.AppendUint32(c.pkt, uint32(actions))
	c.pkt = binary.BigEndian.AppendUint32(c.pkt, uint32(proto))
	c.finish()
	if err := c.w.Flush(); err != nil {
		return err
	}
	cmd, data, err := c.read()
	if err != nil {
		return err
	}
	if cmd != 'O' || len(data) < 12 {
		return fmt.Errorf("%w: answer %q with %d bytes to option negotiation", ErrProtocol, cmd, len(data))
	}
	c.version = binary.BigEndian.Uint32(data)
	c.actions = Actions(binary.BigEndian.Uint32(data[4:]))
	c.proto = Protocol(binary.BigEndian.Uint32(data[8:]))
	switch {
	case c.version < 2 || c.version > Version:
		return fmt.Errorf("%w: the milter speaks protocol version %d; 2 to %d are supported", ErrProtocol, c.version, Version)
	case c.actions&^actions != 0:
		return fmt.Errorf("%w: the milter asks for actions %#x, beyond the %#x offered", ErrProtocol, uint32(c.actions), uint32(actions))
	case c.proto&^proto != 0:
		return fmt.Errorf("%w: the milter asks for protocol flags %#x, beyond the %#x offered", ErrProtocol, uint32(c.proto), uint32(proto))
	}
	// Macro lists: a stage number, then its names in one C string.
	rest := data[12:]
	for len(rest) > 0 {
		if len(rest) < 5 {
			return fmt.Errorf("%w: truncated macro list in option negotiation", ErrProtocol)
		}
		stage := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		list := rest
		if i := indexNUL(rest); i >= 0 {
			list, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if stage >= numMacroLists {
			continue // a stage this client never reports
		}
		c.macros[stage] = strings.FieldsFunc(string(list), func(r rune) bool { return r == ' ' || r == ',' })
		c.symlists[stage] = true
	}
	return nil
}

// Negotiated returns the milter's protocol version, actions and protocol
// flags.
func (c *Conn) Negotiated() (version uint32, actions Actions, proto Protocol) {
	return c.version, c.actions, c.proto
}

// MacroList returns the macros sent at a stage, and whether the milter
// chose them.
func (c *Conn) MacroList(s Stage) (names []string, milterChose bool) {
	if m := stages[s].macros; m != noMacros {
		return c.macros[m], c.symlists[m]
	}
	return nil, false
}

// Sends reports whether a stage is sent to this milter: it exists in the
// milter's protocol version and was not negotiated away.
func (c *Conn) Sends(s Stage) bool {
	return c.exists(s) && c.proto&stages[s].skip == 0
}

// Awaits reports whether the milter answers a stage it is sent.
func (c *Conn) Awaits(s Stage) bool { return c.proto&stages[s].noReply == 0 }

func (c *Conn) exists(s Stage) bool { return stages[s].since <= c.version }

// RoundTrips is the number of answers waited for so far.
func (c *Conn) RoundTrips() uint64 { return c.roundTrips }

// SetDeadline bounds every read and write until the next call.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// Open reports the SMTP client's connection and HELO. It returns the
// answer that decides the connection: an accept or a refusal there holds
// for every later message, which is then not sent.
func (c *Conn) Open(cl Client) (Reply, error) {
	if c.err != nil {
		return Reply{}, c.err
	}
	c.client = cl
	c.clientPort = strconv.Itoa(int(cl.Port))
	c.clientID = cl.Name + " [" + cl.Addr + "]"

	r := Reply{Stage: StageConnect, Action: Continue}
	if c.event(StageConnect) {
		c.start('C')
		c.putString(cl.Name)
		switch {
		case cl.Addr == "":
			c.pkt = append(c.pkt, 'U') // SMFIA_UNKNOWN: no address follows
		case strings.Contains(cl.Addr, ":"):
			c.pkt = append(c.pkt, '6')
			c.pkt = binary.BigEndian.AppendUint16(c.pkt, cl.Port)
			c.putString(cl.Addr)
		default:
			c.pkt = append(c.pkt, '4')
			c.pkt = binary.BigEndian.AppendUint16(c.pkt, cl.Port)
			c.putString(cl.Addr)
		}
		c.finish()
		var err error
		if r, err = c.await(StageConnect); err != nil {
			return r, err
		}
	}
	if c.connDecides(r) {
		return r, nil
	}
	r = Reply{Stage: StageHelo, Action: Continue}
	if c.event(StageHelo) {
		c.start('H')
		c.putString(cl.Helo)
		c.finish()
		var err error
		if r, err = c.await(StageHelo); err != nil {
			return r, err
		}
	}
	c.connDecides(r)
	return r, nil
}

// connDecides records an answer at connect or HELO that holds for the whole
// connection. Postfix ignores a discard there.
func (c *Conn) connDecides(r Reply) bool {
	if !r.decided() || r.Action == Discard {
		return false
	}
	c.connDecided = &r
	return true
}

// Send runs one transaction as Postfix would and fills res.
func (c *Conn) Send(m *Message, res *Result) error {
	res.Rcpts = res.Rcpts[:0]
	res.Mods = Modifications{}
	res.Aborted = false
	if c.err != nil {
		return c.err
	}
	for range m.Rcpts {
		res.Rcpts = append(res.Rcpts, Reply{})
	}
	if c.connDecided != nil {
		for i := range res.Rcpts {
			res.Rcpts[i] = *c.connDecided
			res.Rcpts[i].Sent, res.Rcpts[i].Replied = false, false
		}
		return nil
	}
	c.msg, c.mods = m, Modifications{}
	defer func() { c.msg, c.rcpt = nil, "" }()

	r := Reply{Stage: StageMail, Action: Continue}
	if c.event(StageMail) {
		c.start('M')
		c.putAddr(m.From)
		c.finish()
		var err error
		if r, err = c.await(StageMail); err != nil {
			return err
		}
	}
	if r.decided() {
		return c.decide(res, r)
	}

	var accepted int
	var acceptedAll *Reply // an accept at RCPT: the milter is done with the message
	for i, rcpt := range m.Rcpts {
		if acceptedAll != nil {
			res.Rcpts[i] = *acceptedAll
			accepted++
			continue
		}
		c.rcpt = rcpt
		r := Reply{Stage: StageRcpt, Action: Continue}
		if c.event(StageRcpt) {
			c.start('R')
			c.putAddr(rcpt)
			c.finish()
			var err error
			if r, err = c.await(StageRcpt); err != nil {
				return err
			}
		}
		res.Rcpts[i] = r
		switch {
		case r.Action == Discard:
			// The whole message is discarded, later recipients included.
			return c.decide(res, r)
		case r.Refused():
		case r.Action == Accept:
			acceptedAll = &res.Rcpts[i]
			accepted++
		default:
			accepted++
		}
	}
	c.rcpt = ""
	if accepted == 0 {
		// No valid recipients: the client's DATA fails and the MTA ends the
		// transaction.
		c.abort(res)
		return nil
	}
	if acceptedAll != nil {
		return c.decide(res, *acceptedAll)
	}

	if r, err := c.bare(StageData); err != nil {
		return err
	} else if r.decided() {
		return c.decide(res, r)
	}
	if c.Sends(StageHeader) {
		for _, h := range m.Headers {
			c.start('L')
			c.putString(h.Name)
			if c.proto&HeaderLeadSpace != 0 {
				c.pkt = append(c.pkt, ' ')
			}
			c.putString(h.Value)
			c.finish()
			r, err := c.await(StageHeader)
			if err != nil {
				return err
			}
			if r.Action == SkipRest {
				break
			}
			if r.decided() {
				return c.decide(res, r)
			}
		}
	}
	if r, err := c.bare(StageEOH); err != nil {
		return err
	} else if r.decided() {
		return c.decide(res, r)
	}
	if c.Sends(StageBody) {
		for body := m.Body; len(body) > 0; {
			chunk := body[:min(len(body), maxBodyChunk)]
			body = body[len(chunk):]
			c.start('B')
			c.pkt = append(c.pkt, chunk...)
			c.finish()
			r, err := c.await(StageBody)
			if err != nil {
				return err
			}
			if r.Action == SkipRest {
				break
			}
			if r.decided() {
				return c.decide(res, r)
			}
		}
	}
	c.event(StageEOM)
	c.start('E')
	c.finish()
	r, err := c.await(StageEOM)
	if err != nil {
		return err
	}
	res.Mods = c.mods
	if r.Action == SkipRest {
		return c.fail(StageEOM, fmt.Errorf("%w: skip at end of message", ErrProtocol))
	}
	return c.decide(res, r)
}

// decide gives every recipient not refused on its own the reply that ended
// the message, and aborts the transaction after a refusal.
func (c *Conn) decide(res *Result, r Reply) error {
	for i := range res.Rcpts {
		if rr := res.Rcpts[i]; rr.Stage == StageRcpt && rr.Refused() {
			continue
		}
		res.Rcpts[i] = r
	}
	if r.Refused() {
		c.abort(res)
	}
	return nil
}

// abort tells the milter the transaction is over. Like every packet that
// awaits no answer, it leaves with the next one that does.
func (c *Conn) abort(res *Result) {
	c.start('A')
	c.finish()
	res.Aborted = true
}

// Close ends the session (SMFIC_QUIT) and closes the connection.
func (c *Conn) Close() error {
	if c.err == nil {
		c.start('Q')
		c.finish()
		c.w.Flush()
	}
	return c.nc.Close()
}

// event writes the macros of a stage that exists in the milter's protocol
// version, and reports whether the stage itself is to be sent.
// bare sends the command of a stage that carries nothing (DATA, end of
// headers) when the milter wants the stage, and returns its answer: a
// Continue not sent when the stage is skipped.
func (c *Conn) bare(s Stage) (Reply, error) {
	if !c.event(s) {
		return Reply{Stage: s, Action: Continue}, nil
	}
	c.start(stages[s].cmd)
	c.finish()
	return c.await(s)
}

func (c *Conn) event(s Stage) bool {
	if !c.exists(s) {
		return false
	}
	if m := stages[s].macros; m != noMacros {
		c.start('D')
		c.pkt = append(c.pkt, stages[s].cmd)
		empty := len(c.pkt)
		for _, name := range c.macros[m] {
			if v, ok := c.macro(name); ok {
				c.putString(name)
				c.putString(v)
			}
		}
		if len(c.pkt) > empty {
			c.finish()
		}
	}
	return c.proto&stages[s].skip == 0
}

// macro returns the value of a macro now; macros without a value are not
// sent. Names may come with or without braces.
func (c *Conn) macro(name string) (string, bool) {
	n := strings.TrimSuffix(strings.TrimPrefix(name, "{"), "}")
	var v string
	switch n {
	case "j":
		v = c.mta.Hostname
	case "daemon_name":
		v = c.mta.DaemonName
	case "daemon_addr":
		v = c.mta.DaemonAddr
	case "v":
		v = c.mta.Version
	case "_":
		v = c.clientID
	case "client_addr":
		v = c.client.Addr
	case "client_name":
		v = c.client.Name
	case "client_port":
		v = c.clientPort
	}
	if c.msg != nil {
		switch n {
		case "i":
			v = c.msg.QueueID
		case "auth_type":
			if c.msg.Login != "" {
				v = "PLAIN"
			}
		case "auth_authen":
			v = c.msg.Login
		case "mail_addr":
			v = c.msg.From
		case "mail_host":
			v = domainOf(c.msg.From)
		case "rcpt_addr":
			v = c.rcpt
		case "rcpt_host":
			v = domainOf(c.rcpt)
		case "rcpt_mailer":
			if c.rcpt != "" {
				v = "smtp"
			}
		}
	}
	return v, v != ""
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// await flushes what was written and reads the milter's answer to a stage,
// unless it negotiated not to give one. At end of message it first reads
// the edits the milter asks for.
func (c *Conn) await(s Stage) (Reply, error) {
	r := Reply{Stage: s, Sent: true, Action: Continue}
	if c.proto&stages[s].noReply != 0 {
		return r, nil
	}
	if err := c.w.Flush(); err != nil {
		return r, c.fail(s, err)
	}
	c.roundTrips++
	for {
		cmd, data, err := c.read()
		if err != nil {
			return r, c.fail(s, err)
		}
		switch Action(cmd) {
		case 'p': // SMFIR_PROGRESS: still working on it
			continue
		case Continue, Accept, Reject, TempFail, Discard, SkipRest:
			if len(data) != 0 {
				return r, c.fail(s, fmt.Errorf("%w: %s answer with %d bytes of data", ErrProtocol, Action(cmd), len(data)))
			}
			r.Replied, r.Action = true, Action(cmd)
			return r, nil
		case ReplyCode:
			code, text, err := parseReplyCode(data)
			if err != nil {
				return r, c.fail(s, err)
			}
			r.Replied, r.Action, r.Code, r.Text = true, ReplyCode, code, text
			return r, nil
		}
		mod, ok := modifications[cmd]
		switch {
		case !ok:
			return r, c.fail(s, fmt.Errorf("%w: unknown answer %q", ErrProtocol, cmd))
		case s != StageEOM:
			return r, c.fail(s, fmt.Errorf("%w: edit request %q before end of message", ErrProtocol, cmd))
		case c.actions&mod.needs == 0:
			return r, c.fail(s, fmt.Errorf("%w: edit request %q that was not negotiated (actions %#x)", ErrProtocol, cmd, uint32(c.actions)))
		}
		*mod.count(&c.mods)++
	}
}

// parseReplyCode checks a SMFIR_REPLYCODE payload as Postfix does:
// "4xx" or "5xx", a space or a dash, and a text; NUL-terminated.
func parseReplyCode(data []byte) (int, string, error) {
	if i := indexNUL(data); i >= 0 {
		data = data[:i]
	}
	if len(data) < 4 || (data[0] != '4' && data[0] != '5') || !isDigit(data[1]) || !isDigit(data[2]) ||
		(data[3] != ' ' && data[3] != '-') {
		return 0, "", fmt.Errorf("%w: malformed reply %q", ErrProtocol, data)
	}
	code := int(data[0]-'0')*100 + int(data[1]-'0')*10 + int(data[2]-'0')
	return code, string(data[4:]), nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

func (c *Conn) fail(s Stage, err error) error {
	c.err = fmt.Errorf("milter: %s: %w", s, err)
	return c.err
}

// read reads one packet into the connection's buffer; the data is valid
// until the next read.
func (c *Conn) read() (byte, []byte, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(c.hdr[:])
	if n < 1 || n > maxPacket {
		return 0, nil, fmt.Errorf("%w: packet length %d", ErrProtocol, n)
	}
	if uint32(cap(c.rbuf)) < n {
		c.rbuf = make([]byte, n)
	}
	buf := c.rbuf[:n]
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return 0, nil, err
	}
	return buf[0], buf[1:], nil
}

// start begins a packet in c.pkt; finish writes it to the buffer.
func (c *Conn) start(cmd byte) { c.pkt = append(c.pkt[:0], 0, 0, 0, 0, cmd) }

func (c *Conn) finish() {
	binary.BigEndian.PutUint32(c.pkt, uint32(len(c.pkt)-4))
	c.w.Write(c.pkt) // errors surface at the next flush
}

func (c *Conn) putString(s string) {
	c.pkt = append(c.pkt, s...)
	c.pkt = append(c.pkt, 0)
}

// putAddr writes an envelope address in angle brackets, as Postfix does.
func (c *Conn) putAddr(s string) {
	c.pkt = append(c.pkt, '<')
	c.pkt = append(c.pkt, s...)
	c.pkt = append(c.pkt, '>', 0)
}
