package detect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newTestDetector returns a Detector whose resolver is srv.
func newTestDetector(t testing.TB, srv *testServer, cfg Config) *Detector {
	t.Helper()
	cfg.Resolver = srv.addr
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second // generous: a slow CI machine must not fail a test that expects an answer
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

func checkResult(t *testing.T, domain string, got Result, err error, want Result) {
	t.Helper()
	if err != nil {
		t.Errorf("Detect(%q): unexpected error %v", domain, err)
		return
	}
	if got != want {
		t.Errorf("Detect(%q) = %+v, want %+v", domain, got, want)
	}
}

func TestConsumerDomainsList(t *testing.T) {
	list := ConsumerDomains()
	if !slices.IsSorted(list) {
		t.Error("ConsumerDomains is not sorted")
	}
	if len(slices.Compact(slices.Clone(list))) != len(list) {
		t.Error("ConsumerDomains has duplicates")
	}
	for _, d := range list {
		if n, ok := normalize(d); !ok || n != d {
			t.Errorf("ConsumerDomains has %q, not in canonical form", d)
		}
	}
	list[0] = "changed.example"
	if ConsumerDomains()[0] == "changed.example" {
		t.Error("ConsumerDomains returns the package's own slice")
	}
}

// TestConsumerDomainsCoverCorpus checks the list against the project's
// collected facts, when the shared corpus is checked out next to the repo.
func TestConsumerDomainsCoverCorpus(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "..", "shared", "corpus", "microsoft-consumer-domains.txt"))
	if err != nil {
		t.Skipf("corpus not available: %v", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		if _, ok := slices.BinarySearch(consumerDomains, line); !ok {
			t.Errorf("corpus domain %q missing from the built-in list", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Errorf("read only %d domains from the corpus", n)
	}
}

func TestDetectWithoutDNS(t *testing.T) {
	srv := startServer(t, zoneHandler(nil)) // NXDOMAIN for everything
	d := newTestDetector(t, srv, Config{
		ExtraDomains: []string{"Partner.Example", " other.example. ", "hotmail.com"},
	})
	consumer := Result{Microsoft: true, Group: GroupConsumer, Via: ViaDomainList}
	listed := Result{Microsoft: true, Group: GroupListed, Via: ViaExtraDomains}
	invalid := Result{Via: ViaInvalid}
	tests := []struct {
		domain string
		want   Result
	}{
		{"hotmail.com", consumer},
		{"HOTMAIL.COM", consumer},
		{" outlook.fr. ", consumer},
		{"live.co.uk", consumer},
		{"msn.com", consumer},
		{"livemail.tw", consumer},
		{"windowslive.com", consumer},
		{"partner.example", listed},
		{"PARTNER.example.", listed},
		{"other.example", listed},
		{"", invalid},
		{"[192.0.2.1]", invalid},
		{"192.0.2.1", invalid},
		{"not a domain", invalid},
	}
	for _, tt := range tests {
		got, err := d.Detect(context.Background(), tt.domain, t0)
		checkResult(t, tt.domain, got, err, tt.want)
	}
	for _, name := range ConsumerDomains() {
		got, err := d.Detect(context.Background(), name, t0)
		checkResult(t, name, got, err, consumer)
	}
	if n := srv.total(); n != 0 {
		t.Errorf("%d DNS queries for domains decided without DNS", n)
	}
	if s := d.Stats(); s != (Stats{}) {
		t.Errorf("Stats = %+v, want zero", s)
	}
}

func TestExtraDomainsMatchExactly(t *testing.T) {
	srv := startServer(t, zoneHandler(nil))
	d := newTestDetector(t, srv, Config{ExtraDomains: []string{"partner.example"}})
	for _, domain := range []string{"sub.partner.example", "xpartner.example", "partner.example.org", "mail.hotmail.com"} {
		got, err := d.Detect(context.Background(), domain, t0)
		checkResult(t, domain, got, err, Result{Via: ViaNXDomain})
		if srv.queries(domain) != 1 {
			t.Errorf("%s: want it looked up in DNS", domain)
		}
	}
}

func TestDetectMX(t *testing.T) {
	const ttl = 300
	zones := map[string]zone{
		"m365.example":         {mx: []mx{{10, "m365-example.mail.protection.outlook.com."}}, ttl: ttl},
		"olc.example":          {mx: []mx{{5, "hotmail-com.olc.protection.outlook.com."}}, ttl: ttl},
		"dane.example":         {mx: []mx{{0, "dane-example.a1b2c3.mx.microsoft."}}, ttl: ttl},
		"eo.example":           {mx: []mx{{10, "eo-example.mail.eo.outlook.com."}}, ttl: ttl},
		"gov.example":          {mx: []mx{{10, "gov-example.mail.protection.office365.us."}}, ttl: ttl},
		"cn.example":           {mx: []mx{{10, "cn-example.mail.protection.partner.outlook.cn."}}, ttl: ttl},
		"upper.example":        {mx: []mx{{10, "UPPER-Example.MAIL.Protection.Outlook.COM."}}, ttl: ttl},
		"other.example":        {mx: []mx{{10, "mx1.other.example."}, {20, "mx2.other.example."}}, ttl: ttl},
		"lookalike.example":    {mx: []mx{{10, "xmail.protection.outlook.com."}, {20, "a.mail.protection.outlook.com.evil.example."}}, ttl: ttl},
		"backup.example":       {mx: []mx{{10, "mx.backup.example."}, {20, "backup-example.mail.protection.outlook.com."}}, ttl: ttl},
		"order.example":        {mx: []mx{{20, "b.mail.protection.outlook.com."}, {10, "a.olc.protection.outlook.com."}}, ttl: ttl},
		"listed.example":       {mx: []mx{{10, "in1.smarthost.example.net."}}, ttl: ttl},
		"listed2.example":      {mx: []mx{{10, "gw.relay.example."}}, ttl: ttl},
		"listed-eq.example":    {mx: []mx{{10, "smarthost.example.net."}}, ttl: ttl},
		"nullmx.example":       {mx: []mx{{0, "."}}, ttl: ttl},
		"nomx.example":         {ttl: ttl},
		"cname.example":        {cname: "target.example.", mx: []mx{{10, "t.mail.protection.outlook.com."}}, ttl: ttl},
		"builtin-wins.example": {mx: []mx{{10, "x.mail.protection.outlook.com."}}, ttl: ttl},
	}
	srv := startServer(t, zoneHandler(zones))
	d := newTestDetector(t, srv, Config{
		ExtraMXSuffixes: []string{".smarthost.example.net", "relay.example", "x.mail.protection.outlook.com."},
	})
	tests := []struct {
		domain string
		want   Result
	}{
		{"m365.example", Result{true, GroupM365, "mx:m365-example.mail.protection.outlook.com", false}},
		{"olc.example", Result{true, GroupConsumer, "mx:hotmail-com.olc.protection.outlook.com", false}},
		{"dane.example", Result{true, GroupM365, "mx:dane-example.a1b2c3.mx.microsoft", false}},
		{"eo.example", Result{true, GroupM365, "mx:eo-example.mail.eo.outlook.com", false}},
		{"gov.example", Result{true, GroupM365, "mx:gov-example.mail.protection.office365.us", false}},
		{"cn.example", Result{true, GroupM365, "mx:cn-example.mail.protection.partner.outlook.cn", false}},
		{"Upper.Example.", Result{true, GroupM365, "mx:upper-example.mail.protection.outlook.com", false}},
		{"other.example", Result{false, GroupNone, ViaOtherMX, false}},
		{"lookalike.example", Result{false, GroupNone, ViaOtherMX, false}},
		{"backup.example", Result{true, GroupM365, "mx:backup-example.mail.protection.outlook.com", false}},
		{"order.example", Result{true, GroupConsumer, "mx:a.olc.protection.outlook.com", false}},
		{"listed.example", Result{true, GroupListed, "mx:in1.smarthost.example.net", false}},
		{"listed2.example", Result{true, GroupListed, "mx:gw.relay.example", false}},
		{"listed-eq.example", Result{true, GroupListed, "mx:smarthost.example.net", false}},
		{"nullmx.example", Result{false, GroupNone, ViaNullMX, false}},
		{"nomx.example", Result{false, GroupNone, ViaNoMX, false}},
		{"nxdomain.example", Result{false, GroupNone, ViaNXDomain, false}},
		{"cname.example", Result{true, GroupM365, "mx:t.mail.protection.outlook.com", false}},
		// A built-in suffix keeps its group even when an extra suffix
		// (x.mail.protection.outlook.com) also matches.
		{"builtin-wins.example", Result{true, GroupM365, "mx:x.mail.protection.outlook.com", false}},
	}
	for _, tt := range tests {
		got, err := d.Detect(context.Background(), tt.domain, t0)
		checkResult(t, tt.domain, got, err, tt.want)
		// The second answer comes from the cache, same decision.
		got, err = d.Detect(context.Background(), tt.domain, t0.Add(time.Second))
		want := tt.want
		want.Cached = true
		checkResult(t, tt.domain, got, err, want)
		if n := srv.queries(tt.domain); n != 1 {
			t.Errorf("%s: %d queries, want 1", tt.domain, n)
		}
	}
	s := d.Stats()
	if want := (Stats{Lookups: uint64(len(tests)), CacheHits: uint64(len(tests))}); s != want {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
}

// expiryCase checks that domain is answered from the cache until
// start+ttl and queried again at start+ttl.
func checkCachedFor(t *testing.T, d *Detector, srv *testServer, domain string, ttl time.Duration) {
	t.Helper()
	ctx := context.Background()
	before := srv.queries(domain)
	if _, err := d.Detect(ctx, domain, t0); err != nil {
		t.Fatalf("Detect(%q): %v", domain, err)
	}
	res, err := d.Detect(ctx, domain, t0.Add(ttl-time.Nanosecond))
	if err != nil {
		t.Fatalf("Detect(%q): %v", domain, err)
	}
	if !res.Cached || srv.queries(domain) != before+1 {
		t.Errorf("%s: not cached just before %v (Cached=%v, queries=%d)", domain, ttl, res.Cached, srv.queries(domain)-before)
	}
	res, err = d.Detect(ctx, domain, t0.Add(ttl))
	if err != nil {
		t.Fatalf("Detect(%q): %v", domain, err)
	}
	if res.Cached || srv.queries(domain) != before+2 {
		t.Errorf("%s: still cached at %v (Cached=%v, queries=%d)", domain, ttl, res.Cached, srv.queries(domain)-before)
	}
}

func TestPositiveTTL(t *testing.T) {
	m365 := []mx{{10, "x.mail.protection.outlook.com."}}
	zones := map[string]zone{
		"ttl300.example":   {mx: m365, ttl: 300},
		"ttl5.example":     {mx: m365, ttl: 5},
		"ttl0.example":     {mx: m365, ttl: 0},
		"ttl1d.example":    {mx: m365, ttl: 86400},
		"other.example":    {mx: []mx{{10, "mx.other.example."}}, ttl: 600},
		"cnamettl.example": {cname: "t.example.", mx: m365, ttl: 120},
	}
	srv := startServer(t, zoneHandler(zones))
	d := newTestDetector(t, srv, Config{MinTTL: time.Minute, MaxTTL: 6 * time.Hour})
	tests := []struct {
		domain string
		want   time.Duration
	}{
		{"ttl300.example", 300 * time.Second},
		{"ttl5.example", time.Minute},    // raised to MinTTL
		{"ttl0.example", time.Minute},    // raised to MinTTL
		{"ttl1d.example", 6 * time.Hour}, // lowered to MaxTTL
		{"other.example", 600 * time.Second},
		{"cnamettl.example", 120 * time.Second},
	}
	for _, tt := range tests {
		checkCachedFor(t, d, srv, tt.domain, tt.want)
	}
}

func TestPositiveTTLIsMinimumOfRecords(t *testing.T) {
	srv := startServer(t, func(w dnsResponseWriter, r *dnsMsg) {
		m := reply(r)
		m.Answer = append(m.Answer,
			mxRR(r.Question[0].Name, 900, 10, "a.mail.protection.outlook.com."),
			mxRR(r.Question[0].Name, 400, 20, "b.mail.protection.outlook.com."),
			mxRR(r.Question[0].Name, 3600, 30, "c.example."))
		w.WriteMsg(m)
	})
	d := newTestDetector(t, srv, Config{})
	checkCachedFor(t, d, srv, "multi.example", 400*time.Second)
}

func TestNegativeTTL(t *testing.T) {
	zones := map[string]zone{
		"nosoa.example":     {},
		"soa30.example":     {soa: true, soaTTL: 3600, soaMin: 30},
		"soa300.example":    {soa: true, soaTTL: 3600, soaMin: 300},
		"soa1h.example":     {soa: true, soaTTL: 3600, soaMin: 3600},
		"soattl120.example": {soa: true, soaTTL: 120, soaMin: 3600},
	}
	nx := func(name string, soaMin uint32) {
		zones[name] = zone{rcode: 3, soa: true, soaTTL: 86400, soaMin: soaMin}
	}
	nx("nx300.example", 300)
	nx("nx10.example", 10)
	srv := startServer(t, zoneHandler(zones))
	d := newTestDetector(t, srv, Config{MinTTL: time.Minute, NegativeTTL: 15 * time.Minute})
	tests := []struct {
		domain string
		want   time.Duration
	}{
		{"nosoa.example", 15 * time.Minute},
		{"soa30.example", time.Minute},
		{"soa300.example", 300 * time.Second},
		{"soa1h.example", 15 * time.Minute},
		{"soattl120.example", 120 * time.Second},
		{"nx300.example", 300 * time.Second},
		{"nx10.example", time.Minute},
		{"unknown.example", 15 * time.Minute}, // NXDOMAIN without SOA
	}
	for _, tt := range tests {
		checkCachedFor(t, d, srv, tt.domain, tt.want)
	}
}

func TestNXDomainCached(t *testing.T) {
	srv := startServer(t, zoneHandler(nil))
	d := newTestDetector(t, srv, Config{})
	ctx := context.Background()
	got, err := d.Detect(ctx, "gone.example", t0)
	checkResult(t, "gone.example", got, err, Result{Via: ViaNXDomain})
	got, err = d.Detect(ctx, "GONE.example.", t0.Add(time.Minute))
	checkResult(t, "gone.example", got, err, Result{Via: ViaNXDomain, Cached: true})
	if n := srv.queries("gone.example"); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
}

func TestLookupFailuresAreNotCached(t *testing.T) {
	zones := map[string]zone{
		"servfail.example": {rcode: 2},
		"refused.example":  {rcode: 5},
		"notimp.example":   {rcode: 4},
		"silent.example":   {drop: true},
	}
	srv := startServer(t, zoneHandler(zones))
	// A small timeout: the silent server costs the test 2 x 200ms.
	d := newTestDetector(t, srv, Config{Timeout: 200 * time.Millisecond})
	domains := []string{"servfail.example", "refused.example", "notimp.example", "silent.example"}
	for _, domain := range domains {
		for i := range 2 {
			res, err := d.Detect(context.Background(), domain, t0.Add(time.Duration(i)*time.Second))
			if !errors.Is(err, ErrLookup) {
				t.Errorf("Detect(%q) error = %v, want ErrLookup", domain, err)
			}
			if res.Microsoft || res.Cached {
				t.Errorf("Detect(%q) = %+v with an error", domain, res)
			}
		}
		// Not cached: the second call asked again.
		if n := srv.queries(domain); n < 2 {
			t.Errorf("%s: %d queries, want the failure retried by the next call", domain, n)
		}
	}
	if s := d.Stats(); s.Failures != uint64(2*len(domains)) || s.CacheHits != 0 {
		t.Errorf("Stats = %+v, want %d failures and no cache hits", s, 2*len(domains))
	}
	// One SERVFAIL from the only server is final: no retry within a lookup.
	if n := srv.queries("servfail.example"); n != 2 {
		t.Errorf("servfail.example: %d queries for 2 lookups, want 2", n)
	}
	// Silence is retried within the timeout.
	if n := srv.queries("silent.example"); n != 2*udpAttempts {
		t.Errorf("silent.example: %d queries for 2 lookups, want %d", n, 2*udpAttempts)
	}
}

func TestLookupErrorWrapsCause(t *testing.T) {
	srv := startServer(t, zoneHandler(map[string]zone{"silent.example": {drop: true}}))
	d := newTestDetector(t, srv, Config{Timeout: 200 * time.Millisecond})
	_, err := d.Detect(context.Background(), "silent.example", t0)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v does not wrap a net timeout", err)
	}
	if !strings.Contains(err.Error(), "silent.example") {
		t.Errorf("error %q does not name the domain", err)
	}
}

func TestUnreachableResolver(t *testing.T) {
	// A loopback UDP port with nobody listening: the kernel refuses.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	d, err := New(Config{Resolver: addr, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Detect(context.Background(), "example.com", t0); !errors.Is(err, ErrLookup) {
		t.Errorf("error = %v, want ErrLookup", err)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	srv := startServer(t, func(w dnsResponseWriter, r *dnsMsg) {
		m := reply(r)
		if w.LocalAddr().Network() == "udp" {
			m.Truncated = true
		} else {
			m.Answer = append(m.Answer, mxRR(r.Question[0].Name, 300, 10, "big.mail.protection.outlook.com."))
		}
		w.WriteMsg(m)
	})
	d := newTestDetector(t, srv, Config{})
	got, err := d.Detect(context.Background(), "big.example", t0)
	checkResult(t, "big.example", got, err, Result{true, GroupM365, "mx:big.mail.protection.outlook.com", false})
	if u, c := srv.queriesOver("udp", "big.example"), srv.queriesOver("tcp", "big.example"); u != 1 || c != 1 {
		t.Errorf("queries: %d over UDP, %d over TCP; want 1 and 1", u, c)
	}
}

func TestQueryIsRecursiveMX(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := startServer(t, func(w dnsResponseWriter, r *dnsMsg) {
		q := r.Question[0]
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %d rd=%v edns=%v", q.Name, q.Qtype, r.RecursionDesired, r.IsEdns0() != nil))
		mu.Unlock()
		w.WriteMsg(reply(r))
	})
	d := newTestDetector(t, srv, Config{})
	if _, err := d.Detect(context.Background(), "Query.Example.", t0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"query.example. 15 rd=true edns=true"}; !slices.Equal(seen, want) {
		t.Errorf("queries %q, want %q", seen, want)
	}
}

func TestConcurrentLookupsAreCoalesced(t *testing.T) {
	release := make(chan struct{})
	srv := startServer(t, func(w dnsResponseWriter, r *dnsMsg) {
		<-release
		m := reply(r)
		m.Answer = append(m.Answer, mxRR(r.Question[0].Name, 300, 10, "busy.mail.protection.outlook.com."))
		w.WriteMsg(m)
	})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open) // before the server's shutdown, which waits for handlers

	d := newTestDetector(t, srv, Config{Timeout: 30 * time.Second})
	const callers = 64
	var wg sync.WaitGroup
	results := make([]Result, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			results[i], errs[i] = d.Detect(context.Background(), "busy.example", t0)
		})
	}
	waitFor(t, func() bool { return d.Stats().Coalesced == callers-1 && srv.queries("busy.example") == 1 })
	open()
	wg.Wait()
	want := Result{true, GroupM365, "mx:busy.mail.protection.outlook.com", false}
	for i := range callers {
		checkResult(t, "busy.example", results[i], errs[i], want)
	}
	if n := srv.queries("busy.example"); n != 1 {
		t.Errorf("%d queries reached the server, want 1", n)
	}
	if s := d.Stats(); s.Lookups != 1 || s.Coalesced != callers-1 {
		t.Errorf("Stats = %+v, want 1 lookup and %d coalesced", s, callers-1)
	}
}

func TestCallerContextEndsLookupGoesOn(t *testing.T) {
	release := make(chan struct{})
	srv := startServer(t, func(w dnsResponseWriter, r *dnsMsg) {
		<-release
		m := reply(r)
		m.Answer = append(m.Answer, mxRR(r.Question[0].Name, 300, 10, "slow.mail.protection.outlook.com."))
		w.WriteMsg(m)
	})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	d := newTestDetector(t, srv, Config{Timeout: 30 * time.Second})

	// The first caller starts the lookup and gives up.
	ctx, cancel := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() {
		_, err := d.Detect(ctx, "slow.example", t0)
		firstDone <- err
	}()
	waitFor(t, func() bool { return srv.queries("slow.example") == 1 })
	// A second caller joins the same lookup.
	second := make(chan error, 1)
	var secondRes Result
	go func() {
		var err error
		secondRes, err = d.Detect(context.Background(), "slow.example", t0)
		second <- err
	}()
	waitFor(t, func() bool { return d.Stats().Coalesced == 1 })

	cancel()
	if err := <-firstDone; !errors.Is(err, ErrLookup) || !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: error %v, want ErrLookup and context.Canceled", err)
	}
	open()
	err := <-second
	checkResult(t, "slow.example", secondRes, err, Result{true, GroupM365, "mx:slow.mail.protection.outlook.com", false})
	got, err := d.Detect(context.Background(), "slow.example", t0)
	checkResult(t, "slow.example", got, err, Result{true, GroupM365, "mx:slow.mail.protection.outlook.com", true})
	if n := srv.queries("slow.example"); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
}

func TestContextDoneBeforeLookup(t *testing.T) {
	srv := startServer(t, zoneHandler(nil))
	d := newTestDetector(t, srv, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Detect(ctx, "new.example", t0); !errors.Is(err, ErrLookup) || !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want ErrLookup and context.Canceled", err)
	}
	if n := srv.total(); n != 0 {
		t.Errorf("%d queries sent for a caller already gone", n)
	}
	// Decisions that need no lookup do not care.
	got, err := d.Detect(ctx, "hotmail.com", t0)
	checkResult(t, "hotmail.com", got, err, Result{true, GroupConsumer, ViaDomainList, false})
}

func TestCacheBound(t *testing.T) {
	srv := startServer(t, zoneHandler(nil))
	d := newTestDetector(t, srv, Config{MaxEntries: 4, MinTTL: time.Second, NegativeTTL: time.Minute})
	ctx := context.Background()
	detect := func(domain string, now time.Time) Result {
		t.Helper()
		res, err := d.Detect(ctx, domain, now)
		if err != nil {
			t.Fatalf("Detect(%q): %v", domain, err)
		}
		return res
	}
	t1 := t0.Add(2 * time.Minute) // a and b have expired by then
	detect("a.example", t0)
	detect("b.example", t0)
	detect("c.example", t1)
	detect("d.example", t1)
	detect("e.example", t1) // full: evicts the expired a and b, not c or d
	if n := d.cache.len(); n != 3 {
		t.Errorf("cache holds %d entries, want 3", n)
	}
	for _, domain := range []string{"c.example", "d.example", "e.example"} {
		if !detect(domain, t1).Cached {
			t.Errorf("%s was evicted before expired entries", domain)
		}
	}
	for i := range 20 {
		detect(fmt.Sprintf("n%d.example", i), t1)
		if n := d.cache.len(); n > 4 {
			t.Fatalf("cache holds %d entries, bound is 4", n)
		}
	}
}

func TestCacheBoundSharded(t *testing.T) {
	for _, max := range []int{1, 7, 300, 1000, 100000} {
		c := newCache(max)
		total := 0
		for i := range c.shards {
			if c.shards[i].limit < 1 {
				t.Errorf("newCache(%d): shard %d holds nothing", max, i)
			}
			total += c.shards[i].limit
		}
		if total != max {
			t.Errorf("newCache(%d): shard limits add up to %d", max, total)
		}
		// Nothing expires (now = 0): eviction has to drop live entries.
		for i := range 2 * max {
			c.put(fmt.Sprintf("d%d.example", i), Result{}, 0, int64(i+1))
			if len(c.shards) == 1 && i < max && c.len() != i+1 {
				t.Fatalf("newCache(%d) evicted before it was full", max)
			}
		}
		if n := c.len(); n > max || n < max*3/4 {
			t.Errorf("newCache(%d) holds %d entries", max, n)
		}
	}
	if n := len(newCache(defaultMaxEntries).shards); n != maxShards {
		t.Errorf("default cache has %d shards, want %d", n, maxShards)
	}
}

func TestCacheEvictionOrder(t *testing.T) {
	c := newCache(4)
	has := func(now int64, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := c.get(k, now); !ok {
				t.Errorf("%s evicted", k)
			}
		}
	}
	c.put("a", Result{}, 0, 10)
	c.put("b", Result{}, 0, 50)
	c.put("c", Result{}, 0, 30)
	c.put("d", Result{}, 0, 40)
	c.put("e", Result{}, 0, 60) // nothing expired: a expires first, goes
	if _, ok := c.get("a", 0); ok {
		t.Error("a kept, want the entry closest to expiry evicted")
	}
	has(0, "b", "c", "d", "e")
	c.put("f", Result{}, 35, 70) // c has expired and goes, nothing else
	has(35, "b", "d", "e", "f")
	c.put("b", Result{}, 35, 80) // replacing needs no room
	has(35, "b", "d", "e", "f")
	if n := c.len(); n != 4 {
		t.Errorf("%d entries, want 4", n)
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings, one per expected problem; nil = valid
	}{
		{"zero", Config{Resolver: "127.0.0.1:53"}, nil},
		{"ipv6", Config{Resolver: "[::1]:5353"}, nil},
		{"bare ip", Config{Resolver: "192.0.2.1"}, nil},
		{"bare ipv6", Config{Resolver: "2001:db8::1"}, nil},
		{"host name", Config{Resolver: "dns.example:53"}, []string{"resolver"}},
		{"garbage", Config{Resolver: "not an address"}, []string{"resolver"}},
		{"port range", Config{Resolver: "127.0.0.1:65536"}, []string{"resolver"}},
		{"port zero", Config{Resolver: "127.0.0.1:0"}, []string{"resolver"}},
		{"port name", Config{Resolver: "127.0.0.1:domain"}, []string{"resolver"}},
		{"negative", Config{Resolver: "127.0.0.1:53", Timeout: -1, NegativeTTL: -time.Second}, []string{"timeout", "negative_ttl"}},
		{"min above max", Config{Resolver: "127.0.0.1:53", MinTTL: time.Hour, MaxTTL: time.Minute}, []string{"min_ttl"}},
		{"max entries", Config{Resolver: "127.0.0.1:53", MaxEntries: -1}, []string{"max_entries"}},
		{"extras", Config{
			Resolver:        "127.0.0.1:53",
			ExtraDomains:    []string{"ok.example", "[1.2.3.4]", ""},
			ExtraMXSuffixes: []string{".ok.example", "com", "bad suffix"},
		}, []string{"extra_domains[1]", "extra_domains[2]", "extra_mx_suffixes[1]", "extra_mx_suffixes[2]"}},
		{"everything", Config{Resolver: "x", MaxEntries: -5, ExtraDomains: []string{"-"}}, []string{"resolver", "max_entries", "extra_domains[0]"}},
	}
	for _, tt := range tests {
		d, err := New(tt.cfg)
		if tt.wantErr == nil {
			if err != nil || d == nil {
				t.Errorf("%s: New: %v", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: New accepted %+v", tt.name, tt.cfg)
			continue
		}
		if got := len(strings.Split(err.Error(), "\n")); got != len(tt.wantErr) {
			t.Errorf("%s: %d problems reported, want %d: %v", tt.name, got, len(tt.wantErr), err)
		}
		for _, s := range tt.wantErr {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", tt.name, err, s)
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	d, err := New(Config{Resolver: "127.0.0.1:53"})
	if err != nil {
		t.Fatal(err)
	}
	if d.timeout != 2*time.Second || d.minTTL != time.Minute || d.maxTTL != 6*time.Hour || d.negativeTTL != 15*time.Minute {
		t.Errorf("defaults: timeout %v, ttl [%v, %v], negative %v", d.timeout, d.minTTL, d.maxTTL, d.negativeTTL)
	}
	total := 0
	for i := range d.cache.shards {
		total += d.cache.shards[i].limit
	}
	if total != defaultMaxEntries {
		t.Errorf("default cache bound %d", total)
	}
}

func TestSystemServers(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("search example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := systemServers(conf), []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("systemServers = %q, want %q", got, want)
	}
	if got, want := systemServers(filepath.Join(dir, "missing")), []string{"127.0.0.1:53"}; !slices.Equal(got, want) {
		t.Errorf("systemServers(missing) = %q, want %q", got, want)
	}
}

func TestFailoverToSecondServer(t *testing.T) {
	bad := startServer(t, zoneHandler(map[string]zone{"x.example": {rcode: 2}}))
	good := startServer(t, zoneHandler(map[string]zone{"x.example": {mx: []mx{{10, "x.mail.protection.outlook.com."}}, ttl: 60}}))
	d := newTestDetector(t, bad, Config{})
	d.servers = []string{bad.addr, good.addr} // as if both came from resolv.conf
	got, err := d.Detect(context.Background(), "x.example", t0)
	checkResult(t, "x.example", got, err, Result{true, GroupM365, "mx:x.mail.protection.outlook.com", false})
	if bad.queries("x.example") != 1 || good.queries("x.example") != 1 {
		t.Errorf("queries: %d to the failing server, %d to the other; want 1 and 1", bad.queries("x.example"), good.queries("x.example"))
	}
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
