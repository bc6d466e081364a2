//go:build linux

package sendmailtest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/postfixtest"
	"github.com/msgate/msgate/cmd/msgate/internal/smtpclient"
)

// Sink is an SMTP server that accepts every message and keeps it: the
// next hop of the Sendmail under test. It speaks just enough SMTP for
// Sendmail's relay mailer (EHLO without extensions, MAIL, RCPT, DATA, RSET,
// NOOP, QUIT) and refuses nothing.
type Sink struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	ds    []postfixtest.Delivery
	errs  []error
	conns map[net.Conn]struct{}
}

// sinkHostname is the sink's greeting name. It must differ from Sendmail's
// own name, or Sendmail takes the connection for a mail loop.
const sinkHostname = "sink.test.local"

// NewSink serves SMTP on ln until Close.
func NewSink(ln net.Listener) *Sink {
	s := &Sink{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s
}

// Addr is where the sink listens.
func (s *Sink) Addr() net.Addr { return s.ln.Addr() }

// Close stops the sink and waits for its connections to end.
func (s *Sink) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Delivered returns the messages received so far, in order.
func (s *Sink) Delivered() []postfixtest.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]postfixtest.Delivery(nil), s.ds...)
}

// Errors returns the protocol errors the sink saw (a client that broke
// off in the middle of a command, a malformed command).
func (s *Sink) Errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func (s *Sink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.session(c); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, err)
				s.mu.Unlock()
			}
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

const sinkTimeout = 30 * time.Second

func (s *Sink) session(c net.Conn) error {
	r := bufio.NewReader(c)
	reply := func(line string) error {
		_ = c.SetWriteDeadline(time.Now().Add(sinkTimeout))
		_, err := c.Write([]byte(line + "\r\n"))
		return err
	}
	readLine := func() (string, error) {
		_ = c.SetReadDeadline(time.Now().Add(sinkTimeout))
		l, err := r.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err
	}
	if err := reply("220 " + sinkHostname + " ESMTP sendmailtest sink"); err != nil {
		return err
	}
	var d postfixtest.Delivery
	inTx := false
	for {
		line, err := readLine()
		if err != nil {
			if inTx {
				return fmt.Errorf("sink: connection ended inside a transaction: %w", err)
			}
			return nil // the client hung up between transactions
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			err = reply("250 " + sinkHostname)
		case "MAIL":
			d = postfixtest.Delivery{}
			args, ok := cutPrefixFold(arg, "FROM:")
			if !ok {
				err = reply("501 5.5.4 Syntax: MAIL FROM:<address>")
				break
			}
			d.MailArgs = args
			d.Sender = smtpclient.AngleAddr(args)
			inTx = true
			err = reply("250 2.1.0 Ok")
		case "RCPT":
			args, ok := cutPrefixFold(arg, "TO:")
			if !ok || !inTx {
				err = reply("503 5.5.1 Error: need MAIL and TO:<address>")
				break
			}
			d.RcptArgs = append(d.RcptArgs, args)
			d.Recipients = append(d.Recipients, smtpclient.AngleAddr(args))
			err = reply("250 2.1.5 Ok")
		case "DATA":
			if !inTx || len(d.Recipients) == 0 {
				err = reply("503 5.5.1 Error: need RCPT")
				break
			}
			if err = reply("354 End data with <CR><LF>.<CR><LF>"); err != nil {
				break
			}
			var b strings.Builder
			for {
				l, rerr := readLine()
				if rerr != nil {
					return fmt.Errorf("sink: connection ended inside DATA: %w", rerr)
				}
				if l == "." {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
				b.WriteString("\n")
			}
			d.Message = b.String()
			s.mu.Lock()
			s.ds = append(s.ds, d)
			s.mu.Unlock()
			inTx = false
			err = reply("250 2.0.0 Ok: queued")
		case "RSET":
			inTx = false
			err = reply("250 2.0.0 Ok")
		case "NOOP":
			err = reply("250 2.0.0 Ok")
		case "QUIT":
			_ = reply("221 2.0.0 Bye")
			return nil
		default:
			err = reply("502 5.5.2 Error: command not recognized")
		}
		if err != nil {
			return err
		}
	}
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(s[len(prefix):]), true
}
