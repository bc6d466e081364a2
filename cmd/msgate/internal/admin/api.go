package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/feedback"
	"github.com/msgate/msgate/policy/state"
)

// CapStatus is the server-wide cap as status reports it.
type CapStatus struct {
	Enabled  bool   `json:"enabled"`
	Limit    int64  `json:"limit"`
	Used     int64  `json:"used"`
	Reserved int64  `json:"reserved"`
	Window   string `json:"window"`
	Action   string `json:"action"`
	RampDay  int    `json:"ramp_day,omitempty"`
	// CalendarDay is the calendar's ramp day when SNDS holds the ramp
	// back to RampDay (snds.ramp_green_only); 0 when it does not.
	CalendarDay int `json:"calendar_ramp_day,omitempty"`
	// Configured is the cap before Microsoft's throttle replies lowered it
	// by Factor, and Why says so; both empty when it is not lowered.
	Configured int64   `json:"configured_limit,omitempty"`
	Factor     float64 `json:"factor,omitempty"`
	Why        string  `json:"why,omitempty"`
}

// DeliveryStatus is Microsoft delivery's state as Microsoft's replies
// made it.
type DeliveryStatus struct {
	// Feed is false when neither [replies] listen nor log_file is set:
	// nothing is observed.
	Feed  bool      `json:"feed"`
	State string    `json:"state"` // normal, throttled or blocked
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	Rule  string    `json:"rule,omitempty"`
	Reply string    `json:"reply,omitempty"`
	// Held is how many messages wait in the hold queue for the resume.
	Held int `json:"held,omitempty"`
	// Paused is true while queued Microsoft mail is paused through the
	// transport map.
	Paused bool `json:"queue_paused,omitempty"`
}

// RuleStatus is one rate rule, with an account's use when about one.
type RuleStatus struct {
	Name     string `json:"name"`
	Window   string `json:"window"`
	Limit    int64  `json:"limit"`
	Action   string `json:"action"`
	Used     int64  `json:"used"`
	Reserved int64  `json:"reserved,omitempty"`
}

// AccountStatus is one account's standing.
type AccountStatus struct {
	Account    string            `json:"account"`
	Exempt     bool              `json:"exempt,omitempty"`
	Flag       *Flagged          `json:"flag,omitempty"`
	Complaints []state.Complaint `json:"complaints,omitempty"`
	Rules      []RuleStatus      `json:"rules"`
}

// Flagged is an account whose Microsoft mail is held back.
type Flagged struct {
	Account string `json:"account"`
	Action  string `json:"action"`
	// Reason is "manual" (msgate account flag) or "complaints".
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	Note   string    `json:"note,omitempty"`
	// Complaints counted by the threshold that flagged the account, and
	// that threshold's window.
	Complaints int    `json:"complaints,omitempty"`
	Within     string `json:"within,omitempty"`
}

func flaggedOf(account string, st policy.Standing) *Flagged {
	if !st.Flagged {
		return nil
	}
	if st.Manual != nil {
		return &Flagged{Account: account, Action: st.Manual.Action, Reason: st.Manual.Reason, Since: st.Manual.Since, Note: st.Manual.Note}
	}
	f := &Flagged{Account: account, Action: st.Action.String(), Reason: "complaints", Complaints: len(st.Complaints)}
	if st.Threshold != nil {
		f.Within = fmtDur(st.Threshold.Within)
	}
	if len(st.Complaints) > 0 {
		f.Since = st.Complaints[len(st.Complaints)-1].At
	}
	return f
}

// Status is what `msgate status -json` prints.
type Status struct {
	Time        time.Time       `json:"time"`
	Cap         CapStatus       `json:"cap"`
	Rules       []RuleStatus    `json:"rules"`
	TopAccounts []AccountStatus `json:"top_accounts"`
	Flagged     []Flagged       `json:"flagged"`
	Sessions    int             `json:"sessions"`
	Delivery    DeliveryStatus  `json:"microsoft_delivery"`
	SNDS        SNDSStatus      `json:"snds"`
}

// Server is the admin API's HTTP handler.
type Server struct {
	Engine   *policy.Engine
	Metrics  *Metrics
	Now      func() time.Time
	Sessions func() int
	// Delivery reports Microsoft delivery's state; nil reports none.
	Delivery func() DeliveryStatus
	Log      *zap.Logger
	// Ingest records one complaint report; an error means it was not
	// recorded and must be kept.
	Ingest func(ctx context.Context, raw []byte) (feedback.Result, error)
	// Changed is told each change of an account's standing made here;
	// nil tells nobody.
	Changed func(t policy.Transition, now time.Time)
	// Release releases held mail (msgate release); nil answers that this
	// daemon does not.
	Release func(ctx context.Context, req ReleaseRequest) (ReleaseReport, error)
	// SNDS reports the last SNDS import; nil reports it off.
	SNDS func() SNDSStatus
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/accounts/{account}", s.account)
	mux.HandleFunc("PUT /v1/accounts/{account}/flag", s.flag)
	mux.HandleFunc("DELETE /v1/accounts/{account}/flag", s.unflag)
	mux.HandleFunc("POST /v1/reports", s.report)
	mux.HandleFunc("POST /v1/release", s.release)
	return mux
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, code int, err error) {
	s.Log.Warn("admin request failed", zap.Error(err))
	writeJSON(w, code, apiError{Error: err.Error()})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	// The store answering a read is what "healthy" means for msgate.
	if _, err := s.Engine.Store().Usage(r.Context(), "cap", time.Hour, s.Now()); err != nil {
		http.Error(w, "state store unavailable", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// CapUsage reports the cap's use and limit now, for the metrics gauges.
func CapUsage(e *policy.Engine, now func() time.Time) func() (float64, float64) {
	return func() (float64, float64) {
		c, err := capStatus(context.Background(), e, now())
		if err != nil || !c.Enabled {
			return float64(c.Used + c.Reserved), 0
		}
		return float64(c.Used + c.Reserved), float64(c.Limit)
	}
}

func capStatus(ctx context.Context, e *policy.Engine, now time.Time) (CapStatus, error) {
	c := e.Config().Cap
	cs := CapStatus{Enabled: c.Enabled, Window: fmtDur(c.Window), Action: c.Action.String(), RampDay: e.RampDay(now)}
	if day := c.Day(now); day != cs.RampDay {
		cs.CalendarDay = day
	}
	if c.Enabled {
		cs.Limit = e.CapLimit(now)
		if conf := c.LimitOnDay(cs.RampDay); conf != cs.Limit {
			dl := e.Delivery()
			cs.Configured, cs.Factor, cs.Why = conf, dl.CapFactor, dl.CapReason
		}
	}
	u, err := e.Store().Usage(ctx, policy.CapKey, c.Window, now)
	cs.Used, cs.Reserved = u.Committed, u.Reserved
	return cs, err
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	ctx, now := r.Context(), s.Now()
	top := 10
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(w, http.StatusBadRequest, fmt.Errorf("top must be a whole number, not %q", v))
			return
		}
		top = n
	}
	cfg := s.Engine.Config()
	st := Status{Time: now, Sessions: s.Sessions(), Rules: []RuleStatus{}, TopAccounts: []AccountStatus{}, Flagged: []Flagged{},
		Delivery: DeliveryStatus{State: "normal"}}
	if s.Delivery != nil {
		st.Delivery = s.Delivery()
	}
	if s.SNDS != nil {
		st.SNDS = s.SNDS()
	}
	var err error
	if st.Cap, err = capStatus(ctx, s.Engine, now); err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	for _, r := range cfg.Rules {
		st.Rules = append(st.Rules, ruleStatus(r))
	}
	keys, err := s.Engine.Store().Scan(ctx, "rate/", now)
	if err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	st.TopAccounts = topAccounts(cfg, keys, top)
	flagged, err := s.flagged(ctx, now)
	if err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	st.Flagged = append(st.Flagged, flagged...)
	writeJSON(w, http.StatusOK, st)
}

// flagged lists every flagged account: flagged by hand, or by complaints
// within the longest threshold window.
func (s *Server) flagged(ctx context.Context, now time.Time) ([]Flagged, error) {
	names := map[string]bool{}
	store := s.Engine.Store()
	flags, err := store.ListFlags(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range flags {
		names[f.Account] = true
	}
	var longest time.Duration
	for _, t := range s.Engine.Config().Thresholds {
		longest = max(longest, t.Within)
	}
	list, err := store.ComplainedSince(ctx, now.Add(-longest))
	if err != nil {
		return nil, err
	}
	for _, c := range list {
		names[c.Account] = true
	}
	var out []Flagged
	for _, name := range slices.Sorted(maps.Keys(names)) {
		st, err := s.Engine.Standing(ctx, name, now)
		if err != nil {
			return nil, err
		}
		if f := flaggedOf(name, st); f != nil {
			out = append(out, *f)
		}
	}
	return out, nil
}

func ruleStatus(r policy.Rule) RuleStatus {
	return RuleStatus{Name: r.Name, Window: fmtDur(r.Window), Limit: r.Limit, Action: r.Action.String()}
}

// topAccounts groups counters by account and orders accounts by their use
// of the rule with the longest window, most first.
func topAccounts(cfg policy.Config, keys []state.KeyUsage, n int) []AccountStatus {
	byName := map[string]*AccountStatus{}
	var order []*AccountStatus
	rules := map[string]policy.Rule{}
	for _, r := range cfg.Rules {
		rules[r.Name] = r
	}
	for _, k := range keys {
		rest := strings.TrimPrefix(k.Key, "rate/")
		ruleName, account, ok := strings.Cut(rest, "/")
		r, known := rules[ruleName]
		if !ok || !known || k.Committed+k.Reserved == 0 {
			continue
		}
		a := byName[account]
		if a == nil {
			a = &AccountStatus{Account: account}
			byName[account] = a
			order = append(order, a)
		}
		rs := ruleStatus(r)
		rs.Used, rs.Reserved = k.Committed, k.Reserved
		a.Rules = append(a.Rules, rs)
	}
	var longest string
	var lw time.Duration
	for _, r := range cfg.Rules {
		if r.Window > lw {
			longest, lw = r.Name, r.Window
		}
	}
	use := func(a *AccountStatus) int64 {
		for _, r := range a.Rules {
			if r.Name == longest {
				return r.Used + r.Reserved
			}
		}
		return 0
	}
	slices.SortStableFunc(order, func(a, b *AccountStatus) int {
		return cmp.Or(cmp.Compare(use(b), use(a)), strings.Compare(a.Account, b.Account))
	})
	out := []AccountStatus{}
	for i, a := range order {
		if i == n {
			break
		}
		out = append(out, *a)
	}
	return out
}

func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	ctx, now, name := r.Context(), s.Now(), r.PathValue("account")
	cfg := s.Engine.Config()
	as := AccountStatus{Account: name, Rules: []RuleStatus{}, Exempt: slices.Contains(cfg.Exempt, strings.ToLower(name))}
	for _, rule := range cfg.Rules {
		u, err := s.Engine.Store().Usage(ctx, rule.Key(name), rule.Window, now)
		if err != nil {
			s.fail(w, http.StatusServiceUnavailable, err)
			return
		}
		rs := ruleStatus(rule)
		rs.Used, rs.Reserved = u.Committed, u.Reserved
		as.Rules = append(as.Rules, rs)
	}
	st, err := s.Engine.Standing(ctx, name, now)
	if err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	as.Flag, as.Complaints = flaggedOf(name, st), st.Complaints
	writeJSON(w, http.StatusOK, as)
}

// FlagRequest is the body of PUT /v1/accounts/{account}/flag.
type FlagRequest struct {
	Action string `json:"action"` // defer (default) or reject
	Note   string `json:"note"`
}

func (s *Server) flag(w http.ResponseWriter, r *http.Request) {
	var req FlagRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("reading the request: %w", err))
		return
	}
	if req.Action == "" {
		req.Action = "defer"
	}
	action, err := policy.ParseRuleAction(req.Action)
	if err != nil || action == policy.RuleMonitor {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("action must be defer or reject, not %q", req.Action))
		return
	}
	name := r.PathValue("account")
	t, err := s.Engine.Flag(r.Context(), name, action, req.Note, s.Now())
	if err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	s.changed(t)
	f := t.Now.Manual
	s.Log.Info("account flagged", zap.String("account", f.Account), zap.String("action", f.Action), zap.String("reason", f.Reason))
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) changed(t policy.Transition) {
	if s.Changed != nil {
		s.Changed(t, s.Now())
	}
}

// unflag ends a manual flag, and forgives the complaints received so far
// when they are what flags the account.
func (s *Server) unflag(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("account")
	t, err := s.Engine.Unflag(r.Context(), name, s.Now())
	switch {
	case errors.Is(err, policy.ErrNotFlagged):
		s.fail(w, http.StatusNotFound, fmt.Errorf("account %q is not flagged", name))
		return
	case err != nil:
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	s.changed(t)
	s.Log.Info("account unflagged", zap.String("account", name))
	writeJSON(w, http.StatusOK, map[string]string{"account": name, "flag": "cleared"})
}

// MaxReport bounds a report's size (report.MaxSize, and a little).
const MaxReport = 10<<20 + 1

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReport))
	if err != nil {
		s.fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("reading the report: %w", err))
		return
	}
	res, err := s.Ingest(r.Context(), raw)
	if err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// fmtDur prints whole days as "Nd", like the config does.
func fmtDur(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	s = strings.TrimSuffix(s, "0m")
	if s == "" {
		return "0s"
	}
	return s
}
