package milter

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/detect"
	"github.com/msgate/msgate/policy/state/memory"
)

type outlookOnly struct{}

func (outlookOnly) Detect(_ context.Context, domain string, _ time.Time) (detect.Result, error) {
	return detect.Result{Microsoft: domain == "outlook.com", Group: detect.GroupConsumer}, nil
}

func packet(code byte, data string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(b, code), data...)
}

// FuzzSession feeds arbitrary bytes to a session as if from an MTA. The
// session must neither panic nor leave a unit reserved once the connection
// is gone, whatever it was sent.
func FuzzSession(f *testing.F) {
	var opt [12]byte
	binary.BigEndian.PutUint32(opt[:], 6)
	binary.BigEndian.PutUint32(opt[4:], 0x1ff)
	binary.BigEndian.PutUint32(opt[8:], 0x1fffff)
	conn := "client.test\x004\x9c\x40192.0.2.1\x00"
	msg := func(login string) []byte {
		var b []byte
		b = append(b, packet('D', "M{auth_authen}\x00"+login+"\x00i\x00ABC123\x00")...)
		b = append(b, packet('M', "<"+login+"@example.org>\x00")...)
		b = append(b, packet('R', "<a@outlook.com>\x00")...)
		b = append(b, packet('R', "<b@example.net>\x00SIZE=10\x00")...)
		return b
	}
	whole := append(packet('O', string(opt[:])), packet('C', conn)...)
	whole = append(whole, msg("alice")...)
	whole = append(whole, packet('E', "")...)
	whole = append(whole, msg("bob")...)
	f.Add(whole)
	f.Add(append(append(packet('C', conn), msg("carol")...), packet('A', "")...))
	f.Add(append(packet('C', "x\x00U"), msg("")...))
	f.Add(append(msg("dave"), packet('Q', "")...))
	f.Add([]byte{0, 0, 0, 5, 'R', 'a', '@'})
	f.Add(packet('D', ""))

	store := memory.New()
	cfg := policy.Config{Rules: []policy.Rule{{Name: "hourly", Window: time.Hour, Limit: 1000, Action: policy.RuleDefer}}}
	srv := NewServer(Options{Policy: policy.NewEngine(cfg, outlookOnly{}, store)})
	now := time.Now()
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		sess := srv.open(server)
		done := make(chan struct{})
		go func() { sess.serve(); close(done) }()
		go io.Copy(io.Discard, client)
		client.Write(in)
		client.Close()
		<-done
		for _, login := range []string{"alice", "bob", "carol", "dave"} {
			u, err := store.Usage(context.Background(), "rate/hourly/"+login, time.Hour, now)
			if err != nil {
				t.Fatal(err)
			}
			if u.Reserved != 0 {
				t.Fatalf("%s: %d units still reserved after the connection closed", login, u.Reserved)
			}
		}
	})
}
