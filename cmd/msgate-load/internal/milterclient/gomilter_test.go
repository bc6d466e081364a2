package milterclient

import (
	"context"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// recorder is a go-milter handler that notes each callback.
type recorder struct {
	mu     *sync.Mutex
	events *[]string
}

func (r recorder) note(format string, args ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.events = append(*r.events, format+strings.Join(args, ","))
}

func (r recorder) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	r.note("connect:", host, addr.String(), m.Macros["{client_addr}"])
	return gomilter.RespContinue, nil
}
func (r recorder) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	r.note("helo:", name)
	return gomilter.RespContinue, nil
}
func (r recorder) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	r.note("mail:", from, m.Macros["{auth_authen}"], m.Macros["i"])
	return gomilter.RespContinue, nil
}
func (r recorder) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	r.note("rcpt:", rcpt)
	if strings.HasSuffix(rcpt, "@outlook.com") {
		return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), "451 4.7.1 Try again later"), nil
	}
	return gomilter.RespContinue, nil
}
func (r recorder) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	r.note("header:", name, value)
	return gomilter.RespContinue, nil
}
func (r recorder) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	r.note("eoh")
	return gomilter.RespContinue, nil
}
func (r recorder) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	r.note("body:", string(chunk))
	return gomilter.RespContinue, nil
}
func (r recorder) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	r.note("eom:", m.Macros["i"])
	if err := m.AddHeader("X-Stamp", "1"); err != nil {
		return nil, err
	}
	return gomilter.RespContinue, nil
}
func (r recorder) Abort(m *gomilter.Modifier) error {
	r.note("abort")
	return nil
}

// TestGoMilter drives go-milter v0.5's server, the library of msgate and of
// the null milter, in both of the null milter's forms.
func TestGoMilter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto gomilter.OptProtocol
		want  []string
	}{
		{"envelope", gomilter.OptNoHelo | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoBody | gomilter.OptNoUnknown | gomilter.OptNoData, []string{
			"connect:client.test,192.0.2.1,192.0.2.1",
			"mail:alice@example.org,alice@example.org,ABC123",
			"rcpt:bob@outlook.com", "rcpt:carol@example.net",
			"eom:ABC123",
		}},
		{"full", 0, []string{
			"connect:client.test,192.0.2.1,192.0.2.1",
			"helo:client.test",
			"mail:alice@example.org,alice@example.org,ABC123",
			"rcpt:bob@outlook.com", "rcpt:carol@example.net",
			"header:From,alice@example.org", "header:Subject,hi", "eoh", "body:hello\r\n",
			"eom:ABC123",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var events []string
			srv := &gomilter.Server{
				NewMilter: func() gomilter.Milter { return recorder{&mu, &events} },
				Actions:   gomilter.OptAddHeader | gomilter.OptSetSymList,
				Protocol:  tc.proto,
				SymList:   map[gomilter.Stage][]string{gomilter.StageMailFrom: {"i", "{auth_authen}"}},
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan struct{})
			go func() { srv.Serve(ln); close(served) }()
			defer func() { ln.Close(); <-served }()

			c, err := Dial(context.Background(), "tcp", ln.Addr().String(), Options{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			open(t, c)
			res := send(t, c, testMessage())
			if got, want := outcomes(res), "rcpt:reply-4xx end-of-message:continue"; got != want {
				t.Errorf("outcomes %q, want %q", got, want)
			}
			if res.Mods.AddHeader != 1 {
				t.Errorf("mods %+v, want the added header", res.Mods)
			}
			c.Close()
			// The server has read everything once it sees the connection end.
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				got := strings.Join(events, "\n")
				mu.Unlock()
				if got == strings.Join(tc.want, "\n") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("callbacks:\n%s\nwant:\n%s", got, strings.Join(tc.want, "\n"))
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
