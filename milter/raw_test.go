package milter_test

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// rawConn speaks the milter protocol packet by packet, to stop a
// transaction anywhere (go-milter's client always finishes or aborts).
type rawConn struct {
	conn net.Conn
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{conn: c}
	opt := make([]byte, 12)
	binary.BigEndian.PutUint32(opt, 6)
	binary.BigEndian.PutUint32(opt[4:], 0x1ff)
	binary.BigEndian.PutUint32(opt[8:], 0x1fffff)
	r.write(t, 'O', opt)
	if code, _ := r.read(t); code != 'O' {
		t.Fatalf("negotiation answered %q", code)
	}
	conn := append([]byte("client.test\x004"), 0x9c, 0x40)
	conn = append(conn, "192.0.2.1\x00"...)
	r.write(t, 'C', conn)
	if code, _ := r.read(t); code != 'c' {
		t.Fatalf("connect answered %q", code)
	}
	return r
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
	if code, _ := r.read(t); code != 'c' {
		t.Fatalf("MAIL answered %q", code)
	}
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
