package benchtable

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/msgate/msgate/cmd/msgate-load/internal/load"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		v    []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), tc.v...)
		if got := Median(tc.v); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.v, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.v[i] {
				t.Errorf("Median modified its input")
			}
		}
	}
}

func report(server, scenario string, sessions int, rate, p50, p99 float64) *load.Report {
	return &load.Report{
		Milter:   "inet:127.0.0.1:1",
		Tags:     map[string]string{"server": server, "scenario": scenario, "scenario_name": scenario + " name"},
		Sessions: sessions, Rcpts: "1", Messages: 20000,
		Rate: rate, Latency: load.Latency{P50: p50, P99: p99},
	}
}

func TestSummarize(t *testing.T) {
	var reports []*load.Report
	for i, rate := range []float64{9000, 11000, 10000} {
		reports = append(reports,
			report("null-envelope", "32x1", 32, 3*rate, 0, 0),
			report("rspamd", "32x1", 32, rate, 0, 0),
			report("msgate", "32x1", 32, 2.5*rate, 0, 0),
			report("msgate", "1x1", 1, 4000, 0.2+float64(i)/10, 0.9),
			report("rspamd", "1x1", 1, 2000, 0.6, 1.8))
	}
	reports[0].Errors = 1
	s, err := Summarize(reports, "msgate", []string{"null-envelope", "rspamd", "null-full"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Cells["rspamd"]["32x1"].Rate; got != 10000 {
		t.Errorf("rspamd median %v, want 10000", got)
	}
	if got := s.Cells["msgate"]["1x1"].P50; math.Abs(got-0.3) > 1e-9 {
		t.Errorf("msgate 1x1 median p50 %v, want 0.3", got)
	}
	if r := s.Ratios["msgate/rspamd"]["32x1"]; r != 2.5 {
		t.Errorf("msgate/rspamd %v, want 2.5", r)
	}
	if r := s.Ratios["msgate/null-envelope"]["32x1"]; math.Abs(r-2.5/3) > 1e-9 {
		t.Errorf("msgate/null-envelope %v", r)
	}
	if l := s.LatencyRatios["msgate/rspamd"]["1x1"]; math.Abs(l[0]-0.5) > 1e-9 || l[1] != 0.5 {
		t.Errorf("msgate/rspamd latency ratios %v, want 0.5 and 0.5", l)
	}
	if _, ok := s.LatencyRatios["msgate/rspamd"]["32x1"]; ok {
		t.Errorf("a latency ratio for 32 sessions")
	}
	if _, ok := s.Ratios["msgate/null-full"]; ok {
		t.Errorf("a ratio to a server that did not run")
	}
	if len(s.Servers) != 3 || s.Servers[0].Key != "null-envelope" || len(s.Scenarios) != 2 || s.Scenarios[1].Sessions != 1 {
		t.Errorf("servers %v scenarios %v", s.Servers, s.Scenarios)
	}
	var b bytes.Buffer
	s.WriteMarkdown(&b)
	out := b.String()
	for _, want := range []string{
		"| server | 32x1 name | 1x1 name |",
		"| rspamd | 10,000 msg/s | 0.60 / 1.80 ms (2,000 msg/s) |",
		"| msgate / null-envelope | 0.83× | – |",
		"| msgate | 25,000 msg/s | 0.30 / 0.90 ms (4,000 msg/s) |",
		"| null-envelope | 30,000 msg/s (1 error) | – |",
		"| msgate / rspamd | 2.50× | 0.50× / 0.50× (2.00× msg/s) |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if _, err := Summarize([]*load.Report{{Milter: "x"}}, "msgate", nil); err == nil {
		t.Error("a report without tags was accepted")
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 28600.6: "28,601", 1234567: "1,234,567"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}
