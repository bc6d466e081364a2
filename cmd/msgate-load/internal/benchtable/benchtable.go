// Package benchtable summarises repeated load runs into the table of
// msgate's benchmark: for each server (the report's "server" tag) and
// scenario ("scenario" tag), the median over repetitions of messages per
// second and of the latency percentiles, and the ratios of one server's
// medians to the references measured in the same run.
package benchtable

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/msgate/msgate/cmd/msgate-load/internal/load"
)

// Summary is the table in machine form.
type Summary struct {
	Generated time.Time  `json:"generated"`
	Servers   []Server   `json:"servers"`
	Scenarios []Scenario `json:"scenarios"`
	// Cells is indexed by server key, then scenario key.
	Cells map[string]map[string]*Cell `json:"cells"`
	// Ratios is indexed by "subject/reference", then scenario key: the
	// subject's median messages per second over the reference's.
	Ratios map[string]map[string]float64 `json:"ratios,omitempty"`
	// LatencyRatios is indexed like Ratios, for the scenarios of one
	// session: the subject's median p50 and p99 over the reference's
	// (below 1: the subject answers faster).
	LatencyRatios map[string]map[string][2]float64 `json:"latency_ratios,omitempty"`
}

// Server is a row: its key (the "server" tag) and the name shown
// ("server_name" tag, else the key).
type Server struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

// Scenario is a column.
type Scenario struct {
	Key      string `json:"key"`
	Name     string `json:"name"`
	Sessions int    `json:"sessions"`
	Rcpts    string `json:"rcpts_per_message"`
	Messages int    `json:"messages"`
}

// Cell is the repetitions of one scenario against one server.
type Cell struct {
	Runs      int       `json:"runs"`
	Rates     []float64 `json:"messages_per_second"`
	Rate      float64   `json:"median_messages_per_second"`
	P50       float64   `json:"median_p50_ms"`
	P90       float64   `json:"median_p90_ms"`
	P99       float64   `json:"median_p99_ms"`
	Max       float64   `json:"median_max_ms"`
	RoundTrip float64   `json:"round_trips_per_message"`
	Errors    int       `json:"errors"`
	// Incomplete counts runs stopped before all their messages were sent.
	Incomplete int            `json:"incomplete_runs"`
	Outcomes   map[string]int `json:"outcomes_last_run"`
}

// Summarize groups reports by their server and scenario tags, in the order
// they first appear, and computes the ratios of subject's medians to each
// reference present.
func Summarize(reports []*load.Report, subject string, references []string) (*Summary, error) {
	s := &Summary{Generated: time.Now().UTC(), Cells: make(map[string]map[string]*Cell)}
	samples := make(map[[2]string][]*load.Report)
	for _, r := range reports {
		server, scenario := r.Tags["server"], r.Tags["scenario"]
		if server == "" || scenario == "" {
			return nil, fmt.Errorf("a report of %s lacks the server or scenario tag", r.Milter)
		}
		if !slices.ContainsFunc(s.Servers, func(v Server) bool { return v.Key == server }) {
			s.Servers = append(s.Servers, Server{Key: server, Name: orKey(r.Tags["server_name"], server)})
		}
		if !slices.ContainsFunc(s.Scenarios, func(v Scenario) bool { return v.Key == scenario }) {
			s.Scenarios = append(s.Scenarios, Scenario{Key: scenario, Name: orKey(r.Tags["scenario_name"], scenario),
				Sessions: r.Sessions, Rcpts: r.Rcpts, Messages: r.Messages})
		}
		k := [2]string{server, scenario}
		samples[k] = append(samples[k], r)
	}
	for k, runs := range samples {
		c := &Cell{Runs: len(runs)}
		var p50, p90, p99, mx, rt []float64
		for _, r := range runs {
			c.Rates = append(c.Rates, r.Rate)
			p50, p90, p99 = append(p50, r.Latency.P50), append(p90, r.Latency.P90), append(p99, r.Latency.P99)
			mx, rt = append(mx, r.Latency.Max), append(rt, r.RoundTrips)
			c.Errors += r.Errors
			if r.Stopped != "" {
				c.Incomplete++
			}
			c.Outcomes = r.Outcomes
		}
		c.Rate, c.P50, c.P90, c.P99, c.Max, c.RoundTrip = Median(c.Rates), Median(p50), Median(p90), Median(p99), Median(mx), Median(rt)
		if s.Cells[k[0]] == nil {
			s.Cells[k[0]] = make(map[string]*Cell)
		}
		s.Cells[k[0]][k[1]] = c
	}
	for _, ref := range references {
		if s.Cells[subject] == nil || s.Cells[ref] == nil || ref == subject {
			continue
		}
		for _, sc := range s.Scenarios {
			a, b := s.Cells[subject][sc.Key], s.Cells[ref][sc.Key]
			if a == nil || b == nil || b.Rate == 0 {
				continue
			}
			key := subject + "/" + ref
			put(&s.Ratios, key, sc.Key, a.Rate/b.Rate)
			if sc.Sessions == 1 && b.P50 > 0 && b.P99 > 0 {
				put(&s.LatencyRatios, key, sc.Key, [2]float64{a.P50 / b.P50, a.P99 / b.P99})
			}
		}
	}
	return s, nil
}

// put sets (*m)[k1][k2], making the maps it needs.
func put[V any](m *map[string]map[string]V, k1, k2 string, v V) {
	if *m == nil {
		*m = make(map[string]map[string]V)
	}
	if (*m)[k1] == nil {
		(*m)[k1] = make(map[string]V)
	}
	(*m)[k1][k2] = v
}

func orKey(name, key string) string {
	if name == "" {
		return key
	}
	return name
}

// Median returns the median of v (the mean of the middle two for an even
// count), or 0 for none. v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteMarkdown writes the table and the ratios as Markdown. A column of
// one session gives the latency ratios (p50 / p99), then that of the
// rates; the others give the rates'.
func (s *Summary) WriteMarkdown(w io.Writer) {
	s.writeHeader(w, "server")
	for _, sv := range s.Servers {
		fmt.Fprintf(w, "| %s |", sv.Name)
		for _, sc := range s.Scenarios {
			c := s.Cells[sv.Key][sc.Key]
			switch {
			case c == nil:
				fmt.Fprint(w, " – |")
			case sc.Sessions == 1:
				fmt.Fprintf(w, " %.2f / %.2f ms (%s msg/s)%s |", c.P50, c.P99, thousands(c.Rate), flags(c))
			default:
				fmt.Fprintf(w, " %s msg/s%s |", thousands(c.Rate), flags(c))
			}
		}
		fmt.Fprintln(w)
	}
	if len(s.Ratios) == 0 {
		return
	}
	fmt.Fprintln(w)
	s.writeHeader(w, "ratio of medians")
	for _, sv := range s.Servers {
		for _, ref := range s.Servers {
			ratios, ok := s.Ratios[sv.Key+"/"+ref.Key]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "| %s / %s |", sv.Name, ref.Name)
			for _, sc := range s.Scenarios {
				r, ok := ratios[sc.Key]
				l, lok := s.LatencyRatios[sv.Key+"/"+ref.Key][sc.Key]
				switch {
				case ok && lok:
					fmt.Fprintf(w, " %.2f× / %.2f× (%.2f× msg/s) |", l[0], l[1], r)
				case ok:
					fmt.Fprintf(w, " %.2f× |", r)
				default:
					fmt.Fprint(w, " – |")
				}
			}
			fmt.Fprintln(w)
		}
	}
}

// writeHeader writes a table's header row, first then the scenarios, and
// its separator row.
func (s *Summary) writeHeader(w io.Writer, first string) {
	fmt.Fprintf(w, "| %s |", first)
	for _, sc := range s.Scenarios {
		fmt.Fprintf(w, " %s |", sc.Name)
	}
	fmt.Fprint(w, "\n|---|")
	fmt.Fprint(w, strings.Repeat("---|", len(s.Scenarios)))
	fmt.Fprintln(w)
}

// flags marks cells with errors or cut-short runs.
func flags(c *Cell) string {
	var f []string
	if c.Errors > 0 {
		f = append(f, plural(c.Errors, "error"))
	}
	if c.Incomplete > 0 {
		f = append(f, plural(c.Incomplete, "run")+" cut short")
	}
	if len(f) == 0 {
		return ""
	}
	return " (" + strings.Join(f, ", ") + ")"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// thousands formats a rate rounded to a whole number with comma separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
