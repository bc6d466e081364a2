package load

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/msgate/msgate/policy/config"
)

// Config is one load run.
type Config struct {
	// Milter is the milter's socket in Postfix notation (inet:HOST:PORT,
	// inet6:[HOST]:PORT or unix:/PATH).
	Milter string
	// AllowRemote permits a milter that is not on loopback.
	AllowRemote bool
	// Sessions is the number of concurrent milter connections, each used
	// for many messages in turn, as one long SMTP session would.
	Sessions int
	// Reconnect opens a new milter connection for every message (dial,
	// negotiation, connect), as Postfix does for every SMTP connection:
	// what a milter spends per connection, measured with the message.
	Reconnect bool
	// Messages is the number of messages measured, shared by the sessions.
	Messages int
	// Warmup messages go first, split among the sessions, and are not
	// measured.
	Warmup int
	// RcptsMin and RcptsMax bound the recipients of a message (uniform).
	RcptsMin, RcptsMax int
	// MSFraction is the chance that a recipient is at a domain of
	// MSDomains rather than OtherDomains.
	MSFraction   float64
	MSDomains    []string
	OtherDomains []string
	// Accounts is the number of sending accounts; each message picks one.
	Accounts int
	// AuthFraction is the share of sessions that are authenticated: their
	// messages carry {auth_authen}, the account's address.
	AuthFraction float64
	// BodySize is the size of each message's body in bytes.
	BodySize int
	// Duration caps the whole run: it stops then, done or not.
	Duration time.Duration
	// Timeout bounds the milter's answers to one message (and the dial).
	Timeout time.Duration
	// Seed makes the workload reproducible.
	Seed uint64
	// Tags are copied into the report (e.g. server=msgate), for tables.
	Tags map[string]string
}

// DefaultConfig is the configuration of a run without flags.
func DefaultConfig() Config {
	return Config{
		Milter:       "inet:127.0.0.1:8895",
		Sessions:     32,
		Messages:     20000,
		Warmup:       1000,
		RcptsMin:     1,
		RcptsMax:     1,
		MSFraction:   0.5,
		MSDomains:    []string{"outlook.com", "hotmail.com", "live.com", "msn.com", "hotmail.co.uk", "outlook.fr"},
		OtherDomains: []string{"example.com", "example.net", "example.org", "mail.example", "corp.example"},
		Accounts:     1000,
		AuthFraction: 0.9,
		BodySize:     1024,
		Duration:     5 * time.Minute,
		Timeout:      10 * time.Second,
		Seed:         1,
	}
}

// Flags registers the configuration's flags on fs, with c's values as
// defaults.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Milter, "milter", c.Milter, "the milter's socket: inet:HOST:PORT, inet6:[HOST]:PORT or unix:/PATH")
	fs.BoolVar(&c.AllowRemote, "allow-remote", c.AllowRemote, "allow a milter that is not on loopback")
	fs.IntVar(&c.Sessions, "sessions", c.Sessions, "concurrent milter connections, each reused for many messages")
	fs.BoolVar(&c.Reconnect, "reconnect", c.Reconnect, "open a new milter connection for every message, as Postfix does for every SMTP connection")
	fs.IntVar(&c.Messages, "messages", c.Messages, "messages measured, in total")
	fs.IntVar(&c.Warmup, "warmup", c.Warmup, "messages sent first and not measured")
	fs.Var((*rcptRange)(c), "rcpts", "recipients per message: N, or MIN-MAX (uniform)")
	fs.Float64Var(&c.MSFraction, "ms-fraction", c.MSFraction, "share of recipients at Microsoft domains (0 to 1)")
	fs.Var((*domainList)(&c.MSDomains), "ms-domains", "comma-separated Microsoft-hosted recipient domains")
	fs.Var((*domainList)(&c.OtherDomains), "other-domains", "comma-separated recipient domains that are not Microsoft's")
	fs.IntVar(&c.Accounts, "accounts", c.Accounts, "number of sending accounts")
	fs.Float64Var(&c.AuthFraction, "auth-fraction", c.AuthFraction, "share of sessions that are authenticated (0 to 1)")
	fs.IntVar(&c.BodySize, "body", c.BodySize, "body size in bytes")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "stop after this long, even if messages remain")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "longest wait for the milter's answers to one message")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the workload")
	fs.Var((*tagMap)(&c.Tags), "tag", "KEY=VALUE copied into the report (repeatable)")
}

// Validate returns every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("-%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if network, address, err := config.ParseListen(c.Milter); err != nil {
		bad("milter", "%v", err)
	} else if network != "unix" && !c.AllowRemote && !isLoopback(address) {
		bad("milter", "%s is not on loopback; pass -allow-remote to load a remote milter", c.Milter)
	}
	if c.Sessions < 1 {
		bad("sessions", "must be at least 1, not %d", c.Sessions)
	}
	if c.Messages < 1 {
		bad("messages", "must be at least 1, not %d", c.Messages)
	}
	if c.Warmup < 0 {
		bad("warmup", "must not be negative, not %d", c.Warmup)
	}
	if c.RcptsMin < 1 || c.RcptsMax < c.RcptsMin {
		bad("rcpts", "want N or MIN-MAX with 1 <= MIN <= MAX, not %d-%d", c.RcptsMin, c.RcptsMax)
	}
	if !(c.MSFraction >= 0 && c.MSFraction <= 1) {
		bad("ms-fraction", "must be from 0 to 1, not %v", c.MSFraction)
	}
	if c.MSFraction > 0 && len(c.MSDomains) == 0 {
		bad("ms-domains", "empty, but -ms-fraction is %v", c.MSFraction)
	}
	if c.MSFraction < 1 && len(c.OtherDomains) == 0 {
		bad("other-domains", "empty, but -ms-fraction is %v", c.MSFraction)
	}
	for _, list := range []struct {
		flag    string
		domains []string
	}{{"ms-domains", c.MSDomains}, {"other-domains", c.OtherDomains}} {
		for _, d := range list.domains {
			if d == "" || strings.ContainsAny(d, "@ <>,\x00") {
				bad(list.flag, "%q is not a domain", d)
			}
		}
	}
	if c.Accounts < 1 {
		bad("accounts", "must be at least 1, not %d", c.Accounts)
	}
	if !(c.AuthFraction >= 0 && c.AuthFraction <= 1) {
		bad("auth-fraction", "must be from 0 to 1, not %v", c.AuthFraction)
	}
	if c.BodySize < 0 {
		bad("body", "must not be negative, not %d", c.BodySize)
	}
	if c.Duration <= 0 {
		bad("duration", "must be more than 0, not %v", c.Duration)
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be more than 0, not %v", c.Timeout)
	}
	return errors.Join(errs...)
}

// isLoopback reports whether host:port names a loopback address, by IP or
// as localhost; host names are not resolved.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// authSessions is how many sessions are authenticated.
func (c Config) authSessions() int {
	return int(float64(c.Sessions)*c.AuthFraction + 0.5)
}

type rcptRange Config

func (r *rcptRange) String() string {
	if r == nil {
		return ""
	}
	if r.RcptsMin == r.RcptsMax {
		return strconv.Itoa(r.RcptsMin)
	}
	return fmt.Sprintf("%d-%d", r.RcptsMin, r.RcptsMax)
}

func (r *rcptRange) Set(s string) error {
	first, last, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(first)
	if err != nil {
		return fmt.Errorf("want N or MIN-MAX, not %q", s)
	}
	hi := lo
	if isRange {
		if hi, err = strconv.Atoi(last); err != nil {
			return fmt.Errorf("want N or MIN-MAX, not %q", s)
		}
	}
	r.RcptsMin, r.RcptsMax = lo, hi
	return nil
}

type domainList []string

func (d *domainList) String() string {
	if d == nil {
		return ""
	}
	return strings.Join(*d, ",")
}

func (d *domainList) Set(s string) error {
	*d = nil
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*d = append(*d, strings.ToLower(f))
		}
	}
	return nil
}

type tagMap map[string]string

func (t *tagMap) String() string {
	if t == nil {
		return ""
	}
	var parts []string
	for k, v := range *t {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (t *tagMap) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, not %q", s)
	}
	if *t == nil {
		*t = make(map[string]string)
	}
	(*t)[k] = v
	return nil
}
