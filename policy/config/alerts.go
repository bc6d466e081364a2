package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Alerts configures what msgate tells the admin about the events it
// notices (an account flagged or unflagged, the cap at 80% and 100%,
// Microsoft blocking or throttling the server and the end of it, an SNDS
// status change): a command, an HTTP POST, or both. Neither set turns
// alerts off.
type Alerts struct {
	// Command is run with each event as one JSON object on its standard
	// input: the program (an absolute path) and its arguments.
	Command []string `toml:"command"`
	// URL gets each event as the JSON body of a POST (http or https).
	URL string `toml:"url"`
	// Headers are sent with every POST, as "Name: value" (a token, say).
	Headers []string `toml:"headers"`
	// Timeout bounds one attempt (the command's run, the POST's answer),
	// and how long alerts still queued at shutdown are given.
	Timeout Duration `toml:"timeout"`
	// Retries is how many more attempts follow a failed one; Backoff is
	// the wait before the first, doubling for each next one (at most 5m).
	Retries int      `toml:"retries"`
	Backoff Duration `toml:"backoff"`
	// QueueSize is the most alerts waiting per target; when it is full the
	// oldest is dropped (and counted).
	QueueSize int `toml:"queue_size"`
}

func defaultAlerts() Alerts {
	return Alerts{Timeout: Duration(5 * time.Second), Retries: 3, Backoff: Duration(time.Second), QueueSize: 100}
}

// HTTPHeader is one of Headers, split.
type HTTPHeader struct{ Name, Value string }

// HTTPHeaders splits Headers (Validate has checked them).
func (a Alerts) HTTPHeaders() []HTTPHeader {
	var out []HTTPHeader
	for _, h := range a.Headers {
		name, value, _ := strings.Cut(h, ":")
		out = append(out, HTTPHeader{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	}
	return out
}

func (a *Alerts) validate(v *validator) {
	v.program("alerts.command", a.Command)
	if a.URL != "" {
		u, err := url.Parse(a.URL)
		switch {
		case err != nil:
			v.add("alerts.url", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Fragment != "":
			v.add("alerts.url", "must be an http or https URL such as %q, not %q", "https://alerts.example.org/msgate", u.Redacted())
		}
	}
	if len(a.Headers) > 0 && a.URL == "" {
		v.add("alerts.headers", "are sent with alerts.url, which is not set")
	}
	for i, h := range a.Headers {
		key := fmt.Sprintf("alerts.headers[%d]", i)
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		switch {
		case !ok || !isToken(name):
			v.add(key, `must be "Name: value", such as "Authorization: Bearer TOKEN", not %q`, h)
		case strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
			v.add(key, "the value of %s holds a control character", name)
		case strings.EqualFold(name, "Host") || strings.EqualFold(name, "Content-Length"):
			v.add(key, "%s is set by msgate", name)
		}
	}
	if d := a.Timeout.D(); d < 100*time.Millisecond || d > time.Minute {
		v.add("alerts.timeout", "must be from 100ms to 1m, not %s", a.Timeout)
	}
	if a.Retries < 0 || a.Retries > 20 {
		v.add("alerts.retries", "must be from 0 to 20, not %d", a.Retries)
	}
	if d := a.Backoff.D(); d < 10*time.Millisecond || d > time.Hour {
		v.add("alerts.backoff", "must be from 10ms to 1h, not %s", a.Backoff)
	}
	if a.QueueSize < 1 || a.QueueSize > 100000 {
		v.add("alerts.queue_size", "must be from 1 to 100000, not %d", a.QueueSize)
	}
}

// isToken reports whether s is an HTTP header name (RFC 9110 §5.6.2).
func isToken(s string) bool {
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return s != ""
}
