package detect

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkDetectCacheHit measures the path every message to a known
// non-consumer domain takes: normalise, miss both lists, hit the cache.
func BenchmarkDetectCacheHit(b *testing.B) {
	for _, n := range []int{1, 1024} {
		b.Run(fmt.Sprintf("domains=%d", n), func(b *testing.B) {
			srv := startServer(b, func(w dnsResponseWriter, r *dnsMsg) {
				m := reply(r)
				m.Answer = append(m.Answer, mxRR(r.Question[0].Name, 3600, 10, "tenant.mail.protection.outlook.com."))
				w.WriteMsg(m)
			})
			d := newTestDetector(b, srv, Config{ExtraDomains: []string{"partner.example"}})
			domains := make([]string, n)
			for i := range domains {
				domains[i] = fmt.Sprintf("tenant%d.example", i)
				if _, err := d.Detect(context.Background(), domains[i], t0); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					res, err := d.Detect(ctx, domains[i%n], t0)
					if err != nil || !res.Cached {
						b.Errorf("Detect = %+v, %v; want a cache hit", res, err)
						return
					}
					i++
				}
			})
			b.StopTimer()
			if q := srv.total(); q != n {
				b.Errorf("%d queries during the benchmark, want %d", q, n)
			}
		})
	}
}

func BenchmarkDetectConsumerDomain(b *testing.B) {
	d, err := New(Config{Resolver: "127.0.0.1:1"}) // never asked
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, domain := range []string{"outlook.fr", "Hotmail.COM."} {
		b.Run(domain, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := d.Detect(ctx, domain, t0)
				if err != nil || res.Group != GroupConsumer {
					b.Fatalf("Detect(%q) = %+v, %v", domain, res, err)
				}
			}
		})
	}
}
