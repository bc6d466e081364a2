// Package socketmap serves Postfix's socketmap lookup protocol: netstrings
// "NAME KEY" in, "OK DATA", "NOTFOUND ", "TEMP REASON" or "PERM REASON"
// out, many on one connection. It decides nothing: a Handler answers each
// lookup.
package socketmap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// MaxLength bounds one netstring, as Postfix's socketmap_max_reply does by
// default (100000).
const MaxLength = 100000

// ReadNetstring reads one netstring ("LEN:DATA,").
func ReadNetstring(r *bufio.Reader) ([]byte, error) {
	n := 0
	digits := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if digits > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' || (digits == 1 && n == 0) {
			return nil, fmt.Errorf("socketmap: bad netstring length at %q", c)
		}
		n = n*10 + int(c-'0')
		digits++
		if n > MaxLength {
			return nil, fmt.Errorf("socketmap: netstring longer than %d bytes", MaxLength)
		}
	}
	if digits == 0 {
		return nil, errors.New("socketmap: netstring without length")
	}
	b := make([]byte, n+1)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if b[n] != ',' {
		return nil, errors.New("socketmap: netstring not ended by a comma")
	}
	return b[:n], nil
}

// AppendNetstring appends s as a netstring.
func AppendNetstring(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	dst = append(dst, s...)
	return append(dst, ',')
}

// ParseRequest splits a request into the map name and the key.
func ParseRequest(b []byte) (name, key string, err error) {
	for i, c := range b {
		if c == ' ' {
			if i == 0 {
				break
			}
			return string(b[:i]), string(b[i+1:]), nil
		}
	}
	return "", "", fmt.Errorf("socketmap: request %.40q is not \"NAME KEY\"", b)
}

// Reply is an answer: NotFound, or Found(data), or a Temp / Perm error.
type Reply string

// NotFound is the answer for a key the map does not hold.
const NotFound Reply = "NOTFOUND "

// Found answers data for the key.
func Found(data string) Reply { return Reply("OK " + data) }

// Temp answers a temporary failure.
func Temp(reason string) Reply { return Reply("TEMP " + reason) }

// Perm answers a permanent failure (the map is wrongly used).
func Perm(reason string) Reply { return Reply("PERM " + reason) }

// Handler answers one lookup. It must be quick: Postfix waits for it.
type Handler func(name, key string) Reply

// Server serves socketmap connections.
type Server struct {
	Handler Handler
	// IdleTimeout closes a connection without requests for this long;
	// Postfix reconnects when it needs to. Default 5 minutes.
	IdleTimeout time.Duration
	// OnError, when set, hears about connections that break the protocol.
	OnError func(error)

	mu    sync.Mutex
	conns map[net.Conn]bool
	done  bool
}

// Serve accepts connections on l until Close or l fails.
func (s *Server) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.done
			s.mu.Unlock()
			if done {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		if s.conns == nil {
			s.conns = map[net.Conn]bool{}
		}
		s.conns[c] = true
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close closes every connection; Serve returns once its listener is closed
// by the caller.
func (s *Server) Close() {
	s.mu.Lock()
	s.done = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

func (s *Server) serveConn(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	r := bufio.NewReader(c)
	var out []byte
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		req, err := ReadNetstring(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && s.OnError != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					s.OnError(err)
				}
			}
			return
		}
		var reply Reply
		name, key, err := ParseRequest(req)
		if err != nil {
			reply = Perm(err.Error())
		} else {
			reply = s.Handler(name, key)
		}
		out = AppendNetstring(out[:0], string(reply))
		c.SetWriteDeadline(time.Now().Add(idle))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// Lookup asks a socketmap server one question, as Postfix does (for
// tests).
func Lookup(ctx context.Context, network, addr, name, key string) (Reply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(AppendNetstring(nil, name+" "+key)); err != nil {
		return "", err
	}
	b, err := ReadNetstring(bufio.NewReader(c))
	return Reply(b), err
}
