package milter

import (
	"context"
	"net"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"
	"go.uber.org/zap"

	"github.com/msgate/msgate/policy"
)

// session is one milter connection: one SMTP session, or one injection of
// non-SMTP mail. go-milter calls its methods from one goroutine; closed may
// come from another (Shutdown), hence the mutex.
type session struct {
	srv   *Server
	conn  *conn
	log   *zap.Logger
	woken atomic.Bool

	mu       sync.Mutex
	isClosed bool
	clientIP string
	nonSMTP  bool
	tx       *policy.Transaction
	txLog    *zap.Logger
}

var _ gomilter.Milter = (*session)(nil)

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
		s.txLog.Error("giving back reserved units failed", zap.String("why", why), zap.Error(err))
		return
	}
	s.txLog.Debug("reserved units given back", zap.String("why", why), zap.Int("units", n))
}

func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.srv.opts.DecisionTimeout)
}

// Connect records the client. Mail from Postfix's sendmail command (pickup)
// and Sendmail's command line arrives with port 0 and no SMTP client.
func (s *session) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nonSMTP = port == 0
	if addr != nil {
		s.clientIP = addr.String()
	}
	if v := m.Macros["{client_addr}"]; v != "" {
		s.clientIP = v
	}
	s.log = s.log.With(zap.String("client", s.clientIP))
	if s.nonSMTP {
		s.log = s.log.With(zap.Bool("non_smtp", true))
	}
	s.log.Debug("connect", zap.String("host", host), zap.String("family", family), zap.Uint16("port", port))
	return gomilter.RespContinue, nil
}

func (s *session) Helo(string, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

// MailFrom starts a transaction. Macros are copied now: the library keeps
// only the latest macro packet.
func (s *session) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed {
		return gomilter.RespContinue, nil
	}
	if s.tx != nil {
		s.release("new MAIL without end of message")
	}
	env := policy.Envelope{
		SASLLogin:  m.Macros["{auth_authen}"],
		Sender:     from,
		NullSender: from == "",
		ClientIP:   s.clientIP,
		NonSMTP:    s.nonSMTP,
		QueueID:    m.Macros["i"],
	}
	if v := m.Macros["{client_addr}"]; v != "" {
		env.ClientIP = v
	}
	s.tx = s.srv.opts.Policy.Begin(env)
	s.txLog = s.log.With(zap.String("account", s.tx.Account.Name), zap.String("account_kind", string(s.tx.Account.Kind)))
	s.txLog.Debug("mail from")
	return gomilter.RespContinue, nil
}

// RcptTo decides one recipient.
func (s *session) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed || s.tx == nil {
		return gomilter.RespContinue, nil
	}
	if s.tx.Env.QueueID == "" {
		s.tx.Env.QueueID = m.Macros["i"]
	}
	ctx, cancel := s.ctx()
	start := time.Now()
	d := s.srv.opts.Policy.Recipient(ctx, s.tx, rcpt, s.srv.opts.Now())
	s.observe("recipient", d, start)
	cancel()
	s.logDecision("recipient", d)
	return Response(d), nil
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
	ce := s.txLog.Check(level, "decision")
	if ce == nil {
		return
	}
	fields := append(extra, zap.String("stage", stage), zap.Inline(d))
	if id := s.tx.Env.QueueID; id != "" {
		fields = append(fields, zap.String("queue_id", id))
	}
	ce.Write(fields...)
}

func (s *session) Header(string, string, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) Headers(textproto.MIMEHeader, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk([]byte, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

// Body is end of message: the units are committed, or for non-SMTP mail
// with a refused recipient the whole message is refused.
func (s *session) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed || s.tx == nil {
		return gomilter.RespContinue, nil
	}
	if id := m.Macros["i"]; id != "" {
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
		if err := m.AddHeader(policy.StampHeader, d.Stamp); err != nil {
			return nil, err
		}
	}
	if d.Verdict == policy.Hold {
		if err := m.Quarantine(d.Reply.Text); err != nil {
			// The connection is gone; the MTA applies its default action.
			return nil, err
		}
	}
	return Response(d), nil
}

// Abort ends the transaction without a message (RSET, a refused DATA, the
// client quit): its units are given back.
func (s *session) Abort(*gomilter.Modifier) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != nil {
		s.release("transaction aborted")
	}
	return nil
}
