package milter

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gomilter "github.com/emersion/go-milter"
	"go.uber.org/zap"

	"github.com/msgate/msgate/policy"
)

// Policy is what the adapter asks; *policy.Engine implements it.
type Policy interface {
	Begin(env policy.Envelope) *policy.Transaction
	Recipient(ctx context.Context, tx *policy.Transaction, rcpt string, now time.Time) policy.Decision
	EndOfMessage(ctx context.Context, tx *policy.Transaction, now time.Time) policy.Decision
	Abort(ctx context.Context, tx *policy.Transaction) error
}

var _ Policy = (*policy.Engine)(nil)

// Options configure a Server.
type Options struct {
	Policy Policy
	Logger *zap.Logger
	// Now reads the clock; nil means time.Now.
	Now func() time.Time
	// IdleTimeout bounds the wait for the MTA's next packet; 0 means none.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one reply; 0 means none.
	WriteTimeout time.Duration
	// DecisionTimeout bounds one policy call; 0 means 10s.
	DecisionTimeout time.Duration
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("milter: server closed")

// Stages are the stages msgate negotiates away: it decides on the envelope
// and answers at end of message. Every stage left out costs the MTA a round
// trip per message.
const Stages = gomilter.OptNoHelo | gomilter.OptNoHeaders | gomilter.OptNoEOH |
	gomilter.OptNoBody | gomilter.OptNoUnknown

// NoReplies are the stages msgate never answers with anything but
// "continue", so it tells an MTA of protocol version 6 not to wait for an
// answer: connect and MAIL cost Postfix a write each instead of a round
// trip.
const NoReplies = gomilter.OptNoConnReply | gomilter.OptNoMailReply

// Protocol is what msgate negotiates with an MTA that offers version 6 and
// every flag (Postfix, Sendmail 8.14 and later): the stages above away, no
// answers at connect and MAIL, and DATA kept, where a transaction with
// nothing for end of message is accepted (the MTA then leaves msgate out
// of the rest of that message: for Postfix no cleanup(8) work at all). A
// flag the MTA does not offer is not taken.
const Protocol = Stages | NoReplies

// protocolV2 is what msgate negotiates with an MTA that offers a version
// below 6: the same stages away (DATA too, which version 2 lacks), and an
// answer to every command.
const protocolV2 = Stages | gomilter.OptNoData

// Actions is what msgate may ask the MTA to do: choose its macros, add the
// stamp header, and put a message in the hold queue.
const Actions = gomilter.OptSetSymList | gomilter.OptAddHeader | gomilter.OptQuarantine

// Macros asks the MTA for what each stage needs, so that every transaction
// carries its own client address and login.
var Macros = map[gomilter.Stage][]string{
	gomilter.StageConnect:  {"j", "{client_addr}", "{daemon_name}"},
	gomilter.StageMailFrom: {"i", "{auth_authen}", "{client_addr}"},
	gomilter.StageEOM:      {"i"},
}

// Server serves the milter protocol. Create it with NewServer.
type Server struct {
	opts Options
	// optneg is the answer to an MTA of protocol version 6 that offers
	// every flag msgate takes, built once; other MTAs get one of their own.
	optneg []byte
	// observe is told every decision and how long the policy took over it
	// (for metrics).
	observe atomic.Pointer[func(stage string, d policy.Decision, took time.Duration)]

	mu       sync.Mutex
	sessions map[*session]struct{}
	lns      []net.Listener
	draining atomic.Bool
	wg       sync.WaitGroup
	nextCID  atomic.Uint64
}

// NewServer returns a server for a policy.
func NewServer(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.DecisionTimeout <= 0 {
		opts.DecisionTimeout = 10 * time.Second
	}
	return &Server{
		opts:     opts,
		optneg:   negotiation(protocolVersion, Actions, Protocol, Macros),
		sessions: make(map[*session]struct{}),
	}
}

// Observe sets a function told every decision ("recipient" or
// "end-of-message") and how long the policy took over it.
func (s *Server) Observe(fn func(stage string, d policy.Decision, took time.Duration)) {
	s.observe.Store(&fn)
}

// Serve accepts milter connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	defer ln.Close()
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if s.draining.Load() {
			if c != nil {
				c.Close()
			}
			return ErrServerClosed
		}
		if err != nil {
			// Out of file descriptors and the like: wait and retry, as
			// net/http does, rather than stop serving.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				s.opts.Logger.Warn("accepting a milter connection failed; retrying", zap.Error(err), zap.Duration("pause", pause))
				time.Sleep(pause)
				continue
			}
			return err
		}
		pause = 0
		if sess := s.open(c); sess != nil {
			go sess.serve()
		}
	}
}

// Active is the number of open milter connections.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Shutdown stops accepting connections, closes sessions that are between
// messages, lets sessions inside a message finish it, and when ctx ends
// closes whatever is left (their reserved units are given back).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for _, ln := range s.lns {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.conn.wake()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	left := make([]*conn, 0, len(s.sessions))
	for sess := range s.sessions {
		left = append(left, sess.conn)
	}
	s.mu.Unlock()
	for _, c := range left {
		c.Close()
	}
	n := len(left)
	<-done
	s.opts.Logger.Warn("shutdown deadline reached; closed sessions in the middle of a message", zap.Int("sessions", n))
	return ctx.Err()
}

// open registers a new connection's session; nil when the server is
// draining.
func (s *Server) open(c net.Conn) *session {
	cid := s.nextCID.Add(1)
	log := s.opts.Logger.With(zap.Uint64("cid", cid))
	sess := &session{srv: s, base: log, log: log}
	tc := &conn{Conn: c, sess: sess, idle: s.opts.IdleTimeout, write: s.opts.WriteTimeout}
	tc.br = bufio.NewReaderSize(rawReader{tc}, 4096)
	sess.conn = tc
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		c.Close()
		return nil
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	sess.log.Debug("milter connection", zap.String("peer", c.RemoteAddr().String()))
	return sess
}

// messageTimeout is the least idle deadline inside a transaction.
const messageTimeout = time.Hour

// conn is a milter connection with deadlines and a close hook. Reads are
// buffered: a packet's length and body are read separately, and the buffer
// turns that into one system call per packet (or fewer, when the MTA sends
// a macro packet and its command together).
type conn struct {
	net.Conn
	sess        *session
	idle, write time.Duration
	closeOnce   sync.Once
	br          *bufio.Reader
	// deadline is the read deadline last set, reset when a wake moved it.
	deadline time.Time
	// splitWrites is set once the MTA is seen sending a macro packet in a
	// write of its own (Sendmail, miltertest).
	splitWrites bool
}

// ackAtOnce acknowledges a read at once when the MTA writes each macro
// packet apart from the command that follows it: with Nagle's algorithm on
// its side, the command then waits for msgate's ACK, which Linux delays by
// about 40 ms. Postfix writes both together, and pays nothing for this.
func (c *conn) ackAtOnce(b []byte) {
	if !c.splitWrites && len(b) >= 5 && b[4] == 'D' && int(binary.BigEndian.Uint32(b))+4 == len(b) {
		c.splitWrites = true
	}
	if c.splitWrites {
		quickAck(c.Conn)
	}
}

func (c *conn) Read(p []byte) (int, error) { return c.br.Read(p) }

type rawReader struct{ c *conn }

func (r rawReader) Read(p []byte) (int, error) { return r.c.read(p) }

// read waits for the MTA with the idle deadline. While the server drains,
// a session that is between messages reads end of file, so the session
// ends without an error.
func (c *conn) read(p []byte) (int, error) {
	for {
		inMessage := c.sess.inMessage()
		// The deadline is set before draining is checked: a wake that
		// comes after the check still interrupts the Read below.
		var deadline time.Time
		if c.idle > 0 {
			idle := c.idle
			if inMessage {
				// Between the last RCPT and end of message msgate asks
				// for nothing, so the MTA is silent for as long as its
				// client takes to upload the message.
				idle = max(idle, messageTimeout)
			}
			deadline = time.Now().Add(idle)
		}
		// A deadline set a moment ago stands, so that most reads cost no
		// timer update: the idle timeout then fires at most a tenth of
		// itself (and at most a second) early.
		slack := min(time.Second, c.idle/10)
		if d := deadline.Sub(c.deadline); deadline.IsZero() != c.deadline.IsZero() || d < 0 || d >= slack {
			c.Conn.SetReadDeadline(deadline)
			c.deadline = deadline
		}
		if c.sess.srv.draining.Load() && !inMessage {
			return 0, io.EOF
		}
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.ackAtOnce(p[:n])
		}
		if n > 0 || err == nil {
			return n, err
		}
		// A read woken by Shutdown is retried: the loop returns EOF when
		// the session is between messages and waits again otherwise.
		if errors.Is(err, os.ErrDeadlineExceeded) && c.sess.srv.draining.Load() && c.sess.woken.Swap(false) {
			c.deadline = time.Time{} // wake moved it
			continue
		}
		return n, err
	}
}

func (c *conn) Write(p []byte) (int, error) {
	if c.write > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.write))
	}
	return c.Conn.Write(p)
}

// wake interrupts a blocked Read so that it sees the server draining.
func (c *conn) wake() {
	c.sess.woken.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

func (c *conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.sess.closed()
		s := c.sess.srv
		s.mu.Lock()
		delete(s.sessions, c.sess)
		s.mu.Unlock()
		s.wg.Done()
	})
	return err
}
