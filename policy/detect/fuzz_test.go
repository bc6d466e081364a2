package detect

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzDetect feeds arbitrary recipient domains through normalisation, the
// lists, the cache and a loopback DNS server. Names under ms.test have a
// Microsoft 365 MX, names under fail.test get SERVFAIL, everything else
// NXDOMAIN.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{
		"", ".", "hotmail.com", " HOTMAIL.com. ", "partner.example", "sub.partner.example",
		"a.ms.test", "A.MS.TEST.", "x.fail.test", "relay.test", "[1.2.3.4]", "1.2.3.4",
		"bücher.de", "例え.テスト", "example\u3002com", "xn--.com", "xn--zz.com", "a..b", "-a.b",
		strings.Repeat("a", 64) + ".com", strings.Repeat("a.", 130) + "com", "\xff\xfe", "\u200d.com",
	} {
		f.Add(s)
	}
	srv := startServer(f, func(w dnsResponseWriter, r *dnsMsg) {
		name := strings.ToLower(r.Question[0].Name)
		m := reply(r)
		switch {
		case strings.HasSuffix(name, ".ms.test."):
			m.Answer = append(m.Answer, mxRR(name, 60, 10, "t.mail.protection.outlook.com."))
		case name == "relay.test.":
			m.Answer = append(m.Answer, mxRR(name, 60, 10, "in.relay.example.net."))
		case strings.HasSuffix(name, ".fail.test."):
			m.Rcode = 2
		default:
			m.Rcode = 3
		}
		w.WriteMsg(m)
	})
	d := newTestDetector(f, srv, Config{
		ExtraDomains:    []string{"partner.example"},
		ExtraMXSuffixes: []string{"relay.example.net"},
		MaxEntries:      64,
	})
	f.Fuzz(func(t *testing.T, domain string) {
		name, ok := normalize(domain)
		if ok {
			if again, ok2 := normalize(name); !ok2 || again != name {
				t.Fatalf("normalize(%q) = %q, but normalize(%q) = %q, %v", domain, name, name, again, ok2)
			}
			if scanName(name) != nameOK {
				t.Fatalf("normalize(%q) = %q: not canonical", domain, name)
			}
		}
		res, err := d.Detect(context.Background(), domain, t0.Add(time.Duration(len(domain))*time.Minute))
		if err != nil {
			if !errors.Is(err, ErrLookup) || !strings.HasSuffix(name, ".fail.test") {
				t.Fatalf("Detect(%q): unexpected error %v", domain, err)
			}
			return
		}
		if res.Microsoft != (res.Group != GroupNone) {
			t.Fatalf("Detect(%q) = %+v: Microsoft and Group disagree", domain, res)
		}
		switch {
		case !ok:
			if res != (Result{Via: ViaInvalid}) {
				t.Fatalf("Detect(%q) = %+v for an invalid domain", domain, res)
			}
		case res.Via == ViaDomainList:
			if _, listed := slices.BinarySearch(consumerDomains, name); !listed {
				t.Fatalf("Detect(%q) = %+v, but %q is not listed", domain, res, name)
			}
		case strings.HasSuffix(name, ".ms.test"):
			if res.Group != GroupM365 {
				t.Fatalf("Detect(%q) = %+v, want Microsoft 365", domain, res)
			}
		}
		if n := d.cache.len(); n > 64 {
			t.Fatalf("cache holds %d entries", n)
		}
	})
}
