package milter

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"
	"go.uber.org/zap"

	"github.com/msgate/msgate/policy"
)

// session is one milter connection: one SMTP session, or one injection of
// non-SMTP mail. Its serve loop reads commands and answers them in one
// goroutine; closed may come from another (Shutdown), hence the mutex.
type session struct {
	srv   *Server
	conn  *conn
	base  *zap.Logger // the connection's logger; log adds the client's fields
	log   *zap.Logger
	woken atomic.Bool
	// noReply is the commands the MTA agreed not to wait for an answer to.
	noReply gomilter.OptProtocol

	// The serve loop's own: the read buffer, the replies being built, and
	// the values of the last macro packet.
	rbuf []byte
	wbuf []byte
	mac  macros

	mu       sync.Mutex
	isClosed bool
	clientIP string
	nonSMTP  bool
	tx       *policy.Transaction
}

func (s *session) inMessage() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tx != nil
}

// closed runs once when the connection goes away: the transaction's units
// are given back.
func (s *session) closed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.isClosed = true
	if s.tx != nil {
		s.release("connection closed")
	}
}

// release gives the transaction's units back. s.mu is held.
func (s *session) release(why string) {
	tx := s.tx
	s.tx = nil
	if tx.Held() == 0 {
		return
	}
	n := tx.Held()
	if err := s.srv.opts.Policy.Abort(context.Background(), tx); err != nil {
		s.log.Error("giving back reserved units failed", zap.String("why", why), zap.String("account", tx.Account.Name), zap.Error(err))
		return
	}
	if ce := s.log.Check(zap.DebugLevel, "reserved units given back"); ce != nil {
		ce.Write(zap.String("why", why), zap.String("account", tx.Account.Name), zap.Int("units", n))
	}
}

func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.srv.opts.DecisionTimeout)
}

// serve answers the MTA's commands until the connection ends.
func (s *session) serve() {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic in a milter session; connection closed", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
		}
		s.conn.Close()
	}()
	for {
		code, data, err := readPacket(s.conn, &s.rbuf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				level := zap.WarnLevel
				if errors.Is(err, os.ErrDeadlineExceeded) {
					level = zap.DebugLevel // the idle timeout
				}
				s.log.Check(level, "milter connection ended").Write(zap.Error(err))
			}
			return
		}
		if err := s.command(code, data); err != nil {
			if err != errQuit {
				s.log.Warn("milter connection closed", zap.String("command", string(rune(code))), zap.Error(err))
			}
			return
		}
		if len(s.wbuf) > 0 {
			_, err := s.conn.Write(s.wbuf)
			s.wbuf = s.wbuf[:0]
			if err != nil {
				s.log.Warn("answering the MTA failed; connection closed", zap.Error(err))
				return
			}
		}
	}
}

// errQuit ends a session at the MTA's request.
var errQuit = errors.New("milter: quit")

// command handles one command from the MTA; replies go to s.wbuf.
func (s *session) command(code byte, data []byte) error {
	switch code {
	case cmdOptNeg:
		o, err := parseOffer(data)
		if err != nil {
			return err
		}
		version, proto := protocolFor(o)
		if version == protocolVersion && proto == Protocol {
			s.wbuf = append(s.wbuf, s.srv.optneg...)
		} else {
			s.wbuf = append(s.wbuf, negotiation(version, Actions, proto, Macros)...)
		}
		s.noReply = proto & NoReplies
	case cmdMacro:
		m, err := parseMacros(data)
		if err != nil {
			return err
		}
		s.mac = m
	case cmdConnect:
		ci, err := parseConnect(data)
		if err != nil {
			return err
		}
		s.connect(ci)
		s.answer(gomilter.OptNoConnReply)
	case cmdMail:
		s.mailFrom(address(data))
		s.answer(gomilter.OptNoMailReply)
	case cmdRcpt:
		s.wbuf = appendResponse(s.wbuf, s.rcptTo(address(data)))
	case cmdData:
		s.wbuf = appendPacket(s.wbuf, s.data())
	case cmdEOB:
		s.endOfMessage()
	case cmdAbort:
		// No reply. Like go-milter, the macros of the aborted transaction
		// are forgotten.
		s.abort()
		s.mac = macros{}
	case cmdHelo, cmdHeader, cmdEOH, cmdBody, cmdUnknown:
		// Stages msgate negotiates away; an MTA that sends them anyway
		// is told to go on.
		s.wbuf = appendPacket(s.wbuf, replyContinue)
	case cmdQuitNC:
		// The MTA goes on with a new SMTP session on this connection:
		// its connect command follows.
		s.newSession()
	case cmdQuit:
		return errQuit
	default:
		return errors.New("milter: unknown command")
	}
	return nil
}

// answer says "continue" to a command, unless the MTA agreed not to wait for
// an answer to it.
func (s *session) answer(noReply gomilter.OptProtocol) {
	if s.noReply&noReply == 0 {
		s.wbuf = appendPacket(s.wbuf, replyContinue)
	}
}

// newSession forgets the SMTP session that ended (QUIT_NC): its
// transaction's units are given back, its client and macros forgotten.
func (s *session) newSession() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != nil {
		s.release("SMTP session ended")
	}
	s.clientIP, s.nonSMTP = "", false
	s.log = s.base
	s.mac = macros{}
}

// connect records the client. Mail from Postfix's sendmail command (pickup)
// and Sendmail's command line arrives with port 0 and no SMTP client.
func (s *session) connect(ci connectInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nonSMTP = ci.port == 0
	if ip := net.ParseIP(ci.addr); ip != nil {
		s.clientIP = ip.String()
	}
	if v := s.mac.clientAddr; v != "" {
		s.clientIP = v
	}
	s.log = s.log.With(zap.String("client", s.clientIP))
	if s.nonSMTP {
		s.log = s.log.With(zap.Bool("non_smtp", true))
	}
	if ce := s.log.Check(zap.DebugLevel, "connect"); ce != nil {
		ce.Write(zap.String("host", ci.host), zap.String("family", familyName(ci.family)), zap.Uint16("port", ci.port))
	}
}

// mailFrom starts a transaction. The macros are read now: the next macro
// packet replaces them.
func (s *session) mailFrom(from string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed {
		return
	}
	if s.tx != nil {
		s.release("new MAIL without end of message")
	}
	env := policy.Envelope{
		SASLLogin:  s.mac.authAuthen,
		Sender:     from,
		NullSender: from == "",
		ClientIP:   s.clientIP,
		NonSMTP:    s.nonSMTP,
		QueueID:    s.mac.queueID,
	}
	if v := s.mac.clientAddr; v != "" {
		env.ClientIP = v
	}
	s.tx = s.srv.opts.Policy.Begin(env)
	if ce := s.log.Check(zap.DebugLevel, "mail from"); ce != nil {
		ce.Write(zap.String("account", s.tx.Account.Name), zap.String("account_kind", string(s.tx.Account.Kind)))
	}
}

// rcptTo decides one recipient.
func (s *session) rcptTo(rcpt string) policy.Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed || s.tx == nil {
		return policy.Decision{Verdict: policy.Accept}
	}
	if s.tx.Env.QueueID == "" {
		s.tx.Env.QueueID = s.mac.queueID
	}
	ctx, cancel := s.ctx()
	start := time.Now()
	d := s.srv.opts.Policy.Recipient(ctx, s.tx, rcpt, s.srv.opts.Now())
	s.observe("recipient", d, start)
	cancel()
	s.logDecision("recipient", d)
	return d
}

func (s *session) observe(stage string, d policy.Decision, start time.Time) {
	if o := s.srv.observe.Load(); o != nil {
		(*o)(stage, d, time.Since(start))
	}
}

// logDecision writes one line per decision: Info for anything about a
// Microsoft recipient, a refusal or an error, Debug otherwise. Fields are
// built only when the line is written.
func (s *session) logDecision(stage string, d policy.Decision, extra ...zap.Field) {
	level := zap.DebugLevel
	if d.Microsoft || d.Verdict != policy.Accept || d.Monitor || d.Err != nil || stage != "recipient" {
		level = zap.InfoLevel
	}
	ce := s.log.Check(level, "decision")
	if ce == nil {
		return
	}
	fields := append(extra,
		zap.String("account", s.tx.Account.Name), zap.String("account_kind", string(s.tx.Account.Kind)),
		zap.String("stage", stage), zap.Inline(d))
	if id := s.tx.Env.QueueID; id != "" {
		fields = append(fields, zap.String("queue_id", id))
	}
	ce.Write(fields...)
}

// endOfMessage commits the units, or for non-SMTP mail with a refused
// recipient refuses the whole message. The stamp header, a quarantine
// request and the answer go to the MTA in one write.
func (s *session) endOfMessage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed || s.tx == nil {
		s.wbuf = appendPacket(s.wbuf, replyContinue)
		return
	}
	if id := s.mac.queueID; id != "" {
		s.tx.Env.QueueID = id
	}
	units := s.tx.Held()
	ctx, cancel := s.ctx()
	start := time.Now()
	d := s.srv.opts.Policy.EndOfMessage(ctx, s.tx, s.srv.opts.Now())
	s.observe("end-of-message", d, start)
	cancel()
	if units > 0 || d.Verdict != policy.Accept || d.Err != nil {
		s.logDecision("end-of-message", d, zap.Int("units", units))
	}
	s.tx = nil
	if d.Stamp != "" && d.Verdict == policy.Accept {
		// The stamp is one line of token characters: nothing to fold.
		s.wbuf = appendPacket(s.wbuf, replyAddHeader, policy.StampHeader, "\x00", d.Stamp, "\x00")
	}
	if d.Verdict == policy.Hold {
		s.wbuf = appendPacket(s.wbuf, replyQuarantine, d.Reply.Text, "\x00")
	}
	s.wbuf = appendResponse(s.wbuf, d)
}

// data answers DATA. A transaction the policy needs nothing more for (no
// Microsoft recipient: nothing reserved, stamped, refused or held) is
// accepted: the MTA then leaves msgate out of the rest of the message,
// which for Postfix means cleanup(8) neither receives msgate's connection
// nor asks it at end of message.
func (s *session) data() byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed || s.tx == nil || s.tx.WantsEndOfMessage() {
		return replyContinue
	}
	s.tx = nil
	return replyAccept
}

// abort ends the transaction without a message (RSET, a refused DATA, the
// client quit): its units are given back.
func (s *session) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != nil {
		s.release("transaction aborted")
	}
}
