package replies

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Class is what kind of answer a reply is.
type Class uint8

const (
	ClassOther Class = iota // not a reply a rule knows
	ClassSuccess
	ClassBlock         // the IP is on a block list
	ClassThrottle      // reputation throttling: the step before a block
	ClassConnLimit     // too many connections: not about reputation
	ClassNotReputation // authentication or recipient failures
)

var classNames = [...]string{"other", "success", "block", "throttle", "connection_limit", "not_reputation"}

func (c Class) String() string { return classNames[c] }

// RuleClasses are the class names a rule may give: all but "other", the
// kinds of failure first and success last, as the docs list them.
func RuleClasses() []string {
	return append(append([]string(nil), classNames[2:]...), classNames[ClassSuccess])
}

// ParseClass reads a class name as String writes it.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if n == s {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("unknown class %q (want block, throttle, connection_limit, not_reputation or success)", s)
}

// Action is what a rule does when it has matched Count times within Within.
type Action uint8

const (
	ActionNone     Action = iota // only counted
	ActionSuspend                // pause Microsoft delivery for Duration
	ActionLowerCap               // multiply the effective cap by the cap factor
)

var actionNames = [...]string{"none", "suspend", "lower_cap"}

func (a Action) String() string { return actionNames[a] }

// Actions are the action names, those that do something first.
func Actions() []string {
	return append(append([]string(nil), actionNames[1:]...), actionNames[ActionNone])
}

// ParseAction reads "none", "suspend" or "lower_cap".
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (want suspend, lower_cap or none)", s)
}

// Rule recognises one kind of reply.
type Rule struct {
	Name     string
	Match    *regexp.Regexp
	Class    Class
	Count    int           // matches within Within that trigger Action; at least 1
	Within   time.Duration // the window of Count
	Action   Action
	Duration time.Duration // how long a suspension lasts
}

// Config is what the tracker decides by.
type Config struct {
	// Rules, tried in order: the first that matches a reply classifies it.
	Rules []Rule
	// CapFactor multiplies the effective cap on every lower_cap trigger;
	// between 0 and 1. MinCapFactor is as low as it goes.
	CapFactor, MinCapFactor float64
	// CapRecovery is how long without a lower_cap trigger divides the
	// reduction back by one CapFactor step, up to no reduction.
	CapRecovery time.Duration
	// Probation follows a suspension: the mail that resumes is the probe,
	// and one reply of the rule that suspended delivery suspends it again
	// at once. Mail held during the suspension waits until it passes.
	Probation time.Duration
}

// Mode is the state of Microsoft delivery.
type Mode uint8

const (
	Normal Mode = iota
	Throttled
	Blocked
)

var modeNames = [...]string{"normal", "throttled", "blocked"}

func (m Mode) String() string { return modeNames[m] }

// MarshalText writes the mode's name.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads a mode's name.
func (m *Mode) UnmarshalText(b []byte) error {
	for i, n := range modeNames {
		if n == string(b) {
			*m = Mode(i)
			return nil
		}
	}
	return fmt.Errorf("unknown mode %q", b)
}

// State is Microsoft delivery's state: what the caller keeps across
// restarts and shows.
type State struct {
	Mode Mode `json:"mode"`
	// Since and Until bound a suspension (Mode throttled or blocked).
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Rule is the rule that suspended delivery, Reply the reply that
	// triggered it.
	Rule  string `json:"rule,omitempty"`
	Reply string `json:"reply,omitempty"`
	// Factor is the cap reduction as of Lowered, the last lower_cap
	// trigger; 0 or 1 means none.
	Factor  float64   `json:"cap_factor,omitempty"`
	Lowered time.Time `json:"cap_lowered,omitzero"`
	// Hits are the recent matches per rule name, oldest first.
	Hits map[string][]time.Time `json:"hits,omitempty"`
	// ProbationUntil ends the probation after a suspension of
	// ProbationRule.
	ProbationUntil time.Time `json:"probation_until,omitzero"`
	ProbationRule  string    `json:"probation_rule,omitempty"`
}

// OnProbation reports whether delivery resumed lately and is on probation.
func (s State) OnProbation(now time.Time) bool {
	return s.Mode == Normal && now.Before(s.ProbationUntil)
}

// Paused reports whether Microsoft delivery is suspended at now.
func (s State) Paused(now time.Time) bool { return s.Mode != Normal && now.Before(s.Until) }

// EventKind names a transition.
type EventKind string

const (
	EventBlocked    EventKind = "blocked"
	EventThrottled  EventKind = "throttled"
	EventResumed    EventKind = "resumed"
	EventCapLowered EventKind = "cap_lowered"
)

// Event is one transition, for the log, on_event and the caller's actions.
type Event struct {
	Kind      EventKind `json:"event"`
	At        time.Time `json:"at"`
	Rule      string    `json:"rule,omitempty"`
	Reply     string    `json:"reply,omitempty"`
	Until     time.Time `json:"until,omitzero"`
	CapFactor float64   `json:"cap_factor,omitempty"`
}

// Observation is how one reply was classified.
type Observation struct {
	Class Class
	Rule  string // the matching rule; "" when none matched
}

// Tracker applies Config to a State. It is not safe for concurrent use.
type Tracker struct {
	cfg Config
	st  State
}

// NewTracker resumes from a saved state (the zero State for none).
func NewTracker(cfg Config, st State) *Tracker {
	if st.Hits == nil {
		st.Hits = map[string][]time.Time{}
	}
	return &Tracker{cfg: cfg, st: st}
}

// SetConfig replaces the rules (on reload); counts of rules that keep
// their name are kept.
func (t *Tracker) SetConfig(cfg Config) { t.cfg = cfg }

// State returns a copy of the state.
func (t *Tracker) State() State {
	s := t.st
	s.Hits = make(map[string][]time.Time, len(t.st.Hits))
	for k, v := range t.st.Hits {
		s.Hits[k] = append([]time.Time(nil), v...)
	}
	return s
}

// maxReply bounds the reply text kept in the state and events.
const maxReply = 300

// Observe counts one reply at now against every rule it matches and
// returns the transitions it causes. The first matching rule classifies
// it; a reply no rule matches is a success (2.x.x) or other.
func (t *Tracker) Observe(reply string, now time.Time) (Observation, []Event) {
	evs := t.Tick(now)
	text := reply
	if len(text) > maxReply {
		text = text[:maxReply]
	}
	var obs Observation
	for i := range t.cfg.Rules {
		r := &t.cfg.Rules[i]
		if !r.Match.MatchString(reply) {
			continue
		}
		if obs.Rule == "" {
			obs = Observation{Class: r.Class, Rule: r.Name}
		}
		evs = t.count(r, text, now, evs)
	}
	if obs.Rule == "" && strings.HasPrefix(reply, "2.") {
		obs.Class = ClassSuccess
	}
	return obs, evs
}

func (t *Tracker) count(r *Rule, text string, now time.Time, evs []Event) []Event {
	hits := append(t.st.Hits[r.Name], now)
	from := now.Add(-r.Within)
	i := 0
	for i < len(hits) && !hits[i].After(from) {
		i++
	}
	hits = hits[i:]
	if len(hits) > max(r.Count, 1) {
		hits = hits[len(hits)-max(r.Count, 1):]
	}
	t.st.Hits[r.Name] = hits
	probe := r.Action == ActionSuspend && r.Name == t.st.ProbationRule && t.st.OnProbation(now)
	if r.Action == ActionNone || (len(hits) < max(r.Count, 1) && !probe) {
		return evs
	}
	// A trigger starts the count again: the next takes Count more.
	delete(t.st.Hits, r.Name)
	switch r.Action {
	case ActionSuspend:
		mode, kind := Throttled, EventThrottled
		if r.Class == ClassBlock {
			mode, kind = Blocked, EventBlocked
		}
		until := now.Add(r.Duration)
		paused := t.st.Paused(now)
		if paused && (t.st.Mode > mode || (t.st.Mode == mode && !until.After(t.st.Until))) {
			return evs // a block is not eased by a throttle, nor shortened
		}
		since := now
		if paused {
			since = t.st.Since
		}
		t.st.Mode, t.st.Since, t.st.Until, t.st.Rule, t.st.Reply = mode, since, until, r.Name, text
		t.st.ProbationUntil, t.st.ProbationRule = time.Time{}, ""
		evs = append(evs, Event{Kind: kind, At: now, Rule: r.Name, Reply: text, Until: until})
	case ActionLowerCap:
		f := max(t.CapFactor(now)*t.cfg.CapFactor, t.cfg.MinCapFactor)
		t.st.Factor, t.st.Lowered = f, now
		evs = append(evs, Event{Kind: EventCapLowered, At: now, Rule: r.Name, Reply: text, CapFactor: f})
	}
	return evs
}

// Tick ends a suspension whose time is up and forgets stale counts.
func (t *Tracker) Tick(now time.Time) []Event {
	var evs []Event
	if t.st.Mode != Normal && !now.Before(t.st.Until) {
		evs = append(evs, Event{Kind: EventResumed, At: now, Rule: t.st.Rule, Until: now.Add(t.cfg.Probation)})
		t.st.ProbationUntil, t.st.ProbationRule = now.Add(t.cfg.Probation), t.st.Rule
		t.st.Mode, t.st.Since, t.st.Until, t.st.Rule, t.st.Reply = Normal, time.Time{}, time.Time{}, "", ""
	}
	for name, hits := range t.st.Hits {
		within := time.Duration(0)
		for _, r := range t.cfg.Rules {
			if r.Name == name {
				within = r.Within
			}
		}
		if len(hits) == 0 || !hits[len(hits)-1].After(now.Add(-within)) {
			delete(t.st.Hits, name)
		}
	}
	return evs
}

// CapFactor is what the effective cap is multiplied by at now: the last
// reduction, divided back by one CapFactor step per CapRecovery since.
func (t *Tracker) CapFactor(now time.Time) float64 {
	return t.st.CapFactorAt(now, t.cfg)
}

// CapFactorAt is CapFactor for a copy of the state.
func (s State) CapFactorAt(now time.Time, cfg Config) float64 {
	f := s.Factor
	if f <= 0 || f >= 1 {
		return 1
	}
	if cfg.CapRecovery > 0 && cfg.CapFactor > 0 && cfg.CapFactor < 1 {
		steps := math.Floor(float64(now.Sub(s.Lowered)) / float64(cfg.CapRecovery))
		if steps > 0 {
			f /= math.Pow(cfg.CapFactor, steps)
		}
	}
	return min(f, 1)
}
