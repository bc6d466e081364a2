package load

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/msgate/msgate/cmd/msgate-load/internal/milterclient"
)

// Report is what a run measured; its JSON form is what -json prints.
type Report struct {
	Milter     string            `json:"milter"`
	Tags       map[string]string `json:"tags,omitempty"`
	Start      time.Time         `json:"start"`
	Negotiated Negotiation       `json:"negotiated"`

	Sessions      int     `json:"sessions"`
	Reconnect     bool    `json:"reconnect"`
	AuthSessions  int     `json:"authenticated_sessions"`
	Messages      int     `json:"messages"`
	Warmup        int     `json:"warmup"`
	Rcpts         string  `json:"rcpts_per_message"`
	MSFraction    float64 `json:"ms_fraction"`
	Accounts      int     `json:"accounts"`
	BodySize      int     `json:"body_bytes"`
	DurationLimit string  `json:"duration_limit"`

	Completed  int     `json:"messages_completed"`
	Recipients int     `json:"recipients"`
	Elapsed    float64 `json:"elapsed_seconds"`
	Rate       float64 `json:"messages_per_second"`
	RcptRate   float64 `json:"recipients_per_second"`
	Latency    Latency `json:"latency_ms"`
	// RoundTrips is the average number of answers waited for per message.
	RoundTrips float64 `json:"round_trips_per_message"`

	// Outcomes counts recipients by the reply that decided them;
	// OutcomesByClass splits them into microsoft and other domains.
	Outcomes        map[string]int             `json:"outcomes"`
	OutcomesByClass Outcomes                   `json:"outcomes_by_class"`
	Aborted         int                        `json:"messages_aborted"`
	Modifications   milterclient.Modifications `json:"modifications"`

	// Errors is the number of sessions the milter failed; ErrorSamples
	// quotes some.
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Stopped says why the run ended before all messages were sent:
	// "duration" (the cap), "error" or "canceled".
	Stopped string `json:"stopped,omitempty"`
}

// Negotiation is what the milter agreed to, as seen by the first session.
type Negotiation struct {
	Version  uint32 `json:"version"`
	Actions  string `json:"actions"`
	Protocol string `json:"protocol"`
	// Sent lists the stages sent; Skipped those negotiated away or not in
	// the milter's protocol version; Unanswered those sent without
	// waiting for a reply.
	Sent       []string `json:"stages_sent"`
	Skipped    []string `json:"stages_skipped"`
	Unanswered []string `json:"stages_unanswered"`
	// Macros are the macro lists the milter asked for, by stage.
	Macros map[string][]string `json:"macros_requested,omitempty"`
}

func (r *Report) describe(cfg Config, c *milterclient.Conn) {
	r.Milter = cfg.Milter
	r.Tags = cfg.Tags
	r.Sessions, r.AuthSessions = cfg.Sessions, cfg.authSessions()
	r.Reconnect = cfg.Reconnect
	r.Messages, r.Warmup = cfg.Messages, cfg.Warmup
	r.Rcpts = (*rcptRange)(&cfg).String()
	r.MSFraction, r.Accounts, r.BodySize = cfg.MSFraction, cfg.Accounts, cfg.BodySize
	r.DurationLimit = cfg.Duration.String()

	v, a, p := c.Negotiated()
	n := Negotiation{Version: v, Actions: fmt.Sprintf("%#x", uint32(a)), Protocol: fmt.Sprintf("%#x", uint32(p)),
		Sent: []string{}, Skipped: []string{}, Unanswered: []string{}}
	for _, s := range milterclient.Stages {
		switch {
		case !c.Sends(s):
			n.Skipped = append(n.Skipped, s.String())
		case !c.Awaits(s):
			n.Sent = append(n.Sent, s.String())
			n.Unanswered = append(n.Unanswered, s.String())
		default:
			n.Sent = append(n.Sent, s.String())
		}
		if names, chosen := c.MacroList(s); chosen {
			if n.Macros == nil {
				n.Macros = make(map[string][]string)
			}
			n.Macros[s.String()] = names
		}
	}
	r.Negotiated = n
}

func (r *Report) collect(sessions []*session, elapsed time.Duration) {
	var lat []time.Duration
	var roundTrips uint64
	r.OutcomesByClass = make(Outcomes)
	for _, s := range sessions {
		lat = append(lat, s.lat...)
		roundTrips += s.roundTrips
		r.Completed += s.completed
		r.Recipients += s.rcpts
		r.Aborted += s.aborted
		r.Modifications.Add(s.mods)
		r.OutcomesByClass.merge(s.outcomes)
		if s.err != nil {
			r.Errors++
			if len(r.ErrorSamples) < maxErrorSamples {
				r.ErrorSamples = append(r.ErrorSamples, s.err.Error())
			}
		}
	}
	r.Outcomes = r.OutcomesByClass.total()
	r.Elapsed = elapsed.Seconds()
	if r.Elapsed > 0 {
		r.Rate = float64(r.Completed) / r.Elapsed
		r.RcptRate = float64(r.Recipients) / r.Elapsed
	}
	if r.Completed > 0 {
		r.RoundTrips = float64(roundTrips) / float64(r.Completed)
	}
	r.Latency = summarize(lat)
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) {
	n := r.Negotiated
	fmt.Fprintf(w, "milter %s: protocol version %d, actions %s, protocol flags %s\n", r.Milter, n.Version, n.Actions, n.Protocol)
	fmt.Fprintf(w, "  stages sent: %s; not sent: %s; sent without a reply: %s\n",
		listOrNone(n.Sent), listOrNone(n.Skipped), listOrNone(n.Unanswered))
	if len(n.Macros) > 0 {
		var parts []string
		for _, s := range milterclient.Stages {
			if names, ok := n.Macros[s.String()]; ok {
				parts = append(parts, fmt.Sprintf("%s [%s]", s, strings.Join(names, " ")))
			}
		}
		fmt.Fprintf(w, "  macros the milter asked for: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "load: %d sessions (%d authenticated), %d messages after %d warm-up, recipients per message: %s, %.0f%% at Microsoft, %d accounts, %d-byte bodies\n",
		r.Sessions, r.AuthSessions, r.Messages, r.Warmup, r.Rcpts, 100*r.MSFraction, r.Accounts, r.BodySize)
	if r.Reconnect {
		fmt.Fprintln(w, "  a new milter connection for every message")
	}
	fmt.Fprintf(w, "  %d messages (%d recipients) in %.3fs: %.0f msg/s, %.0f rcpt/s, %.2f round trips per message\n",
		r.Completed, r.Recipients, r.Elapsed, r.Rate, r.RcptRate, r.RoundTrips)
	l := r.Latency
	fmt.Fprintf(w, "  latency per message (ms): p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f\n", l.P50, l.P90, l.P99, l.Max, l.Mean)
	for _, class := range []string{ClassMicrosoft, ClassOther} {
		if byOutcome := r.OutcomesByClass[class]; len(byOutcome) > 0 {
			fmt.Fprintf(w, "  %s recipients: %s\n", class, countsText(byOutcome))
		}
	}
	if r.Aborted > 0 {
		fmt.Fprintf(w, "  messages aborted: %d\n", r.Aborted)
	}
	if m := modsText(r.Modifications); m != "" {
		fmt.Fprintf(w, "  edits at end of message: %s\n", m)
	}
	fmt.Fprintf(w, "  errors: %d\n", r.Errors)
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(w, "    %s\n", e)
	}
	switch r.Stopped {
	case "duration":
		fmt.Fprintf(w, "  stopped by the %s duration cap before all messages were sent\n", r.DurationLimit)
	case "canceled":
		fmt.Fprintln(w, "  canceled before all messages were sent")
	}
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, " ")
}

func countsText(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func modsText(m milterclient.Modifications) string {
	var parts []string
	for _, f := range []struct {
		name string
		n    int
	}{{"add header", m.AddHeader}, {"insert header", m.InsertHeader}, {"change header", m.ChangeHeader},
		{"quarantine", m.Quarantine}, {"add recipient", m.AddRcpt}, {"delete recipient", m.DelRcpt},
		{"replace body", m.ReplaceBody}, {"change sender", m.ChangeFrom}} {
		if f.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", f.name, f.n))
		}
	}
	return strings.Join(parts, ", ")
}
