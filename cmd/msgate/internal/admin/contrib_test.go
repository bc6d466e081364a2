package admin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/msgate/msgate/cmd/msgate/internal/alert"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/feedback"
)

// The dashboard and the alert rules in contrib/ name msgate's metrics by
// hand; this keeps them from drifting from what NewMetrics registers.
var contribFiles = []string{"grafana/msgate.json", "prometheus/msgate.rules.yml"}

// Series that Prometheus itself makes, and labels it adds.
var (
	prometheusSeries = []string{"up"}
	targetLabels     = []string{"job", "instance"}
)

var (
	metricName = regexp.MustCompile(`\b(msgate_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+|up)\b`)
	selector   = regexp.MustCompile(`\b([a-z_][a-z0-9_]*)\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*$`)
	grouping   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	plainValue = regexp.MustCompile(`^[a-z0-9_.-]+(\|[a-z0-9_.-]+)*$`)
)

// family is what the test knows of one registered metric.
type family struct {
	help   string
	labels map[string]bool
	kind   dto.MetricType
}

// registered returns msgate's metric families, those of NewMetrics and
// those the daemon's parts register beside them, with a child of every
// labelled one so that Gather lists it.
func registered(t *testing.T) map[string]family {
	t.Helper()
	m := newTestMetrics()
	m.Observe("recipient", policy.Decision{Verdict: policy.Defer, Reason: policy.ReasonRateLimit}, time.Millisecond)
	m.ObserveReply("block", "block_list")
	m.ObserveSync(time.Millisecond)
	m.ObserveReport(feedback.Result{Outcome: feedback.OutcomeRecorded})
	m.SetDelivery(0, 1)
	m.SetSNDS(SNDSStatus{Enabled: true, IPs: []SNDSIP{{IP: "192.0.2.1"}}})
	alert.New(alert.Options{Registerer: m.Registerer()}) // as msgate serve does
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]family{}
	for _, mf := range mfs {
		f := family{help: mf.GetHelp(), labels: map[string]bool{}, kind: mf.GetType()}
		for _, met := range mf.GetMetric() {
			for _, lp := range met.GetLabel() {
				f.labels[lp.GetName()] = true
			}
		}
		fams[mf.GetName()] = f
	}
	return fams
}

// lookup finds the family of a series name: a histogram's _bucket, _sum
// and _count belong to it.
func lookup(fams map[string]family, name string) (family, bool) {
	if f, ok := fams[name]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := fams[base]; ok && (f.kind == dto.MetricType_HISTOGRAM || f.kind == dto.MetricType_SUMMARY) {
				if suffix == "_bucket" {
					f.labels = map[string]bool{"le": true}
					for l := range fams[base].labels {
						f.labels[l] = true
					}
				}
				return f, true
			}
		}
	}
	return family{}, false
}

// queries returns the PromQL in a contrib file: the dashboard's targets and
// variable queries, or the rules file as it is (its comments name no
// metric).
func queries(t *testing.T, name string, raw []byte) []string {
	t.Helper()
	if filepath.Ext(name) != ".json" {
		return []string{string(raw)}
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if len(out) == 0 {
		t.Fatalf("%s: no queries found", name)
	}
	return out
}

func TestContribMetrics(t *testing.T) {
	fams := registered(t)
	for _, name := range contribFiles {
		raw, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "contrib", name))
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, q := range queries(t, name, raw) {
			checkQuery(t, name, q, fams, used)
		}
		if len(used) == 0 {
			t.Errorf("%s names no msgate metric", name)
		}
	}
}

// checkQuery checks every series a query names, the labels it matches on
// and groups by, and plain label values against the metric's Help, which
// lists them.
func checkQuery(t *testing.T, file, q string, fams map[string]family, used map[string]bool) {
	t.Helper()
	labels := map[string]bool{}
	for _, l := range targetLabels {
		labels[l] = true
	}
	for _, m := range metricName.FindAllString(q, -1) {
		if slices.Contains(prometheusSeries, m) {
			continue
		}
		f, ok := lookup(fams, m)
		if !ok {
			t.Errorf("%s: %s is not a metric msgate registers", file, m)
			continue
		}
		used[m] = true
		for l := range f.labels {
			labels[l] = true
		}
	}
	for _, sel := range selector.FindAllStringSubmatch(q, -1) {
		f, ok := lookup(fams, sel[1])
		if !ok {
			continue // up, or reported above
		}
		for _, part := range strings.Split(sel[2], ",") {
			mt := matcher.FindStringSubmatch(part)
			if mt == nil {
				t.Errorf("%s: %s{%s}: cannot read matcher %q", file, sel[1], sel[2], part)
				continue
			}
			label, op, value := mt[1], mt[2], mt[3]
			if slices.Contains(targetLabels, label) {
				continue
			}
			if !f.labels[label] {
				t.Errorf("%s: %s has no label %q", file, sel[1], label)
				continue
			}
			if op == "!=" && value == "" || !plainValue.MatchString(value) || value == "true" || value == "false" {
				continue
			}
			for _, v := range strings.Split(value, "|") {
				if !strings.Contains(f.help, v) {
					t.Errorf("%s: %s{%s%s%q}: %q is not among the values its Help lists", file, sel[1], label, op, value, v)
				}
			}
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(q, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !labels[l] {
				t.Errorf("%s: grouping by %q, a label none of the query's msgate metrics has", file, l)
			}
		}
	}
}

// The dashboard imports into any Grafana: panels of unique ids, every one
// on the data source variable.
func TestContribDashboardShape(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "contrib", "grafana", "msgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct{ Name, Type string }
		}
		Panels []struct {
			ID         int
			Type       string
			Title      string
			Datasource struct{ UID string }
			Targets    []struct{ Datasource struct{ UID string } }
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct{ Name, Type string }) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}) {
		t.Error("no datasource variable")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q, %d targets", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a target's data source is %q", p.Title, tg.Datasource.UID)
			}
		}
	}
}
