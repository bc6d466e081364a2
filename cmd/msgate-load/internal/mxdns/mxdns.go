// Package mxdns is a DNS server for benchmarks on loopback: it answers
// every MX question itself, so that a milter under load (msgate, rspamd)
// resolves recipient domains without a query leaving the machine.
//
// A domain listed as Microsoft 365 gets an MX under
// mail.protection.outlook.com, as a Microsoft 365 tenant has; every other
// domain gets "mx1.<domain>", which is nobody's in particular. Answers
// carry a TTL of an hour, so a resolver with a cache asks once per domain.
// Other question types get an empty answer (NOERROR, no records).
package mxdns

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// TTL of every answer, in seconds.
const TTL = 3600

// Server answers MX questions.
type Server struct {
	m365 map[string]bool
}

// New returns a server that places the given domains at Microsoft 365.
func New(m365 []string) *Server {
	s := &Server{m365: make(map[string]bool, len(m365))}
	for _, d := range m365 {
		s.m365[dns.Fqdn(strings.ToLower(d))] = true
	}
	return s
}

// MX returns the MX host the server answers for a domain (a FQDN).
func (s *Server) MX(domain string) string {
	domain = strings.ToLower(dns.Fqdn(domain))
	if s.m365[domain] {
		return strings.ReplaceAll(strings.TrimSuffix(domain, "."), ".", "-") + ".mail.protection.outlook.com."
	}
	return "mx1." + domain
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	r := new(dns.Msg)
	r.SetReply(q)
	r.Authoritative = true
	if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeMX {
		name := q.Question[0].Name
		r.Answer = append(r.Answer, &dns.MX{
			Hdr:        dns.RR_Header{Name: name, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: TTL},
			Preference: 10,
			Mx:         s.MX(name),
		})
	}
	w.WriteMsg(r)
}

// ListenAndServe answers on a UDP address until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, pc)
}

// Serve answers on pc until ctx ends; it closes pc.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	srv := &dns.Server{PacketConn: pc, Handler: s}
	stop := context.AfterFunc(ctx, func() {
		// Shutdown fails when the server has not started yet; closing the
		// socket ends it in any case.
		srv.Shutdown()
		pc.Close()
	})
	defer stop()
	err := srv.ActivateAndServe()
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("dns server stopped")
	}
	return err
}
