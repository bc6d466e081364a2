package detect

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testServer is a DNS server on 127.0.0.1, UDP and TCP on one port, that
// counts the queries it receives per question name.
type testServer struct {
	addr string

	mu     sync.Mutex
	counts map[string]int // "udp example.com." -> n
}

// startServer serves h on a loopback port until the test ends.
func startServer(t testing.TB, h dns.HandlerFunc) *testServer {
	t.Helper()
	s := &testServer{counts: make(map[string]int)}
	counting := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if len(r.Question) == 1 {
			s.mu.Lock()
			s.counts[w.LocalAddr().Network()+" "+strings.ToLower(r.Question[0].Name)]++
			s.mu.Unlock()
		}
		h(w, r)
	})

	// The TCP listener needs the UDP socket's port, which may be taken.
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no loopback port free for both UDP and TCP")
	}
	s.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: counting}, {Listener: l, Handler: counting}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.ShutdownContext(ctx)
		})
	}
	return s
}

// queries returns how many queries for name arrived over any transport.
func (s *testServer) queries(name string) int {
	return s.queriesOver("udp", name) + s.queriesOver("tcp", name)
}

func (s *testServer) queriesOver(network, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[network+" "+dns.Fqdn(strings.ToLower(name))]
}

func (s *testServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

// zone is a canned answer for one name; names without one get NXDOMAIN
// without an SOA.
type zone struct {
	rcode  int    // default NOERROR
	mx     []mx   // in answer order
	cname  string // a CNAME placed before the MX records, which then belong to it
	ttl    uint32 // of every answer record
	soa    bool   // put an SOA in the authority section
	soaTTL uint32
	soaMin uint32
	drop   bool // never answer
}

type mx struct {
	pref uint16
	host string
}

// zoneHandler answers from zones, keyed by lower-case name without a
// trailing dot.
func zoneHandler(zones map[string]zone) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		z, ok := zones[strings.TrimSuffix(strings.ToLower(q.Name), ".")]
		if z.drop {
			return
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if !ok {
			m.Rcode = dns.RcodeNameError
		} else {
			m.Rcode = z.rcode
			owner := q.Name
			if z.cname != "" {
				m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME, z.ttl), Target: z.cname})
				owner = z.cname
			}
			for _, x := range z.mx {
				m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(owner, dns.TypeMX, z.ttl), Preference: x.pref, Mx: x.host})
			}
		}
		if z.soa {
			m.Ns = append(m.Ns, &dns.SOA{
				Hdr: hdr(q.Name, dns.TypeSOA, z.soaTTL), Ns: "ns.test.", Mbox: "host.test.",
				Serial: 1, Refresh: 7200, Retry: 3600, Expire: 1209600, Minttl: z.soaMin,
			})
		}
		w.WriteMsg(m)
	}
}

func hdr(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

type (
	dnsResponseWriter = dns.ResponseWriter
	dnsMsg            = dns.Msg
)

// reply returns an empty NOERROR answer to r.
func reply(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	return m
}

func mxRR(name string, ttl uint32, pref uint16, host string) *dns.MX {
	return &dns.MX{Hdr: hdr(name, dns.TypeMX, ttl), Preference: pref, Mx: host}
}
