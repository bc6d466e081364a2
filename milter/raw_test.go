package milter_test

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// rawConn speaks the milter protocol packet by packet, to stop a
// transaction anywhere (go-milter's client always finishes or aborts). It
// offers what Postfix offers and, like Postfix, waits for no answer where
// msgate negotiated none.
type rawConn struct {
	conn net.Conn
	// version and proto are msgate's answer to the negotiation.
	version uint32
	proto   gomilter.OptProtocol
}

// postfixOffer is what Postfix 3.7 offers: version 6, every action and
// every protocol flag.
const postfixOffer = 0x1fffff

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	r := dialOffer(t, addr, 6, postfixOffer)
	r.connect(t)
	return r
}

// dialOffer connects and negotiates with the given offer, and no more.
func dialOffer(t *testing.T, addr string, version uint32, proto gomilter.OptProtocol) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{conn: c}
	opt := make([]byte, 12)
	binary.BigEndian.PutUint32(opt, version)
	binary.BigEndian.PutUint32(opt[4:], 0x1ff)
	binary.BigEndian.PutUint32(opt[8:], uint32(proto))
	r.write(t, 'O', opt)
	code, data := r.read(t)
	if code != 'O' || len(data) < 12 {
		t.Fatalf("negotiation answered %q %q", code, data)
	}
	r.version = binary.BigEndian.Uint32(data)
	r.proto = gomilter.OptProtocol(binary.BigEndian.Uint32(data[8:]))
	return r
}

// answered reads the answer to a command unless msgate said it sends none,
// and fails the test unless it is want.
func (r *rawConn) answered(t *testing.T, what string, noReply gomilter.OptProtocol, want byte) {
	t.Helper()
	if r.proto&noReply != 0 {
		return
	}
	if code, _ := r.read(t); code != want {
		t.Fatalf("%s answered %q, want %q", what, code, want)
	}
}

func (r *rawConn) connect(t *testing.T) {
	t.Helper()
	conn := append([]byte("client.test\x004"), 0x9c, 0x40)
	conn = append(conn, "192.0.2.1\x00"...)
	r.write(t, 'C', conn)
	r.answered(t, "connect", gomilter.OptNoConnReply, 'c')
}

func (r *rawConn) write(t *testing.T, code byte, data []byte) {
	t.Helper()
	b := make([]byte, 5, 5+len(data))
	binary.BigEndian.PutUint32(b, uint32(len(data)+1))
	b[4] = code
	if _, err := r.conn.Write(append(b, data...)); err != nil {
		t.Fatalf("write %q: %v", code, err)
	}
}

func (r *rawConn) read(t *testing.T) (byte, []byte) {
	t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var n uint32
	if err := binary.Read(r.conn, binary.BigEndian, &n); err != nil {
		t.Fatalf("read: %v", err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.conn, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	return b[0], b[1:]
}

// mailRcpt sends MAIL (with the login macro) and one RCPT, and returns the
// RCPT answer's code.
func (r *rawConn) mailRcpt(t *testing.T, login, rcpt string) byte {
	t.Helper()
	r.write(t, 'D', []byte("M{auth_authen}\x00"+login+"\x00"))
	r.write(t, 'M', []byte("<"+login+"@example.org>\x00"))
	r.answered(t, "MAIL", gomilter.OptNoMailReply, 'c')
	r.write(t, 'R', []byte("<"+rcpt+">\x00"))
	code, _ := r.read(t)
	return code
}

func (r *rawConn) endOfMessage(t *testing.T) byte {
	t.Helper()
	r.write(t, 'E', nil)
	code, _ := r.read(t)
	return code
}

// data sends DATA and returns its answer's code.
func (r *rawConn) data(t *testing.T) byte {
	t.Helper()
	r.write(t, 'T', nil)
	code, _ := r.read(t)
	return code
}
