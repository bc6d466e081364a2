package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/msgate/msgate/policy/replies"
)

// maxDNSTimeout bounds microsoft.dns_timeout: a lookup holds the SMTP session
// that waits for the decision.
const maxDNSTimeout = 30 * time.Second

// Validate returns every problem with c's values, in the order of Config's
// fields; nil means c can be used. It checks values only: unknown keys and
// wrong types are found by Load and Parse. An empty string or zero counts as
// a value, not as "use the default".
func (c *Config) Validate() []Problem {
	var v validator
	c.Milter.validate(&v)
	c.Admin.validate(&v)
	c.Log.validate(&v)
	c.State.validate(&v)
	c.Microsoft.validate(&v)
	validateRates(&v, c.Rate)
	c.Accounts.validate(&v)
	c.Mitigation.validate(&v)
	c.Feedback.validate(&v)
	c.Replies.validate(&v)
	c.Release.validate(&v, c.Replies)
	c.SNDS.validate(&v, c.Mitigation)
	c.Alerts.validate(&v)
	return v.problems
}

type validator struct{ problems []Problem }

func (v *validator) add(key, format string, args ...any) {
	v.problems = append(v.problems, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// oneOf checks that s is one of allowed.
func (v *validator) oneOf(key, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	list := strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
	v.add(key, "must be %s, not %q", list, s)
}

func (v *validator) positive(key string, d Duration) {
	if d <= 0 {
		v.add(key, "must be more than 0, not %s", d)
	}
}

func (v *validator) notNegative(key string, d Duration) {
	if d < 0 {
		v.add(key, "must not be negative, not %s", d)
	}
}

// absPath checks that path, when set, is absolute.
func (v *validator) absPath(key, path string) {
	if path != "" && !filepath.IsAbs(path) {
		v.add(key, "must be an absolute path, not %q", path)
	}
}

// program checks that a command, when set, names its program by an
// absolute path.
func (v *validator) program(key string, argv []string) {
	if len(argv) > 0 && !filepath.IsAbs(argv[0]) {
		v.add(key, "the program must be an absolute path, not %q", argv[0])
	}
}

func (m *Milter) validate(v *validator) {
	if _, _, err := ParseListen(m.Listen); err != nil {
		v.add("milter.listen", "%v", err)
	}
	if n, err := strconv.ParseUint(m.SocketMode, 8, 32); err != nil || n > 0o777 {
		v.add("milter.socket_mode", `must be octal permissions from "0000" to "0777", such as "0660", not %q`, m.SocketMode)
	}
	v.positive("milter.idle_timeout", m.IdleTimeout)
	v.positive("milter.write_timeout", m.WriteTimeout)
	v.notNegative("milter.shutdown_timeout", m.ShutdownTimeout)
	v.oneOf("milter.on_error", m.OnError, ActionDefer, ActionAccept)
}

func (a *Admin) validate(v *validator) {
	network, address, err := ParseListen(a.Listen)
	switch {
	case err != nil:
		v.add("admin.listen", "%v", err)
	case network != "unix":
		// The API can flag accounts: keep it off the network.
		host, _, _ := net.SplitHostPort(address)
		if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
			v.add("admin.listen", "an inet admin socket must be on a loopback address (127.0.0.1 or [::1]), not %q", host)
		}
	}
	if n, err := strconv.ParseUint(a.SocketMode, 8, 32); err != nil || n > 0o777 {
		v.add("admin.socket_mode", `must be octal permissions from "0000" to "0777", such as "0660", not %q`, a.SocketMode)
	}
}

func (l *Log) validate(v *validator) {
	v.oneOf("log.level", l.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", l.Format, "json", "console")
	v.positive("log.flush_interval", l.FlushInterval)
	if l.FlushInterval.D() > time.Minute {
		v.add("log.flush_interval", "must be at most 1m, not %s: lines wait that long in memory", l.FlushInterval)
	}
}

func (s *State) validate(v *validator) {
	switch s.Backend {
	case BackendMemory, BackendEmbedded, BackendRedis:
	default:
		v.add("state.backend", "unknown backend %q; use %q, %q or %q", s.Backend, BackendEmbedded, BackendMemory, BackendRedis)
	}
	if (s.Backend == BackendEmbedded || s.Backend == BackendRedis) && !filepath.IsAbs(s.Path) {
		v.add("state.path", "must be an absolute path, not %q", s.Path)
	}
	if s.Backend == BackendRedis {
		if u, err := url.Parse(s.RedisURL); err != nil {
			v.add("state.redis_url", "%v", err)
		} else if u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
			v.add("state.redis_url", `must start with "redis://", "rediss://" or "unix://", not %q`, s.RedisURL)
		}
		if s.RedisPrefix == "" || strings.ContainsAny(s.RedisPrefix, "{} ") {
			v.add("state.redis_prefix", "must be a word without braces or spaces, not %q", s.RedisPrefix)
		}
	}
	if d := s.Timeout.D(); d < 10*time.Millisecond || d > 30*time.Second {
		v.add("state.timeout", "must be from 10ms to 30s, not %s", s.Timeout)
	}
}

func (m *Microsoft) validate(v *validator) {
	if m.Resolver != "" {
		if err := checkResolver(m.Resolver); err != nil {
			v.add("microsoft.resolver", "%v", err)
		}
	}
	for i, d := range m.ExtraDomains {
		if err := checkMailDomain(d, false); err != nil {
			v.add(fmt.Sprintf("microsoft.extra_domains[%d]", i), "%v", err)
		}
	}
	for i, s := range m.ExtraMXSuffixes {
		if err := checkMailDomain(s, true); err != nil {
			v.add(fmt.Sprintf("microsoft.extra_mx_suffixes[%d]", i), "%v", err)
		}
	}
	v.oneOf("microsoft.on_dns_failure", m.OnDNSFailure, ActionAccept, ActionDefer)
	if m.DNSTimeout <= 0 || m.DNSTimeout.D() > maxDNSTimeout {
		v.add("microsoft.dns_timeout", "must be more than 0 and at most %s, not %s", Duration(maxDNSTimeout), m.DNSTimeout)
	}
	v.notNegative("microsoft.cache_min_ttl", m.CacheMinTTL)
	if m.CacheMaxTTL < m.CacheMinTTL {
		v.add("microsoft.cache_max_ttl", "must be at least cache_min_ttl (%s), not %s", m.CacheMinTTL, m.CacheMaxTTL)
	}
	v.notNegative("microsoft.negative_ttl", m.NegativeTTL)
	if m.CacheSize <= 0 {
		v.add("microsoft.cache_size", "must be at least 1, not %d", m.CacheSize)
	}
}

func validateRates(v *validator, rates []Rate) {
	first := map[string]int{} // name -> index of its first rule
	for i, r := range rates {
		key := fmt.Sprintf("rate[%d]", i)
		switch {
		case r.Name == "":
			v.add(key+".name", "required")
		case !isRuleName(r.Name):
			v.add(key+".name", "%q may hold only a-z, 0-9, _ and -", r.Name)
		default:
			if j, dup := first[r.Name]; dup {
				v.add(key+".name", "%q is already the name of rate[%d]", r.Name, j)
			} else {
				first[r.Name] = i
			}
		}
		if r.Window.D() < time.Second {
			v.add(key+".window", "must be at least 1s, not %s", r.Window)
		}
		if r.Limit < 1 {
			v.add(key+".limit", "must be at least 1, not %d", r.Limit)
		}
		v.oneOf(key+".action", r.Action, ActionDefer, ActionReject, ActionMonitor)
	}
}

func isRuleName(s string) bool {
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return s != ""
}

func (a *Accounts) validate(v *validator) {
	for i, e := range a.Exempt {
		key := fmt.Sprintf("accounts.exempt[%d]", i)
		switch {
		case e == "":
			v.add(key, "must not be empty")
		case strings.IndexFunc(e, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			v.add(key, "%q contains white space or a control character", e)
		default:
			if _, err := netip.ParsePrefix(e); err == nil {
				v.add(key, "%q is an address range; list client IPs one by one", e)
			}
		}
	}
}

// checkResolver accepts IP:PORT. A host name is refused: finding the
// resolver would itself need a resolver.
func checkResolver(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if _, perr := netip.ParseAddr(s); perr == nil || checkDomain(s) == nil {
			return fmt.Errorf("%q has no port; write %q", s, net.JoinHostPort(s, "53"))
		}
		return fmt.Errorf("%q is not HOST:PORT (write IPv6 addresses in brackets, as in [2001:db8::53]:53)", s)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if err := checkPort(port); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%q is not an IP address: the resolver must be given by address", host)
	}
	return nil
}

// checkMailDomain accepts a domain name of at least two labels, after one
// leading dot if suffix: ".com" alone would make half the world Microsoft's.
func checkMailDomain(s string, suffix bool) error {
	name := s
	if suffix {
		name = strings.TrimPrefix(s, ".")
	}
	if err := checkDomain(name); err != nil {
		return fmt.Errorf("%q is not a domain name: %w", s, err)
	}
	if !strings.Contains(strings.TrimSuffix(name, "."), ".") {
		example := "example.com"
		if suffix {
			example = ".mx.example.com"
		}
		return fmt.Errorf("%q has only one label; write at least two, as in %q", s, example)
	}
	return nil
}

// checkDomain checks the syntax of a host name (RFC 1123 §2.1) in ASCII;
// one trailing dot is allowed.
func checkDomain(s string) error {
	s = strings.TrimSuffix(s, ".")
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > 253:
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		switch {
		case label == "":
			return errors.New("empty label")
		case len(label) > 63:
			return fmt.Errorf("label %q is longer than 63 characters", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for _, c := range label {
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
			case c > unicode.MaxASCII:
				return errors.New("not ASCII; write an internationalised domain in its xn-- form")
			default:
				return fmt.Errorf("%q is not allowed in a domain name", c)
			}
		}
	}
	return nil
}

// normalize puts the lists in the form the rest of msgate compares against.
// Parse calls it on a valid Config only.
func (c *Config) normalize() {
	m := &c.Microsoft
	for i, d := range m.ExtraDomains {
		m.ExtraDomains[i] = strings.TrimSuffix(strings.ToLower(d), ".")
	}
	for i, s := range m.ExtraMXSuffixes {
		m.ExtraMXSuffixes[i] = "." + strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(s), "."), ".")
	}
	for i, e := range c.Accounts.Exempt {
		if ip, err := netip.ParseAddr(e); err == nil {
			e = ip.String()
		}
		c.Accounts.Exempt[i] = strings.ToLower(e)
	}
	c.Microsoft.ExtraDomains = nilIfEmpty(m.ExtraDomains)
	c.Microsoft.ExtraMXSuffixes = nilIfEmpty(m.ExtraMXSuffixes)
	c.Accounts.Exempt = nilIfEmpty(c.Accounts.Exempt)
	c.Mitigation.Ramp = nilIfEmpty(c.Mitigation.Ramp)
	c.Feedback.Retired = nilIfEmpty(c.Feedback.Retired)
	c.Feedback.OnFlag = nilIfEmpty(c.Feedback.OnFlag)
	r := &c.Replies
	r.Postmap, r.Reload, r.OnResume = nilIfEmpty(r.Postmap), nilIfEmpty(r.Reload), nilIfEmpty(r.OnResume)
	r.Release, r.OnEvent = nilIfEmpty(r.Release), nilIfEmpty(r.OnEvent)
	c.Alerts.Command, c.Alerts.Headers = nilIfEmpty(c.Alerts.Command), nilIfEmpty(c.Alerts.Headers)
	c.Release.Postqueue = nilIfEmpty(c.Release.Postqueue)
	c.SNDS.IPs = nilIfEmpty(c.SNDS.IPs)
}

// nilIfEmpty makes "key = []" and a missing key the same value.
func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func (m *Mitigation) validate(v *validator) {
	if m.DailyCap < 1 {
		v.add("mitigation.daily_cap", "must be at least 1, not %d", m.DailyCap)
	}
	if m.Window.D() < time.Minute {
		v.add("mitigation.window", "must be at least 1m, not %s", m.Window)
	}
	v.oneOf("mitigation.action", m.Action, ActionDefer, ActionReject, ActionHold, ActionMonitor)
	ramped := len(m.Ramp) > 0 || m.RampGrowth != 0
	if m.RampStart != "" {
		if _, err := time.Parse(time.DateOnly, m.RampStart); err != nil {
			v.add("mitigation.ramp_start", "must be a date as YYYY-MM-DD, not %q", m.RampStart)
		}
		if !ramped {
			v.add("mitigation.ramp_start", "is set but neither ramp nor ramp_growth is")
		}
	} else if ramped {
		v.add("mitigation.ramp_start", "is required with ramp or ramp_growth: the day the ramp begins, as YYYY-MM-DD")
	}
	if len(m.Ramp) > 0 && m.RampGrowth != 0 {
		v.add("mitigation.ramp", "set either ramp (a list of daily caps) or ramp_growth, not both")
	}
	for i, c := range m.Ramp {
		if c < 1 {
			v.add(fmt.Sprintf("mitigation.ramp[%d]", i), "must be at least 1, not %d", c)
		}
	}
	if m.RampGrowth != 0 {
		if m.RampGrowth <= 1 || m.RampGrowth > 10 {
			v.add("mitigation.ramp_growth", "must be more than 1 and at most 10, not %v", m.RampGrowth)
		}
		if m.RampCeiling < m.DailyCap {
			v.add("mitigation.ramp_ceiling", "must be at least daily_cap (%d) with ramp_growth, not %d", m.DailyCap, m.RampCeiling)
		}
	} else if m.RampCeiling != 0 {
		v.add("mitigation.ramp_ceiling", "only applies with ramp_growth")
	}
}

// minSecret is the shortest stamp secret accepted (stamp.MinSecretLen).
const minSecret = 16

func (f *Feedback) validate(v *validator) {
	if f.Secret != "" && len(f.Secret) < minSecret {
		v.add("feedback.secret", "must be at least %d bytes (try: openssl rand -base64 32), not %d", minSecret, len(f.Secret))
	}
	seen := map[string]bool{f.Secret: f.Secret != ""}
	for i, r := range f.Retired {
		key := fmt.Sprintf("feedback.retired[%d]", i)
		if len(r.Secret) < minSecret {
			v.add(key+".secret", "must be at least %d bytes, not %d", minSecret, len(r.Secret))
		} else if seen[r.Secret] {
			v.add(key+".secret", "is the same as another secret")
		}
		seen[r.Secret] = true
		if _, err := time.Parse(time.DateOnly, r.Until); err != nil {
			v.add(key+".until", "must be a date as YYYY-MM-DD, not %q", r.Until)
		}
	}
	if len(f.Retired) > 0 && f.Secret == "" {
		v.add("feedback.secret", "is required when retired secrets are listed")
	}
	if f.StampAll && f.Secret == "" {
		v.add("feedback.stamp_all", "needs feedback.secret: without a secret nothing is stamped")
	}
	v.notNegative("feedback.max_age", f.MaxAge)
	if f.Retention.D() < time.Hour {
		v.add("feedback.retention", "must be at least 1h, not %s", f.Retention)
	}
	v.absPath("feedback.spool", f.Spool)
	v.program("feedback.on_flag", f.OnFlag)
	for i, t := range f.Threshold {
		key := fmt.Sprintf("feedback.threshold[%d]", i)
		if t.Complaints < 1 {
			v.add(key+".complaints", "must be at least 1, not %d", t.Complaints)
		}
		if t.Within.D() < time.Minute {
			v.add(key+".within", "must be at least 1m, not %s", t.Within)
		} else if t.Within > f.Retention {
			v.add(key+".within", "%s is longer than feedback.retention (%s): older complaints are forgotten", t.Within, f.Retention)
		}
		v.oneOf(key+".action", t.Action, ActionDefer, ActionReject)
	}
}

func (r *Replies) validate(v *validator) {
	if r.Listen != "" {
		if _, _, err := ParseListen(r.Listen); err != nil {
			v.add("replies.listen", "%v", err)
		}
	}
	v.absPath("replies.log_file", r.LogFile)
	if r.LogFile != "" && r.Listen != "" {
		v.add("replies.log_file", "set replies.listen or replies.log_file, not both: every outcome would count twice")
	}
	v.absPath("replies.state_file", r.StateFile)
	v.oneOf("replies.paused_action", r.PausedAction, ActionDefer, ActionHold)
	v.absPath("replies.transport_file", r.TransportFile)
	for _, c := range []struct {
		key      string
		cmd      []string
		required bool
	}{{"replies.postmap", r.Postmap, r.TransportFile != ""}, {"replies.reload", r.Reload, false}, {"replies.on_resume", r.OnResume, false},
		{"replies.release", r.Release, r.PausedAction == ActionHold}, {"replies.on_event", r.OnEvent, false}} {
		if len(c.cmd) == 0 && c.required {
			v.add(c.key, "is required here: name the program as an absolute path")
		}
		v.program(c.key, c.cmd)
	}
	if !(r.CapFactor > 0 && r.CapFactor < 1) {
		v.add("replies.cap_factor", "must be more than 0 and less than 1, not %v", r.CapFactor)
	}
	if !(r.MinCapFactor > 0 && r.MinCapFactor <= 1) {
		v.add("replies.min_cap_factor", "must be more than 0 and at most 1, not %v", r.MinCapFactor)
	}
	v.notNegative("replies.probation", r.Probation)
	if r.CapRecovery.D() < time.Minute {
		v.add("replies.cap_recovery", "must be at least 1m, not %s", r.CapRecovery)
	}
	names := map[string]bool{}
	for i, rule := range r.Rule {
		key := fmt.Sprintf("replies.rule[%d]", i)
		if !isRuleName(rule.Name) {
			v.add(key+".name", "must be made of a-z, 0-9, _ and -, not %q", rule.Name)
		} else if names[rule.Name] {
			v.add(key+".name", "%q is used by an earlier rule", rule.Name)
		}
		names[rule.Name] = true
		if _, err := regexp.Compile(rule.Match); err != nil {
			v.add(key+".match", "is not a regular expression: %v", err)
		}
		v.oneOf(key+".class", rule.Class, replies.RuleClasses()...)
		v.oneOf(key+".action", rule.Action, replies.Actions()...)
		if rule.Count < 1 {
			v.add(key+".count", "must be at least 1, not %d", rule.Count)
		}
		if rule.Within.D() < time.Second {
			v.add(key+".within", "must be at least 1s, not %s", rule.Within)
		}
		if rule.Action == "suspend" && rule.Duration.D() < time.Second {
			v.add(key+".duration", "must be at least 1s with action suspend, not %s", rule.Duration)
		}
		if rule.Action != "suspend" && rule.Duration != 0 {
			v.add(key+".duration", "only applies with action suspend")
		}
	}
}

func (r *Release) validate(v *validator, replies Replies) {
	if r.Interval.D() < time.Minute {
		v.add("release.interval", "must be at least 1m, not %s", r.Interval)
	}
	if r.MaxPerRun < 1 {
		v.add("release.max_per_run", "must be at least 1, not %d", r.MaxPerRun)
	}
	if r.LeaveRoom < 0 {
		v.add("release.leave_room", "must be 0 or more, not %d", r.LeaveRoom)
	}
	if len(r.Postqueue) == 0 {
		v.add("release.postqueue", "is required: name the program as an absolute path")
	}
	v.program("release.postqueue", r.Postqueue)
	if r.Enabled && len(replies.Release) == 0 {
		v.add("release.enabled", "needs replies.release, the command that releases held mail")
	}
}
