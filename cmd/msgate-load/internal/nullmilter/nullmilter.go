// Package nullmilter is the reference point of msgate's benchmarks: a
// milter on the same library as msgate (github.com/emersion/go-milter
// v0.5) that accepts everything and decides nothing, so that its speed is
// the library's floor on the machine of the run.
//
// It comes in two forms. ModeFull negotiates every stage, as a content
// filter would. ModeEnvelope negotiates away what msgate negotiates away
// (HELO, headers, end of headers, body, unknown commands, DATA: msgate's
// milter.Protocol), so that it is the floor of an envelope policy. Neither
// sets the "no reply" flags, which go-milter v0.5 cannot honour.
package nullmilter

import (
	"context"
	"errors"
	"fmt"
	"net"

	gomilter "github.com/emersion/go-milter"
)

// Mode is the form of the null milter.
type Mode string

const (
	ModeFull     Mode = "full"     // every stage negotiated
	ModeEnvelope Mode = "envelope" // connect, MAIL, RCPT and end of message only
)

// ParseMode accepts "full" and "envelope".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeFull, ModeEnvelope:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q; use %q or %q", s, ModeFull, ModeEnvelope)
}

// Protocol is what the mode negotiates.
func (m Mode) Protocol() gomilter.OptProtocol {
	if m == ModeEnvelope {
		return gomilter.OptNoHelo | gomilter.OptNoHeaders | gomilter.OptNoEOH |
			gomilter.OptNoBody | gomilter.OptNoUnknown | gomilter.OptNoData
	}
	return 0
}

// NewServer returns a go-milter server of the mode that answers continue
// at every stage and accept at end of message (go-milter's NoOpMilter).
func NewServer(m Mode) *gomilter.Server {
	return &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Protocol:  m.Protocol(),
	}
}

// Serve serves the null milter on ln until ctx ends, then closes ln and
// returns nil. Connections still open are left to their clients: go-milter
// has no way to end them, and its Server.Close races with Serve.
func Serve(ctx context.Context, ln net.Listener, m Mode) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	err := NewServer(m).Serve(ln)
	if ctx.Err() != nil && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
