package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/msgate/msgate/policy/detect"
	"github.com/msgate/msgate/policy/feedback/stamp"
	"github.com/msgate/msgate/policy/state"
)

// RuleAction is what a rate rule does to units over its limit.
type RuleAction uint8

const (
	RuleDefer RuleAction = iota
	RuleReject
	RuleMonitor
)

// ParseRuleAction reads "defer", "reject" or "monitor".
func ParseRuleAction(s string) (RuleAction, error) {
	switch s {
	case "defer", "":
		return RuleDefer, nil
	case "reject":
		return RuleReject, nil
	case "monitor":
		return RuleMonitor, nil
	}
	return 0, fmt.Errorf("unknown action %q (want defer, reject or monitor)", s)
}

func (a RuleAction) String() string { return [...]string{"defer", "reject", "monitor"}[a] }

// Rule is one per-account rate limit on Microsoft units.
type Rule struct {
	Name   string
	Window time.Duration
	Limit  int64
	Action RuleAction
}

// Key is the store key of the rule's counter for an account.
func (r Rule) Key(account string) string { return "rate/" + r.Name + "/" + account }

// Config is what the engine decides by.
type Config struct {
	Rules  []Rule
	Exempt []string // accounts never limited by rate rules (the cap still counts them)
	Cap    Cap
	// DeferOnDNSFailure defers a recipient whose domain cannot be
	// classified; otherwise it is treated as not Microsoft's.
	DeferOnDNSFailure bool
	// AcceptOnStateFailure lets a Microsoft recipient through uncounted when
	// the state store fails; otherwise it is deferred.
	AcceptOnStateFailure bool
	// Thresholds flag accounts by their recipients' complaints.
	Thresholds []Threshold
	// Sealer makes the stamp added at end of message; nil stamps nothing.
	Sealer *stamp.Sealer
	// StampAll stamps every message, not only those with a Microsoft
	// recipient.
	StampAll bool
}

// Threshold flags an account that got Complaints or more complaints within
// Within.
type Threshold struct {
	Complaints int
	Within     time.Duration
	Action     RuleAction // RuleDefer or RuleReject
}

// Detector classifies recipient domains.
type Detector interface {
	Detect(ctx context.Context, domain string, now time.Time) (detect.Result, error)
}

// params is one configuration of the engine, swapped whole on reload.
type params struct {
	cfg Config
	det Detector
	// limits are the cap (when enabled) and the rules, strictest first:
	// Reserve reports the first full hard counter, so its action wins.
	limits []limit
	exempt map[string]bool
	// thresholds, strictest first; maxWithin is the longest window.
	thresholds []Threshold
	maxWithin  time.Duration
}

// limit is one counter a unit may count against: the cap or a rule.
type limit struct {
	rule     *Rule // nil for the cap
	severity int
	soft     bool
}

func newParams(cfg Config, det Detector) *params {
	p := &params{cfg: cfg, det: det, exempt: make(map[string]bool, len(cfg.Exempt))}
	for _, a := range cfg.Exempt {
		p.exempt[strings.ToLower(a)] = true
	}
	if cfg.Cap.Enabled {
		sev := map[CapAction]int{CapReject: 3, CapDefer: 2, CapHold: 1, CapMonitor: 0}[cfg.Cap.Action]
		p.limits = append(p.limits, limit{severity: sev, soft: cfg.Cap.Action == CapMonitor})
	}
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		sev := map[RuleAction]int{RuleReject: 3, RuleDefer: 2, RuleMonitor: 0}[r.Action]
		p.limits = append(p.limits, limit{rule: r, severity: sev, soft: r.Action == RuleMonitor})
	}
	sort.SliceStable(p.limits, func(i, j int) bool { return p.limits[i].severity > p.limits[j].severity })
	p.thresholds = append([]Threshold(nil), cfg.Thresholds...)
	sort.SliceStable(p.thresholds, func(i, j int) bool {
		a, b := p.thresholds[i], p.thresholds[j]
		if a.Action != b.Action {
			return a.Action == RuleReject
		}
		return float64(a.Complaints)/a.Within.Seconds() < float64(b.Complaints)/b.Within.Seconds()
	})
	for _, t := range p.thresholds {
		p.maxWithin = max(p.maxWithin, t.Within)
	}
	return p
}

// Engine decides. It is safe for concurrent use by many sessions, and its
// configuration can be replaced while it runs.
type Engine struct {
	store    state.Store
	p        atomic.Pointer[params]
	delivery atomic.Pointer[Delivery]
}

// Delivery is how Microsoft's own replies steer decisions: a suspension of
// Microsoft delivery until Until, and the factor the cap is multiplied by.
// The zero value steers nothing.
type Delivery struct {
	// Until ends a suspension.
	Until time.Time
	// Hold holds new Microsoft mail while suspended; otherwise it is
	// deferred at RCPT.
	Hold bool
	// CapFactor multiplies the cap (0 or 1: unchanged), and CapReason says
	// why, for status.
	CapFactor float64
	CapReason string
	// RampDay, when more than 0 and earlier than the calendar's ramp day,
	// is the ramp day in force: SNDS holds the ramp back to the days it
	// judged GREEN (snds.ramp_green_only).
	RampDay int
}

// Paused reports whether Microsoft delivery is suspended at now.
func (d Delivery) Paused(now time.Time) bool { return now.Before(d.Until) }

// SetDelivery puts a delivery state in force, for transactions from their
// next recipient.
func (e *Engine) SetDelivery(d Delivery) { e.delivery.Store(&d) }

// Delivery is the delivery state in force.
func (e *Engine) Delivery() Delivery {
	if d := e.delivery.Load(); d != nil {
		return *d
	}
	return Delivery{}
}

// CapLimit is the cap in force at now: the configured cap (and ramp)
// times the delivery state's factor, at least 1.
func (e *Engine) CapLimit(now time.Time) int64 {
	return capLimit(e.p.Load(), e.delivery.Load(), now)
}

func capLimit(p *params, d *Delivery, now time.Time) int64 {
	l := p.cfg.Cap.LimitOnDay(rampDay(p, d, now))
	if d != nil && d.CapFactor > 0 && d.CapFactor < 1 {
		l = max(int64(float64(l)*d.CapFactor), 1)
	}
	return l
}

// RampDay is the ramp day in force at now: the calendar's (Cap.Day), or
// the delivery state's when that holds the ramp back; 0 without a ramp.
func (e *Engine) RampDay(now time.Time) int {
	return rampDay(e.p.Load(), e.delivery.Load(), now)
}

func rampDay(p *params, d *Delivery, now time.Time) int {
	day := p.cfg.Cap.Day(now)
	if day > 0 && d != nil && d.RampDay > 0 && d.RampDay < day {
		return d.RampDay
	}
	return day
}

// NewEngine returns an engine over a detector and a state store.
func NewEngine(cfg Config, det Detector, store state.Store) *Engine {
	e := &Engine{store: store}
	e.p.Store(newParams(cfg, det))
	return e
}

// Reload replaces the configuration and detector. Transactions in flight
// finish under the configuration they started with; counts are kept.
func (e *Engine) Reload(cfg Config, det Detector) {
	e.p.Store(newParams(cfg, det))
}

// Config is the configuration in force.
func (e *Engine) Config() Config { return e.p.Load().cfg }

// Store is the state store the engine counts in.
func (e *Engine) Store() state.Store { return e.store }

// Transaction is one message's worth of policy state, owned by one milter
// session. The zero value is not usable; call Engine.Begin.
type Transaction struct {
	Env     Envelope
	Account Account
	p       *params
	held    []state.Reservation
	// seen is the Microsoft recipients already counted, lower-cased: a
	// list while short, a map past seenListMax.
	seen    []string
	seenMap map[string]bool
	// counters and limits are what each Microsoft recipient reserves
	// against, built at the first one (the account's keys do not change
	// within a transaction; the cap's limit is refreshed each time).
	counters []state.Counter
	limits   []limit
	// refusal is the strictest refusal of a non-SMTP transaction, applied to
	// the whole message at end of message.
	refusal *Decision
	// hold is set when a recipient went past a cap whose action is hold:
	// the whole message goes to the hold queue at end of message.
	hold *Decision
	// microsoft is set once a recipient is Microsoft's: the message is
	// stamped and remembered by queue id.
	microsoft bool
	// standing is the account's, read at the first Microsoft recipient.
	standing     Standing
	standingRead bool
	// spareLimits are the counters' limits when the last reservation's
	// spares were admitted: a spare serves a later recipient only while
	// they are the same (the cap in force may change).
	spareLimits []int64
}

// The spares a transaction's reservations ask for: firstSpares with its
// first, twice as many with each one after (a reservation is made only
// once the spares before it are spent), up to maxSpares. A message with
// three Microsoft recipients then asks the store once instead of three
// times.
const (
	firstSpares = 2
	maxSpares   = 16
)

// Begin starts a transaction for an envelope (at MAIL FROM).
func (e *Engine) Begin(env Envelope) *Transaction {
	return &Transaction{Env: env, Account: AccountOf(env), p: e.p.Load()}
}

// Held is the number of units the transaction has reserved for its
// recipients (spares it has not spent are not counted).
func (tx *Transaction) Held() int {
	n := 0
	for _, r := range tx.held {
		n += 1 + r.Spent
	}
	return n
}

// spend serves a recipient from the last reservation's spares, when it has
// one left and the counters' limits are those it was admitted under.
func (tx *Transaction) spend(counters []state.Counter) bool {
	n := len(tx.held)
	if n == 0 || tx.held[n-1].Spent >= tx.held[n-1].Spare || len(counters) != len(tx.spareLimits) {
		return false
	}
	for i, c := range counters {
		if c.Limit != tx.spareLimits[i] {
			return false
		}
	}
	tx.held[n-1].Spent++
	return true
}

// spared records a new reservation's spares.
func (tx *Transaction) spared(r state.Reservation, counters []state.Counter) {
	if r.Spare == 0 {
		return
	}
	tx.spareLimits = tx.spareLimits[:0]
	for _, c := range counters {
		tx.spareLimits = append(tx.spareLimits, c.Limit)
	}
}

// spares is how many spares the transaction's reservations hold.
func (tx *Transaction) spares() int {
	n := 0
	for _, r := range tx.held {
		n += r.Spare
	}
	return n
}

// nextSpares is how many spares the next reservation asks for.
func (tx *Transaction) nextSpares() int {
	return min(firstSpares<<min(len(tx.held), 8), maxSpares)
}

// WantsEndOfMessage reports whether EndOfMessage has anything to do once the
// recipients are known: units to commit, a Microsoft recipient (or, with
// stamp_all, any message) to stamp and remember, a refusal or a hold to
// apply. When it is false the MTA need not ask at end of message, and a
// transaction that ends without EndOfMessage holds nothing to give back.
func (tx *Transaction) WantsEndOfMessage() bool {
	return len(tx.held) > 0 || tx.microsoft || tx.refusal != nil || tx.hold != nil ||
		(tx.p.cfg.StampAll && tx.p.cfg.Sealer != nil && tx.Account.Kind != AccountNone)
}

// Recipient decides one recipient at RCPT TO and, for a Microsoft recipient
// within limits, reserves its unit in the transaction.
func (e *Engine) Recipient(ctx context.Context, tx *Transaction, rcpt string, now time.Time) Decision {
	d := e.recipient(ctx, tx, rcpt, now)
	if tx.Env.NonSMTP && (d.Verdict == Defer || d.Verdict == Reject) {
		// Refusing one recipient of sendmail-command mail is not possible:
		// remember the strictest refusal for the whole message.
		if tx.refusal == nil || d.Verdict > tx.refusal.Verdict {
			r := d
			tx.refusal = &r
		}
		d.Postponed = true
		d.Verdict, d.Reply = Accept, Reply{}
	}
	return d
}

func (e *Engine) recipient(ctx context.Context, tx *Transaction, rcpt string, now time.Time) Decision {
	p := tx.p
	domain := Domain(rcpt)
	d := Decision{Domain: domain, Reason: ReasonNotMicrosoft}
	if domain == "" || tx.Account.Kind == AccountNone {
		if tx.Account.Kind == AccountNone && domain != "" {
			d.Reason = ReasonNullSender
		}
		return d
	}
	res, err := p.det.Detect(ctx, domain, now)
	if err != nil {
		d.Reason, d.Err = ReasonDNSFailure, err
		if p.cfg.DeferOnDNSFailure {
			d.Verdict, d.Reply = Defer, ReplyDNSDefer
		}
		return d
	}
	if !res.Microsoft {
		return d
	}
	d.Microsoft, d.Group = true, res.Group
	key := strings.ToLower(strings.Trim(rcpt, "<> "))
	if tx.counted(key) {
		d.Reason = ReasonDuplicate
		return d
	}
	tx.microsoft = true
	dl := e.delivery.Load()
	if dl != nil && dl.Paused(now) {
		// Microsoft is refusing this server's mail: new mail waits here
		// instead of adding to the refusals. Nothing is counted.
		d.Reason = ReasonDeliveryPaused
		if dl.Hold {
			h := d
			h.Verdict, h.Reply = Hold, ReplyPausedHold
			tx.hold = &h
			d.Postponed = true
		} else {
			d.Verdict, d.Reply = Defer, ReplyPausedDefer
		}
		return d
	}
	if !tx.standingRead {
		// Read once per transaction: a flag set meanwhile applies from
		// the account's next message.
		st, err := e.standing(ctx, p, tx.Account.Name, now)
		if err != nil {
			return e.stateFailure(p, d, err)
		}
		tx.standing, tx.standingRead = st, true
	}
	if st := &tx.standing; st.Flagged {
		d.Reason = ReasonFlagged
		if st.Action == RuleReject {
			d.Verdict, d.Reply = Reject, ReplyFlaggedReject
		} else {
			d.Verdict, d.Reply = Defer, ReplyFlaggedDefer
		}
		return d
	}
	exempt := p.exempt[strings.ToLower(tx.Account.Name)]
	if tx.limits == nil {
		// The cap's limit is set below, for each recipient.
		tx.counters, tx.limits = p.counters(tx.Account.Name, 0)
	}
	counters, limits := tx.counters, tx.limits
	for i, l := range limits {
		if l.rule == nil {
			counters[i].Limit = capLimit(p, dl, now)
		}
	}
	d.Reason = ReasonWithinLimits
	if exempt {
		d.Reason = ReasonExempt
	}
	if len(counters) == 0 {
		return d
	}
	if tx.spend(counters) {
		tx.count(key)
		return d
	}
	out, err := e.store.ReserveSpare(ctx, counters, tx.nextSpares(), tx.spares(), now)
	if err != nil {
		return e.stateFailure(p, d, err)
	}
	if !out.Admitted {
		l := limits[out.Blocked]
		if l.rule == nil {
			d.Reason = ReasonDailyCap
			switch p.cfg.Cap.Action {
			case CapReject:
				d.Verdict, d.Reply = Reject, ReplyCapReject
			case CapHold:
				// The recipient is accepted; the whole message is held at
				// end of message and its units are not counted.
				h := d
				h.Verdict, h.Reply = Hold, ReplyCapHold
				tx.hold = &h
				d.Postponed = true
			default:
				d.Verdict, d.Reply = Defer, ReplyCapDefer
			}
			return d
		}
		d.Reason, d.Rule = ReasonRateLimit, l.rule.Name
		if l.rule.Action == RuleReject {
			d.Verdict, d.Reply = Reject, ReplyRateReject
		} else {
			d.Verdict, d.Reply = Defer, ReplyRateDefer
		}
		return d
	}
	tx.held = append(tx.held, out.Reservation)
	tx.spared(out.Reservation, counters)
	tx.count(key)
	if len(out.OverSoft) > 0 {
		l := limits[out.OverSoft[0]]
		d.Monitor = true
		if l.rule == nil {
			d.Reason = ReasonDailyCap
		} else {
			d.Reason, d.Rule = ReasonRateLimit, l.rule.Name
		}
	}
	return d
}

// stateFailure applies the configured answer when the store fails.
func (e *Engine) stateFailure(p *params, d Decision, err error) Decision {
	d.Reason, d.Err = ReasonStateFailure, err
	if !p.cfg.AcceptOnStateFailure {
		d.Verdict, d.Reply = Defer, ReplyStateDefer
	}
	return d
}

// EndOfMessage decides the whole message at end of message. When the
// message passes, its units are committed; otherwise they are released and
// the decision carries the refusal (non-SMTP mail) or the hold.
func (e *Engine) EndOfMessage(ctx context.Context, tx *Transaction, now time.Time) Decision {
	switch {
	case tx.refusal != nil:
		d := *tx.refusal
		d.Reason, d.Err = ReasonMessageRefused, errors.Join(fmt.Errorf("a recipient was refused: %s", tx.refusal.Reason), tx.refusal.Err)
		e.Abort(ctx, tx)
		return d
	case tx.hold != nil:
		d := *tx.hold
		d.QueueID = tx.Env.QueueID
		// A held message is not sent: its units are not counted here;
		// msgate release counts them when it releases the message. Its
		// queue id is remembered, so that the release knows its account.
		e.Abort(ctx, tx)
		e.remember(ctx, tx, &d, now)
		return d
	}
	d := Decision{Reason: ReasonMessageAccepted}
	var err error
	if len(tx.held) > 0 {
		// One durable write for the whole message.
		err = e.store.CommitAll(ctx, tx.held, now)
	}
	tx.held = tx.held[:0]
	if err != nil {
		// A unit that cannot be made to count must not slip through: the
		// message is deferred unless the admin chose to fail open.
		d.Reason, d.Err = ReasonStateFailure, err
		if !tx.p.cfg.AcceptOnStateFailure {
			d.Verdict, d.Reply = Defer, ReplyStateDefer
			return d
		}
	}
	e.mark(ctx, tx, &d, now)
	return d
}

// mark stamps an accepted message and remembers its queue id, so that a
// complaint about it can be traced to its account. Failing to do either
// never stops the message: it is logged through d.Err.
func (e *Engine) mark(ctx context.Context, tx *Transaction, d *Decision, now time.Time) {
	p := tx.p
	if tx.Account.Kind == AccountNone || (!tx.microsoft && !p.cfg.StampAll) {
		return
	}
	if p.cfg.Sealer != nil {
		tok, err := p.cfg.Sealer.Seal(tx.Account.Name, now)
		if err != nil {
			d.Err = errors.Join(d.Err, fmt.Errorf("stamping: %w", err))
		} else {
			d.Stamp = tok
		}
	}
	e.remember(ctx, tx, d, now)
}

// remember records the account of a message with a Microsoft recipient by
// its queue id, for a complaint about it or its release from the hold
// queue. A failure is logged through d.Err.
func (e *Engine) remember(ctx context.Context, tx *Transaction, d *Decision, now time.Time) {
	if tx.Env.QueueID == "" || !tx.microsoft || tx.Account.Kind == AccountNone {
		return
	}
	if err := e.store.Remember(ctx, tx.Env.QueueID, tx.Account.Name, now); err != nil {
		d.Err = errors.Join(d.Err, fmt.Errorf("remembering the queue id: %w", err))
	}
}

// Abort gives back every unit the transaction reserved. It is safe to call
// more than once.
func (e *Engine) Abort(ctx context.Context, tx *Transaction) error {
	if tx == nil {
		return nil
	}
	var errs []error
	for _, r := range tx.held {
		if err := e.store.Release(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	tx.held = tx.held[:0]
	tx.seen, tx.seenMap = nil, nil
	return errors.Join(errs...)
}

// seenListMax is how many counted recipients a transaction keeps in a list
// before it switches to a map: most messages have a few.
const seenListMax = 16

func (tx *Transaction) counted(rcpt string) bool {
	if tx.seenMap != nil {
		return tx.seenMap[rcpt]
	}
	return slices.Contains(tx.seen, rcpt)
}

func (tx *Transaction) count(rcpt string) {
	switch {
	case tx.seenMap != nil:
		tx.seenMap[rcpt] = true
	case len(tx.seen) < seenListMax:
		tx.seen = append(tx.seen, rcpt)
	default:
		tx.seenMap = make(map[string]bool, 2*seenListMax)
		for _, r := range tx.seen {
			tx.seenMap[r] = true
		}
		tx.seenMap[rcpt] = true
		tx.seen = nil
	}
}
