package milterclient

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// packet is one command as the milter received it.
type packet struct {
	cmd  byte
	data []byte
}

func (p packet) String() string {
	if p.cmd == 'D' && len(p.data) > 0 {
		return "D" + string(p.data[0]) + "{" + strings.Join(cstrings(p.data[1:]), " ") + "}"
	}
	return string(p.cmd)
}

func cstrings(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}

// fakeMilter speaks the milter's side of the protocol from a script, and
// records what it was sent.
type fakeMilter struct {
	version uint32
	actions Actions
	proto   Protocol
	// symlists are appended to the negotiation answer: SMFIM_* number ->
	// space-separated names.
	symlists map[uint32]string
	// answer returns the packets that answer a command; nil sends none.
	// It is not called for macros, abort and quit, which get no answer.
	answer func(p packet) [][]byte

	mu   sync.Mutex
	got  []packet
	done chan struct{}
}

// pkt builds an answer packet.
func pkt(cmd byte, data ...string) []byte {
	var payload []byte
	for _, d := range data {
		payload = append(payload, d...)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)+1))
	return append(append(b, cmd), payload...)
}

func cont(packet) [][]byte { return [][]byte{pkt('c')} }

// start runs the fake on one end of a pipe and returns a negotiated client
// on the other.
func (f *fakeMilter) start(t *testing.T, opts Options) *Conn {
	t.Helper()
	if f.answer == nil {
		f.answer = cont
	}
	f.done = make(chan struct{})
	mta, milter := net.Pipe()
	go f.serve(milter)
	t.Cleanup(func() {
		mta.Close()
		<-f.done
	})
	mta.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := New(mta, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeMilter) serve(conn net.Conn) {
	defer close(f.done)
	defer conn.Close()
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return
		}
		buf := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return
		}
		p := packet{cmd: buf[0], data: buf[1:]}
		var answers [][]byte
		switch p.cmd {
		case 'O':
			data := binary.BigEndian.AppendUint32(nil, f.version)
			data = binary.BigEndian.AppendUint32(data, uint32(f.actions))
			data = binary.BigEndian.AppendUint32(data, uint32(f.proto))
			for stage, names := range f.symlists {
				data = binary.BigEndian.AppendUint32(data, stage)
				data = append(append(data, names...), 0)
			}
			answers = [][]byte{pkt('O', string(data))}
		case 'D', 'A', 'Q':
		default:
			answers = f.answer(p)
		}
		if p.cmd != 'O' {
			f.mu.Lock()
			f.got = append(f.got, p)
			f.mu.Unlock()
		}
		for _, a := range answers {
			if _, err := conn.Write(a); err != nil {
				return
			}
		}
		if p.cmd == 'Q' {
			return
		}
	}
}

// received returns what the fake was sent, after the client closed.
func (f *fakeMilter) received(t *testing.T, c *Conn) []packet {
	t.Helper()
	c.Close()
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the fake milter did not see the end of the session")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got
}

func pipe() (net.Conn, net.Conn) { return net.Pipe() }
