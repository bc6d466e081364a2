package socketmap

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestNetstring(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		err  bool
	}{
		{"3:abc,", "abc", false},
		{"0:,", "", false},
		{"12:dsn 2.0.0 ok,", "dsn 2.0.0 ok", false},
		{"3:abc;", "", true},  // no comma
		{"3:ab", "", true},    // truncated
		{"03:abc,", "", true}, // leading zero
		{":abc,", "", true},   // no length
		{"x:abc,", "", true},  // not a number
		{"100001:", "", true}, // too long
		{"", "", true},        // nothing
		{"99999999999999999999:", "", true},
	} {
		got, err := ReadNetstring(bufio.NewReader(strings.NewReader(c.in)))
		if (err != nil) != c.err || string(got) != c.want {
			t.Errorf("ReadNetstring(%q) = %q, %v", c.in, got, err)
		}
	}
	if got := string(AppendNetstring(nil, "NOTFOUND ")); got != "9:NOTFOUND ," {
		t.Errorf("AppendNetstring = %q", got)
	}
}

func TestParseRequest(t *testing.T) {
	name, key, err := ParseRequest([]byte("dsn 5.7.1 host x said: 550 no"))
	if err != nil || name != "dsn" || key != "5.7.1 host x said: 550 no" {
		t.Errorf("= %q %q %v", name, key, err)
	}
	for _, bad := range []string{"", "dsn", " key"} {
		if _, _, err := ParseRequest([]byte(bad)); err == nil {
			t.Errorf("ParseRequest(%q) accepted", bad)
		}
	}
}

// Many lookups on one connection, as Postfix makes them, and a broken
// request that gets PERM without ending the connection's usefulness to
// the test.
func TestServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	seen := make(chan string, 10)
	s := &Server{Handler: func(name, key string) Reply {
		seen <- name + "|" + key
		return NotFound
	}}
	go s.Serve(l)
	defer func() { l.Close(); s.Close() }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var req []byte
	for _, k := range []string{"dsn 2.0.0 250 ok", "dsn 5.7.1 host h said: 550 (S3150)", "nokey"} {
		req = AppendNetstring(req, k)
	}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, want := range []string{"NOTFOUND ", "NOTFOUND ", "PERM "} {
		got, err := ReadNetstring(r)
		if err != nil || !strings.HasPrefix(string(got), want) {
			t.Fatalf("reply %d = %q, %v; want %q", i, got, err, want)
		}
	}
	for range 2 {
		keys = append(keys, <-seen)
	}
	if strings.Join(keys, ";") != "dsn|2.0.0 250 ok;dsn|5.7.1 host h said: 550 (S3150)" {
		t.Errorf("handler saw %q", keys)
	}
	got, err := Lookup(context.Background(), "tcp", l.Addr().String(), "dsn", "4.7.650 x")
	if err != nil || got != NotFound {
		t.Errorf("Lookup = %q, %v", got, err)
	}
}

func FuzzReadNetstring(f *testing.F) {
	for _, s := range []string{"3:abc,", "0:,", "9:NOTFOUND ,", "3:ab", "x:", "100001:", "5:a b c,5:d e f,"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		for {
			b, err := ReadNetstring(r)
			if err != nil {
				if err == io.EOF && r.Buffered() != 0 {
					t.Fatal("EOF with input left")
				}
				return
			}
			if len(b) > MaxLength {
				t.Fatalf("%d bytes", len(b))
			}
			// What was read is written back the same way.
			back, err := ReadNetstring(bufio.NewReader(bytes.NewReader(AppendNetstring(nil, string(b)))))
			if err != nil || !bytes.Equal(back, b) {
				t.Fatalf("round trip of %q: %q, %v", b, back, err)
			}
			ParseRequest(b)
		}
	})
}
