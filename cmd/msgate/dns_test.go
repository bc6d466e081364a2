package main

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// testDNS is an authoritative-looking DNS server on loopback serving MX
// records, so that no test asks the machine's resolver.
type testDNS struct {
	Addr string
	mu   sync.Mutex
	mx   map[string][]string // fqdn -> MX hosts
	hang map[string]bool     // never answer
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveDNS(t, pc)
}

// serveDNS answers on pc until the test ends.
func serveDNS(t *testing.T, pc net.PacketConn) *testDNS {
	t.Helper()
	d := &testDNS{Addr: pc.LocalAddr().String(), mx: map[string][]string{}, hang: map[string]bool{}}
	srv := &dns.Server{PacketConn: pc, Handler: d}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

func (d *testDNS) setMX(domain string, hosts ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mx[dns.Fqdn(domain)] = hosts
}

func (d *testDNS) setHang(domain string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hang[dns.Fqdn(domain)] = true
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	hosts, ok := d.mx[name]
	hang := d.hang[name]
	d.mu.Unlock()
	if hang {
		return
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if !ok {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns: "ns.test.", Mbox: "admin.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 60}}
	} else if q.Qtype == dns.TypeMX {
		for i, h := range hosts {
			m.Answer = append(m.Answer, &dns.MX{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 300},
				Preference: uint16(10 * (i + 1)), Mx: dns.Fqdn(h)})
		}
	}
	w.WriteMsg(m)
}
