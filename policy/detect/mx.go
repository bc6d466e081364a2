package detect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	// udpAttempts is how many UDP queries a lookup may send, each given an
	// equal share of what is left of the timeout, rotating over the servers.
	udpAttempts = 3
	// ednsSize is the DNS Flag Day 2020 buffer size: big enough for MX sets,
	// small enough to avoid IP fragmentation.
	ednsSize = 1232
)

// lookup queries the MX records of name and decides. ctx must carry a
// deadline. It returns how long the decision may be cached.
func (d *Detector) lookup(ctx context.Context, name string) (Result, time.Duration, error) {
	r, err := d.query(ctx, name)
	if err != nil {
		return Result{}, 0, err
	}
	res, ttl := d.decide(r)
	return res, ttl, nil
}

// query sends the MX query over UDP, retrying on timeouts and network
// errors, and repeats it over TCP when the answer was truncated. Only
// NOERROR and NXDOMAIN answers are returned.
func (d *Detector) query(ctx context.Context, name string) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeMX)
	q.RecursionDesired = true
	q.SetEdns0(ednsSize, false)

	var lastErr error
	sent := 0
	for attempt := 0; attempt < udpAttempts; attempt++ {
		deadline, _ := ctx.Deadline()
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			break
		}
		server := d.servers[attempt%len(d.servers)]
		tryCtx, cancel := context.WithTimeout(ctx, left/time.Duration(udpAttempts-attempt))
		sent++
		r, _, err := d.udp.ExchangeContext(tryCtx, q, server)
		cancel()
		if err == nil && r.Truncated {
			r, _, err = d.tcp.ExchangeContext(ctx, q, server)
		}
		if err == nil {
			err = checkAnswer(q, r)
		}
		if err == nil {
			return r, nil
		}
		lastErr = fmt.Errorf("%s: %w", server, err)
		// A server that answered SERVFAIL or REFUSED will most likely say
		// it again; only another server is worth asking.
		var rc rcodeError
		if errors.As(err, &rc) && attempt+1 >= len(d.servers) {
			break
		}
	}
	if lastErr == nil {
		return nil, context.DeadlineExceeded
	}
	if sent > 1 {
		return nil, fmt.Errorf("%d queries, last: %w", sent, lastErr)
	}
	return nil, lastErr
}

type rcodeError int

func (e rcodeError) Error() string {
	return "answered " + dns.RcodeToString[int(e)]
}

func checkAnswer(q, r *dns.Msg) error {
	if len(r.Question) > 0 {
		got, want := r.Question[0], q.Question[0]
		if got.Qtype != want.Qtype || !strings.EqualFold(got.Name, want.Name) {
			return fmt.Errorf("answer for %s %s, not the question asked", got.Name, dns.TypeToString[got.Qtype])
		}
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return rcodeError(r.Rcode)
	}
	return nil
}

// decide turns a NOERROR or NXDOMAIN answer into a decision and how long it
// may be cached.
func (d *Detector) decide(r *dns.Msg) (Result, time.Duration) {
	if r.Rcode == dns.RcodeNameError {
		return Result{Via: ViaNXDomain}, d.negativeTTLOf(r)
	}
	var mxs []*dns.MX
	ttl, seen := uint32(0), false
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.MX:
			mxs = append(mxs, rr)
		case *dns.CNAME:
			// A CNAME chain's TTLs bound the answer's too.
		default:
			continue
		}
		if h := rr.Header(); !seen || h.Ttl < ttl {
			ttl, seen = h.Ttl, true
		}
	}
	if len(mxs) == 0 {
		return Result{Via: ViaNoMX}, d.negativeTTLOf(r)
	}
	return d.match(mxs), clamp(time.Duration(ttl)*time.Second, d.minTTL, d.maxTTL)
}

// match returns the decision for the first MX host, in preference order,
// that has a Microsoft or extra suffix.
func (d *Detector) match(mxs []*dns.MX) Result {
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return cmp.Compare(a.Preference, b.Preference) })
	null := true
	for _, mx := range mxs {
		host := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		if host == "" {
			continue // null MX, RFC 7505
		}
		null = false
		for _, s := range d.suffixes {
			if matchSuffix(host, s.suffix) {
				return Result{Microsoft: true, Group: s.group, Via: "mx:" + host}
			}
		}
	}
	if null {
		return Result{Via: ViaNullMX}
	}
	return Result{Via: ViaOtherMX}
}

// negativeTTLOf is the configured negative TTL, lowered to the SOA's
// negative TTL (RFC 2308 §5: the smaller of the SOA's TTL and MINIMUM) but
// not below MinTTL.
func (d *Detector) negativeTTLOf(r *dns.Msg) time.Duration {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			s := min(soa.Hdr.Ttl, soa.Minttl)
			return min(max(time.Duration(s)*time.Second, d.minTTL), d.negativeTTL)
		}
	}
	return d.negativeTTL
}

func clamp(v, lo, hi time.Duration) time.Duration {
	return min(max(v, lo), hi)
}
