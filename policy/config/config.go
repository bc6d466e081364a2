package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// DefaultPath is where the commands look for the configuration when no
// -config flag is given.
const DefaultPath = "/etc/msgate/msgate.toml"

// Config is msgate's whole configuration: the TOML file's tables, one field
// each. A Config from Load or Parse has its defaults filled in and has passed
// Validate.
type Config struct {
	Milter    Milter    `toml:"milter"`
	Admin     Admin     `toml:"admin"`
	Log       Log       `toml:"log"`
	State     State     `toml:"state"`
	Microsoft Microsoft `toml:"microsoft"`
	// Rate holds the per-account limits, all of which apply. A file without a
	// rate key gets the default rules; "rate = []" means no per-account limits.
	Rate     []Rate   `toml:"rate"`
	Accounts Accounts `toml:"accounts"`
	// Mitigation is the server-wide cap on Microsoft units that Microsoft's
	// "conditionally mitigated" answer calls for.
	Mitigation Mitigation `toml:"mitigation"`
	// Feedback is the complaint loop: stamping outgoing mail and acting on
	// complaint reports.
	Feedback Feedback `toml:"feedback"`

	// Replies is what Microsoft answers to deliveries, as Postfix reports
	// them, does to msgate.
	Replies Replies `toml:"replies"`
	// Release paces the release of held mail: msgate release, and the
	// daemon's own runs.
	Release Release `toml:"release"`
	// SNDS imports Microsoft's SNDS data about the server's IPs.
	SNDS SNDS `toml:"snds"`
	// Alerts tells the admin about what msgate notices: a command, an
	// HTTP POST, or both.
	Alerts Alerts `toml:"alerts"`
}

// Replies configures the feed of delivery outcomes and what msgate does
// about Microsoft's block and throttle replies.
type Replies struct {
	// Listen is where msgate answers Postfix's smtp_delivery_status_filter
	// socketmap lookups ("inet:127.0.0.1:8897"); empty turns the feed off.
	Listen string `toml:"listen"`
	// LogFile is an MTA log to follow for delivery outcomes instead
	// (Sendmail's, or Postfix's maillog_file); empty turns it off.
	LogFile string `toml:"log_file"`
	// StateFile keeps the delivery state across restarts; default
	// delivery.json beside state.path.
	StateFile string `toml:"state_file"`
	// PausedAction is what happens to new Microsoft mail while delivery is
	// suspended: "defer" (451 at RCPT) or "hold" (Postfix's hold queue,
	// released by msgate when delivery resumes).
	PausedAction string `toml:"paused_action"`
	// TransportFile is the Postfix transport map msgate rewrites (and
	// compiles with Postmap) to pause queued Microsoft mail; empty leaves
	// the queue alone.
	TransportFile string `toml:"transport_file"`
	// Postmap compiles TransportFile: the program and its arguments, the
	// file's path appended ("hash:" + path).
	Postmap []string `toml:"postmap"`
	// Reload makes Postfix read the new map at once (trivial-rewrite
	// otherwise notices it when it next restarts).
	Reload []string `toml:"reload"`
	// OnResume runs when delivery resumes, after held mail is released:
	// default postqueue -f, so that paused mail is tried at once.
	OnResume []string `toml:"on_resume"`
	// Release releases held mail by queue id: the program and its
	// arguments, one "-H ID" pair appended per message.
	Release []string `toml:"release"`
	// OnEvent runs on every transition (blocked, throttled, resumed,
	// cap_lowered) with the event as JSON on its standard input.
	OnEvent []string `toml:"on_event"`
	// CapFactor multiplies the effective mitigation cap on every lower_cap
	// trigger (0 < f < 1); MinCapFactor is as low as it goes;
	// CapRecovery is how long without one takes back one step.
	CapFactor    float64  `toml:"cap_factor"`
	MinCapFactor float64  `toml:"min_cap_factor"`
	CapRecovery  Duration `toml:"cap_recovery"`
	// Probation follows a suspension: one reply of the rule that
	// suspended delivery suspends it again; held mail is released after it.
	Probation Duration `toml:"probation"`
	// Rule lists the replies msgate recognises, tried in order; a file that
	// lists any replaces the built-in ones.
	Rule []ReplyRule `toml:"rule"`
}

// Release configures the paced release of held mail. The postsuper
// command is replies.release's.
type Release struct {
	// Enabled makes msgate serve release held mail every Interval, as
	// msgate release does.
	Enabled  bool     `toml:"enabled"`
	Interval Duration `toml:"interval"`
	// MaxPerRun bounds the messages one run releases.
	MaxPerRun int `toml:"max_per_run"`
	// LeaveRoom is the units of the cap a release leaves unused, for new
	// mail.
	LeaveRoom int64 `toml:"leave_room"`
	// Postqueue lists the queue (with -j) and asks for the delivery of
	// each released message (with -i ID).
	Postqueue []string `toml:"postqueue"`
}

// ReplyRule is one kind of reply and what Count of them within Within do.
type ReplyRule struct {
	Name     string   `toml:"name" msgate:"required"`
	Match    string   `toml:"match" msgate:"required"` // a regular expression (Go syntax) on "<status> <text>"
	Class    string   `toml:"class" msgate:"required"` // block, throttle, connection_limit, not_reputation, success
	Count    int      `toml:"count"`
	Within   Duration `toml:"within"`
	Action   string   `toml:"action"` // suspend, lower_cap or none
	Duration Duration `toml:"duration"`
}

func (r *ReplyRule) setDefaults() {
	r.Count, r.Within, r.Action = 1, Duration(time.Hour), "none"
}

// ReplyStateFile is where the delivery state is kept.
func (c *Config) ReplyStateFile() string { return c.besideState(c.Replies.StateFile, "delivery.json") }

// besideState is path, or when it is empty the file name next to
// state.path.
func (c *Config) besideState(path, name string) string {
	if path != "" {
		return path
	}
	return filepath.Join(filepath.Dir(c.State.Path), name)
}

// DefaultReplyRules are Microsoft's replies as ../notes and KumoMTA's
// shaping rules know them: 5 block-list replies in an hour suspend
// delivery for 2 h, 3 reputation throttles in an hour for 30 min, and
// every throttle lowers the cap.
func DefaultReplyRules() []ReplyRule {
	return []ReplyRule{
		{Name: "block_list", Class: "block", Count: 5, Within: Duration(time.Hour), Action: "suspend", Duration: Duration(2 * time.Hour),
			Match: `\b(S3150|S3140|SC-00[1-4]|OU-00[12]|DY-00[1-2])\b|\b5\.7\.(60[6-9]|6[1-4][0-9])\b`},
		{Name: "ip_reputation", Class: "throttle", Count: 3, Within: Duration(time.Hour), Action: "suspend", Duration: Duration(30 * time.Minute),
			Match: `\b4\.7\.65[01]\b|\b(S3113|S3114|S775|S843|S844)\b`},
		{Name: "ip_reputation_cap", Class: "throttle", Count: 1, Within: Duration(time.Hour), Action: "lower_cap",
			Match: `\b4\.7\.65[01]\b|\b(S3113|S3114|S775|S843|S844)\b`},
		{Name: "server_busy", Class: "throttle", Count: 1, Within: Duration(time.Hour), Action: "lower_cap",
			Match: `\b4\.7\.[56][0-9][0-9]\b.*(?i:server busy)`},
		{Name: "connection_limit", Class: "connection_limit", Count: 1, Within: Duration(time.Hour), Action: "none",
			Match: `\bS3115\b|\b4\.7\.652\b`},
		{Name: "not_reputation", Class: "not_reputation", Count: 1, Within: Duration(time.Hour), Action: "none",
			Match: `\b5\.7\.(509|515)\b|\b5\.1\.1\b`},
	}
}

// Feedback configures the stamp msgate adds to outgoing mail and what
// complaint reports do to the accounts they are attributed to.
type Feedback struct {
	// Secret keys the stamp (at least 16 bytes; e.g. the output of
	// "openssl rand -base64 32"). Empty turns stamping off; complaint
	// reports are then attributed only by Postfix's queue id.
	Secret string `toml:"secret"`
	// Retired are earlier secrets, still accepted for stamps made before
	// their Until date.
	Retired []RetiredSecret `toml:"retired"`
	// StampAll stamps all outgoing mail, not only mail with Microsoft
	// recipients.
	StampAll bool `toml:"stamp_all"`
	// MaxAge is how old a stamp may be when its report arrives.
	MaxAge Duration `toml:"max_age"`
	// Retention is how long msgate remembers which account sent which
	// queue id, and how long complaints are kept.
	Retention Duration `toml:"retention"`
	// Spool is the directory where msgate fbl leaves reports while the
	// daemon is down, and where unparseable reports are kept for the
	// admin. "" means "spool" next to state.path.
	Spool string `toml:"spool"`
	// OnFlag is a command (program and arguments) run with the event as
	// JSON on its standard input when complaints flag an account.
	OnFlag []string `toml:"on_flag"`
	// Threshold lists the complaint thresholds, checked from the strictest
	// down.
	Threshold []Threshold `toml:"threshold"`
}

// RetiredSecret is a former stamp secret.
type RetiredSecret struct {
	Secret string `toml:"secret" msgate:"required"`
	// Until is the last day (YYYY-MM-DD, UTC, inclusive) whose stamps the
	// secret still vouches for.
	Until string `toml:"until" msgate:"required"`
}

// UntilTime parses Until as the end of that day.
func (r RetiredSecret) UntilTime() time.Time {
	t, err := time.Parse(time.DateOnly, r.Until)
	if err != nil {
		return time.Time{}
	}
	return t.Add(Day - time.Second)
}

// Threshold flags an account with Complaints or more complaints within
// Within.
type Threshold struct {
	Complaints int      `toml:"complaints" msgate:"required"`
	Within     Duration `toml:"within" msgate:"required"`
	Action     string   `toml:"action"` // defer (default) or reject
}

func (t *Threshold) setDefaults() { t.Action = ActionDefer }

// SpoolDir is Spool, or its default next to the state file.
func (c *Config) SpoolDir() string { return c.besideState(c.Feedback.Spool, "spool") }

// Mitigation caps the whole server's Microsoft units in a rolling window,
// optionally growing day by day from a start date (a warm-up ramp).
type Mitigation struct {
	Enabled bool `toml:"enabled"`
	// DailyCap is the cap when there is no ramp, and the first day's cap
	// with a growth factor.
	DailyCap int64    `toml:"daily_cap"`
	Window   Duration `toml:"window"`
	// Action past the cap: defer, reject, hold (Postfix's hold queue) or
	// monitor (logged only).
	Action string `toml:"action"`
	// RampStart is the first day of the ramp, "YYYY-MM-DD" in UTC; "" means
	// no ramp.
	RampStart string `toml:"ramp_start"`
	// Ramp lists the caps of day 1, 2, 3...; the last one holds afterwards.
	Ramp []int64 `toml:"ramp"`
	// RampGrowth multiplies the cap each day from DailyCap, up to
	// RampCeiling. Exclusive with Ramp.
	RampGrowth  float64 `toml:"ramp_growth"`
	RampCeiling int64   `toml:"ramp_ceiling"`
}

// RampStartTime parses RampStart; ok is false when there is no ramp.
func (m Mitigation) RampStartTime() (t time.Time, ok bool) {
	if m.RampStart == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.DateOnly, m.RampStart)
	return t, err == nil
}

// Milter is the socket the MTA connects to and how sessions on it are run.
type Milter struct {
	// Listen is the socket in Postfix notation (see ParseListen).
	Listen string `toml:"listen"`
	// SocketMode is the octal permission of a unix socket, such as "0660".
	// Unused for inet sockets.
	SocketMode string `toml:"socket_mode"`
	// IdleTimeout is the longest wait for the MTA's next milter packet. It
	// should exceed Postfix's smtpd_timeout (300s): the MTA is silent while
	// its SMTP client is.
	IdleTimeout Duration `toml:"idle_timeout"`
	// WriteTimeout bounds sending one reply to the MTA.
	WriteTimeout Duration `toml:"write_timeout"`
	// ShutdownTimeout is how long SIGTERM waits for sessions in progress.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// OnError is the answer for a Microsoft recipient when the state store
	// fails: "defer" (fail closed) or "accept" (fail open).
	OnError string `toml:"on_error"`
}

// FileMode returns SocketMode as a permission. It returns 0660 when
// SocketMode is not valid octal, which Validate reports.
func (m Milter) FileMode() fs.FileMode {
	n, err := strconv.ParseUint(m.SocketMode, 8, 32)
	if err != nil || n > 0o777 {
		return 0o660
	}
	return fs.FileMode(n)
}

// Admin is the local admin API that msgate serve runs for the status and
// account commands, /metrics and /healthz.
type Admin struct {
	// Listen is a unix socket ("unix:/run/msgate/admin.sock") or a loopback
	// inet address ("inet:127.0.0.1:8896"). The default is
	// DefaultAdminListen().
	Listen string `toml:"listen"`
	// SocketMode is the octal permission of a unix socket. Whoever can
	// write to the socket can flag and unflag accounts.
	SocketMode string `toml:"socket_mode"`
}

// FileMode returns SocketMode as a permission (0660 when invalid, which
// Validate reports).
func (a Admin) FileMode() fs.FileMode { return Milter{SocketMode: a.SocketMode}.FileMode() }

// DefaultAdminListen is /run/msgate/admin.sock for root, or when that
// directory is there for the user (systemd's RuntimeDirectory=msgate);
// otherwise a socket in the user's runtime directory, so that the defaults
// work on a laptop. The commands compute the same default to find the
// daemon.
func DefaultAdminListen() string {
	const sys = "/run/msgate"
	if os.Geteuid() == 0 || syscall.Access(sys, 2 /* W_OK */) == nil {
		return "unix:" + sys + "/admin.sock"
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(x) {
		return "unix:" + filepath.Join(x, "msgate", "admin.sock")
	}
	return "unix:" + filepath.Join(os.TempDir(), "msgate-"+strconv.Itoa(os.Geteuid()), "admin.sock")
}

// Log sets how much msgate logs and in what form.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn or error
	Format string `toml:"format"` // json or console
	// FlushInterval is the longest a logged line waits in memory before
	// it is written: lines are written together, not one system call
	// and one wake-up of a writer each.
	FlushInterval Duration `toml:"flush_interval"`
}

// State chooses where counts and account standings are kept.
type State struct {
	// Backend names the store: "embedded" (a local file, durable),
	// "memory" (lost on restart) or "redis" (shared by several msgate).
	Backend string `toml:"backend"`
	// Path is the embedded backend's file. Its directory is created when
	// missing. The default is DefaultStatePath(). The redis backend keeps
	// its report spool beside it.
	Path string `toml:"path"`
	// RedisURL is where the redis backend's server is: redis://, rediss://
	// or unix:// (a single node); with master_name=NAME, a Sentinel
	// deployment; with addr= parameters, a Cluster.
	RedisURL string `toml:"redis_url"`
	// RedisPrefix starts every key, in braces (one Cluster hash slot).
	RedisPrefix string `toml:"redis_prefix"`
	// Timeout bounds each call to a remote backend; past it the decision
	// is milter.on_error's.
	Timeout Duration `toml:"timeout"`
}

// DefaultStatePath is /var/lib/msgate/state.db for root, or when that
// directory is there for the user (systemd's StateDirectory=msgate);
// otherwise a file in the user's state directory, so that the defaults work
// on a laptop.
func DefaultStatePath() string {
	const sys = "/var/lib/msgate"
	if os.Geteuid() == 0 || syscall.Access(sys, 2 /* W_OK */) == nil {
		return filepath.Join(sys, "state.db")
	}
	if x := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "msgate", "state.db")
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "msgate", "state.db")
	}
	return filepath.Join(os.TempDir(), "msgate-"+strconv.Itoa(os.Geteuid()), "state.db")
}

// Microsoft controls how recipients hosted by Microsoft are recognised:
// the domain lists and the MX lookups behind them.
type Microsoft struct {
	// Resolver is the DNS server for MX lookups as host:port; "" uses the
	// system's resolvers.
	Resolver string `toml:"resolver"`
	// ExtraDomains are more recipient domains to treat as Microsoft's.
	// Lower-cased, without a trailing dot.
	ExtraDomains []string `toml:"extra_domains"`
	// ExtraMXSuffixes are more MX host suffixes that mean Microsoft.
	// Lower-cased and always with a leading dot (".mx.example.net"), so that
	// strings.HasSuffix matches whole labels only.
	ExtraMXSuffixes []string `toml:"extra_mx_suffixes"`
	// OnDNSFailure decides for a recipient whose MX lookup fails: "accept"
	// (treat it as not Microsoft) or "defer" (answer 4xx so the client retries).
	OnDNSFailure string `toml:"on_dns_failure"`
	// DNSTimeout bounds one MX lookup.
	DNSTimeout Duration `toml:"dns_timeout"`
	// CacheMinTTL and CacheMaxTTL bound how long an MX answer is cached,
	// whatever its DNS TTL.
	CacheMinTTL Duration `toml:"cache_min_ttl"`
	CacheMaxTTL Duration `toml:"cache_max_ttl"`
	// NegativeTTL is how long a domain without MX (or that does not exist)
	// is cached.
	NegativeTTL Duration `toml:"negative_ttl"`
	// CacheSize is the most domains the MX cache holds.
	CacheSize int `toml:"cache_size"`
}

// Rate is one per-account limit: at most Limit units in any Window.
// The tag msgate:"required" makes the decoder report a missing key.
type Rate struct {
	Name   string   `toml:"name" msgate:"required"`   // unique, [a-z0-9_-]+; appears in logs and metrics
	Window Duration `toml:"window" msgate:"required"` // rolling window, at least 1s
	Limit  int64    `toml:"limit" msgate:"required"`  // units allowed in Window, at least 1
	Action string   `toml:"action"`                   // defer (the default), reject or monitor: what happens past the limit
}

// setDefaults fills the keys of a rule that may be left out.
func (r *Rate) setDefaults() { r.Action = ActionDefer }

// Accounts lists accounts with special standing.
type Accounts struct {
	// Exempt accounts are never limited: SASL logins, sender addresses or
	// client IPs, compared with the account as msgate derives it.
	// Lower-cased; IP addresses in canonical form ("2001:db8::1").
	Exempt []string `toml:"exempt"`
}

// Values accepted by the string settings.
const (
	ActionDefer   = "defer"
	ActionReject  = "reject"
	ActionMonitor = "monitor"
	ActionAccept  = "accept"
	ActionHold    = "hold"

	BackendMemory   = "memory"
	BackendEmbedded = "embedded"
	BackendRedis    = "redis"
)

// Default returns the built-in configuration: what a file that sets nothing
// means. Each call returns a new Config.
func Default() *Config {
	return &Config{
		Milter: Milter{
			Listen:          "inet:127.0.0.1:8895",
			SocketMode:      "0660",
			IdleTimeout:     Duration(6 * time.Minute),
			WriteTimeout:    Duration(30 * time.Second),
			ShutdownTimeout: Duration(10 * time.Second),
			OnError:         ActionDefer,
		},
		Admin: Admin{
			Listen:     DefaultAdminListen(),
			SocketMode: "0660",
		},
		Log: Log{
			Level:         "info",
			Format:        "json",
			FlushInterval: Duration(time.Second),
		},
		State: State{
			Backend:     BackendEmbedded,
			Path:        DefaultStatePath(),
			RedisURL:    "redis://127.0.0.1:6379/0",
			RedisPrefix: "msgate",
			Timeout:     Duration(time.Second),
		},
		Microsoft: Microsoft{
			OnDNSFailure: ActionAccept,
			DNSTimeout:   Duration(2 * time.Second),
			CacheMinTTL:  Duration(60 * time.Second),
			CacheMaxTTL:  Duration(6 * time.Hour),
			NegativeTTL:  Duration(15 * time.Minute),
			CacheSize:    100000,
		},
		Rate: defaultRates(),
		Feedback: Feedback{
			MaxAge:    Duration(60 * Day),
			Retention: Duration(30 * Day),
			Threshold: []Threshold{
				{Complaints: 1, Within: Duration(72 * time.Hour), Action: ActionDefer},
				{Complaints: 3, Within: Duration(7 * Day), Action: ActionReject},
			},
		},
		Replies: Replies{
			PausedAction: ActionDefer,
			Postmap:      []string{"/usr/sbin/postmap"},
			Reload:       []string{"/usr/sbin/postfix", "reload"},
			OnResume:     []string{"/usr/sbin/postqueue", "-f"},
			Release:      []string{"/usr/sbin/postsuper"},
			CapFactor:    0.5,
			MinCapFactor: 0.1,
			CapRecovery:  Duration(Day),
			Probation:    Duration(10 * time.Minute),
			Rule:         DefaultReplyRules(),
		},
		SNDS: defaultSNDS(),
		Release: Release{
			Interval:  Duration(15 * time.Minute),
			MaxPerRun: 100,
			Postqueue: []string{"/usr/sbin/postqueue"},
		},
		Mitigation: Mitigation{
			DailyCap: 500,
			Window:   Duration(Day),
			Action:   ActionDefer,
		},
		Alerts: defaultAlerts(),
	}
}

// defaultRates returns the per-account limits that apply when the file has
// no rate key.
func defaultRates() []Rate {
	return []Rate{
		{Name: "hourly", Window: Duration(time.Hour), Limit: 100, Action: ActionDefer},
		{Name: "daily", Window: Duration(Day), Limit: 1000, Action: ActionDefer},
	}
}
