package mxdns

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New([]string{"Contoso.example"}).Serve(ctx, pc) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	c := &dns.Client{Timeout: 2 * time.Second}
	for _, tc := range []struct {
		name, qname string
		qtype       uint16
		want        string
	}{
		{"microsoft 365", "contoso.example.", dns.TypeMX, "contoso-example.mail.protection.outlook.com."},
		{"other", "Example.NET.", dns.TypeMX, "mx1.example.net."},
		{"not MX", "example.net.", dns.TypeA, ""},
	} {
		q := new(dns.Msg)
		q.SetQuestion(tc.qname, tc.qtype)
		var r *dns.Msg
		for range 50 { // the server may not be reading yet
			if r, _, err = c.Exchange(q, pc.LocalAddr().String()); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.Rcode != dns.RcodeSuccess {
			t.Errorf("%s: rcode %s", tc.name, dns.RcodeToString[r.Rcode])
		}
		got := ""
		if len(r.Answer) == 1 {
			mx, ok := r.Answer[0].(*dns.MX)
			if !ok || mx.Hdr.Ttl != TTL {
				t.Errorf("%s: answer %v", tc.name, r.Answer[0])
			} else {
				got = mx.Mx
			}
		}
		if got != tc.want || len(r.Answer) > 1 {
			t.Errorf("%s: MX %q (%d answers), want %q", tc.name, got, len(r.Answer), tc.want)
		}
	}
}
