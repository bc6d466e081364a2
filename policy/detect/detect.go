package detect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Group says which kind of Microsoft hosting matched. The set is bounded so
// that it can be a metrics label.
type Group string

const (
	GroupNone     Group = ""             // not Microsoft
	GroupConsumer Group = "consumer"     // Outlook.com: built-in domain list or MX *.olc.protection.outlook.com
	GroupM365     Group = "microsoft365" // Microsoft 365 / Exchange Online tenants: the other Microsoft MX suffixes
	GroupListed   Group = "listed"       // the admin's extra domains or extra MX suffixes
)

// Values of Result.Via other than "mx:<host>".
const (
	ViaInvalid      = "invalid"       // not a mail domain; nothing looked up
	ViaDomainList   = "domain-list"   // built-in consumer domain
	ViaExtraDomains = "extra-domains" // Config.ExtraDomains
	ViaNXDomain     = "nxdomain"      // the domain does not exist
	ViaNoMX         = "mx-none"       // the domain exists but has no MX records
	ViaNullMX       = "mx-null"       // null MX (RFC 7505): accepts no mail
	ViaOtherMX      = "mx-other"      // MX hosts, none of them Microsoft's
	ViaLookupFailed = "lookup-failed" // returned with an ErrLookup error
)

// Result is the decision for one domain.
type Result struct {
	Microsoft bool
	Group     Group
	// Via says how the decision was made, for logs: one of the Via*
	// constants or "mx:" followed by the first matching MX host in
	// preference order.
	Via string
	// Cached is true when the answer came from the MX cache. Domain-list
	// decisions are never cached and so never Cached.
	Cached bool
}

// Config configures a Detector. The zero value is valid and uses the
// system's resolver.
type Config struct {
	// Resolver is the DNS server for MX lookups, "ip:port" or "ip" (port
	// 53). Empty means the servers of /etc/resolv.conf, or 127.0.0.1:53 if
	// it cannot be read.
	Resolver string
	// ExtraDomains are more domains treated as Microsoft's (GroupListed).
	// Each matches itself only, not its subdomains, in any case.
	ExtraDomains []string
	// ExtraMXSuffixes are more MX host suffixes (GroupListed).
	// "example.net" and ".example.net" both match a host equal to
	// example.net or ending with .example.net.
	ExtraMXSuffixes []string
	// Timeout bounds one lookup including retries. Default 2s.
	Timeout time.Duration
	// MinTTL and MaxTTL clamp how long a positive answer is cached.
	// Defaults 60s and 6h.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long "no such domain" or "no MX" is cached.
	// The SOA of the answer can lower it, down to MinTTL. Default 15m.
	NegativeTTL time.Duration
	// MaxEntries bounds the MX cache. Default 100000.
	MaxEntries int
}

const (
	defaultTimeout     = 2 * time.Second
	defaultMinTTL      = time.Minute
	defaultMaxTTL      = 6 * time.Hour
	defaultNegativeTTL = 15 * time.Minute
	defaultMaxEntries  = 100000
)

// ErrLookup is wrapped by Detect's errors when the MX lookup failed
// (timeout, SERVFAIL, REFUSED, network error, or the caller's context ended
// first). Such outcomes are not cached.
var ErrLookup = errors.New("detect: MX lookup failed")

// Stats are counters since New.
type Stats struct {
	Lookups   uint64 // DNS lookups started (one per uncached domain, however many callers wait)
	CacheHits uint64 // Detect calls answered from the MX cache
	Coalesced uint64 // Detect calls that waited for a lookup another call started
	Failures  uint64 // lookups that ended in an ErrLookup error
}

// Detector decides whether recipient domains are Microsoft's. It is safe
// for concurrent use.
type Detector struct {
	servers     []string
	udp, tcp    *dns.Client
	timeout     time.Duration
	minTTL      time.Duration
	maxTTL      time.Duration
	negativeTTL time.Duration
	// listed holds the decisions made without DNS: the consumer domains
	// and the extra domains, in one map so that a miss costs one lookup.
	listed   map[string]Result
	suffixes []mxSuffix
	cache    *cache

	mu       sync.Mutex
	inflight map[string]*call

	lookups, coalesced, failures atomic.Uint64
}

// call is one lookup shared by every Detect call that asked for its domain
// while it ran. res and err are written before done is closed.
type call struct {
	done chan struct{}
	res  Result
	err  error
}

type mxSuffix struct {
	suffix string // lower case, no leading or trailing dot
	group  Group
}

// builtinSuffixes are Microsoft's MX host suffixes
// (shared/notes/microsoft.md, the same as KumoMTA's shaping rules).
var builtinSuffixes = []mxSuffix{
	{"olc.protection.outlook.com", GroupConsumer},
	{"mail.protection.outlook.com", GroupM365},
	{"mx.microsoft", GroupM365},
	{"mail.eo.outlook.com", GroupM365},
	{"mail.protection.office365.us", GroupM365},
	{"mail.protection.partner.outlook.cn", GroupM365},
}

// resolvConf is where the system's resolvers are read from.
const resolvConf = "/etc/resolv.conf"

// New checks cfg and returns a Detector. Every problem found is reported,
// joined into one error.
func New(cfg Config) (*Detector, error) {
	var errs []error
	d := &Detector{
		timeout:     orDefault(cfg.Timeout, defaultTimeout),
		minTTL:      orDefault(cfg.MinTTL, defaultMinTTL),
		maxTTL:      orDefault(cfg.MaxTTL, defaultMaxTTL),
		negativeTTL: orDefault(cfg.NegativeTTL, defaultNegativeTTL),
		listed:      make(map[string]Result, len(consumerDomains)+len(cfg.ExtraDomains)),
		suffixes:    builtinSuffixes,
		inflight:    make(map[string]*call),
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"timeout", cfg.Timeout}, {"min_ttl", cfg.MinTTL}, {"max_ttl", cfg.MaxTTL}, {"negative_ttl", cfg.NegativeTTL}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("detect: %s %v: must not be negative", f.name, f.v))
		}
	}
	if d.minTTL > d.maxTTL {
		errs = append(errs, fmt.Errorf("detect: min_ttl %v is above max_ttl %v", d.minTTL, d.maxTTL))
	}
	maxEntries := cfg.MaxEntries
	switch {
	case maxEntries < 0:
		errs = append(errs, fmt.Errorf("detect: max_entries %d: must not be negative", maxEntries))
	case maxEntries == 0:
		maxEntries = defaultMaxEntries
	}

	if cfg.Resolver == "" {
		d.servers = systemServers(resolvConf)
	} else if addr, err := parseResolver(cfg.Resolver); err != nil {
		errs = append(errs, fmt.Errorf("detect: resolver %q: %w", cfg.Resolver, err))
	} else {
		d.servers = []string{addr}
	}

	for i, s := range cfg.ExtraDomains {
		name, ok := normalize(s)
		if !ok {
			errs = append(errs, fmt.Errorf("detect: extra_domains[%d] %q: not a domain name", i, s))
			continue
		}
		d.listed[name] = Result{Microsoft: true, Group: GroupListed, Via: ViaExtraDomains}
	}
	if len(cfg.ExtraMXSuffixes) > 0 {
		d.suffixes = append([]mxSuffix(nil), builtinSuffixes...)
	}
	for i, s := range cfg.ExtraMXSuffixes {
		name, ok := normalize(strings.TrimPrefix(strings.TrimSpace(s), "."))
		if !ok {
			errs = append(errs, fmt.Errorf("detect: extra_mx_suffixes[%d] %q: not a host name suffix of two or more labels", i, s))
			continue
		}
		d.suffixes = append(d.suffixes, mxSuffix{name, GroupListed})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// A consumer domain the admin listed again stays a consumer domain.
	for _, name := range consumerDomains {
		d.listed[name] = Result{Microsoft: true, Group: GroupConsumer, Via: ViaDomainList}
	}

	d.cache = newCache(maxEntries)
	d.udp = &dns.Client{Net: "udp", Timeout: d.timeout}
	d.tcp = &dns.Client{Net: "tcp", Timeout: d.timeout}
	return d, nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// parseResolver accepts "ip:port", "[ipv6]:port" or a bare IP (port 53).
// Host names are refused: resolving the resolver would need a resolver.
func parseResolver(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), "53"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("want ip:port: %w", err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("want ip:port: bad port %q", port)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// systemServers returns the name servers of a resolv.conf file, or
// 127.0.0.1:53 if there are none.
func systemServers(path string) []string {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil || len(cc.Servers) == 0 {
		return []string{"127.0.0.1:53"}
	}
	servers := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		servers = append(servers, net.JoinHostPort(s, cc.Port))
	}
	return servers
}

// Detect decides whether domain is hosted by Microsoft. domain may have any
// case, a trailing dot and surrounding space; something that is not a mail
// domain is not Microsoft, without a lookup or an error.
//
// When the MX lookup fails, or ctx ends before it is done, the error wraps
// ErrLookup (and the context's error) and the Result says nothing. A lookup
// is shared by all concurrent calls for its domain and goes on after one
// caller gives up, bounded by Config.Timeout, so its answer is cached for
// the next message.
func (d *Detector) Detect(ctx context.Context, domain string, now time.Time) (Result, error) {
	name, ok := normalize(domain)
	if !ok {
		return Result{Via: ViaInvalid}, nil
	}
	if res, ok := d.listed[name]; ok {
		return res, nil
	}
	if res, ok := d.cache.get(name, now.UnixNano()); ok {
		return res, nil
	}
	return d.resolve(ctx, name, now)
}

func (d *Detector) resolve(ctx context.Context, name string, now time.Time) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{Via: ViaLookupFailed}, fmt.Errorf("%w: %s: %w", ErrLookup, name, err)
	}
	d.mu.Lock()
	c, ok := d.inflight[name]
	if ok {
		d.mu.Unlock()
		d.coalesced.Add(1)
		return wait(ctx, name, c)
	}
	// A lookup that finished between our cache miss and taking the lock
	// has already stored its answer (run stores before it unregisters).
	if res, ok := d.cache.get(name, now.UnixNano()); ok {
		d.mu.Unlock()
		return res, nil
	}
	c = &call{done: make(chan struct{})}
	d.inflight[name] = c
	d.mu.Unlock()

	d.lookups.Add(1)
	// The lookup must not die with this caller's context: others may be
	// waiting for it, and its answer is worth caching anyway.
	go d.run(context.WithoutCancel(ctx), name, now, c)
	return wait(ctx, name, c)
}

func wait(ctx context.Context, name string, c *call) (Result, error) {
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return Result{Via: ViaLookupFailed}, fmt.Errorf("%w: %s: %w", ErrLookup, name, ctx.Err())
	}
}

func (d *Detector) run(ctx context.Context, name string, now time.Time, c *call) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	res, ttl, err := d.lookup(ctx, name)
	if err != nil {
		d.failures.Add(1)
		res, err = Result{Via: ViaLookupFailed}, fmt.Errorf("%w: %s: %w", ErrLookup, name, err)
	} else {
		d.cache.put(name, res, now.UnixNano(), now.Add(ttl).UnixNano())
	}
	c.res, c.err = res, err
	d.mu.Lock()
	delete(d.inflight, name)
	d.mu.Unlock()
	close(c.done)
}

// Stats returns the counters.
func (d *Detector) Stats() Stats {
	return Stats{
		Lookups:   d.lookups.Load(),
		CacheHits: d.cache.hits(),
		Coalesced: d.coalesced.Load(),
		Failures:  d.failures.Load(),
	}
}

// MicrosoftDomains lists, sorted, every domain the detector knows to be
// Microsoft's at now: the listed ones and those cached from MX lookups.
func (d *Detector) MicrosoftDomains(now time.Time) []string {
	var out []string
	for name, res := range d.listed {
		if res.Microsoft {
			out = append(out, name)
		}
	}
	t := now.UnixNano()
	for i := range d.cache.shards {
		s := &d.cache.shards[i]
		s.mu.RLock()
		for name, e := range s.m {
			if e.res.Microsoft && e.expires > t {
				out = append(out, name)
			}
		}
		s.mu.RUnlock()
	}
	slices.Sort(out)
	return slices.Compact(out)
}
