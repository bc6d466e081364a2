package policy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/msgate/msgate/policy/detect"
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

// Rule is one per-account rate limit on Microsoft units.
type Rule struct {
	Name   string
	Window time.Duration
	Limit  int64
	Action RuleAction
}

// Config is what the engine decides by.
type Config struct {
	Rules  []Rule
	Exempt []string // accounts never limited
	// DeferOnDNSFailure defers a recipient whose domain cannot be
	// classified; otherwise it is treated as not Microsoft's.
	DeferOnDNSFailure bool
	// AcceptOnStateFailure lets a Microsoft recipient through uncounted when
	// the state store fails; otherwise it is deferred.
	AcceptOnStateFailure bool
}

// Detector classifies recipient domains.
type Detector interface {
	Detect(ctx context.Context, domain string, now time.Time) (detect.Result, error)
}

// Engine decides. It is safe for concurrent use by many sessions.
type Engine struct {
	det    Detector
	store  state.Store
	rules  []Rule // reject rules first, then defer, then monitor
	exempt map[string]bool
	cfg    Config
}

// NewEngine returns an engine over a detector and a state store.
func NewEngine(cfg Config, det Detector, store state.Store) *Engine {
	rules := append([]Rule(nil), cfg.Rules...)
	sort.SliceStable(rules, func(i, j int) bool { return severity(rules[i].Action) > severity(rules[j].Action) })
	exempt := make(map[string]bool, len(cfg.Exempt))
	for _, a := range cfg.Exempt {
		exempt[strings.ToLower(a)] = true
	}
	return &Engine{det: det, store: store, rules: rules, exempt: exempt, cfg: cfg}
}

func severity(a RuleAction) int {
	switch a {
	case RuleReject:
		return 2
	case RuleDefer:
		return 1
	}
	return 0
}

// Transaction is one message's worth of policy state, owned by one milter
// session. The zero value is not usable; call Engine.Begin.
type Transaction struct {
	Env     Envelope
	Account Account
	held    []state.Reservation
	seen    map[string]bool // Microsoft recipients already counted, lower-cased
	// refusal is the strictest refusal of a non-SMTP transaction, applied to
	// the whole message at end of message.
	refusal *Decision
}

// Begin starts a transaction for an envelope (at MAIL FROM).
func (e *Engine) Begin(env Envelope) *Transaction {
	return &Transaction{Env: env, Account: AccountOf(env)}
}

// Held is the number of units the transaction has reserved.
func (tx *Transaction) Held() int { return len(tx.held) }

// Recipient decides one recipient at RCPT TO and, for a Microsoft recipient
// within limits, reserves its unit in the transaction.
func (e *Engine) Recipient(ctx context.Context, tx *Transaction, rcpt string, now time.Time) Decision {
	d := e.recipient(ctx, tx, rcpt, now)
	if tx.Env.NonSMTP && d.Verdict != Accept {
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
	domain := Domain(rcpt)
	d := Decision{Domain: domain, Reason: ReasonNotMicrosoft}
	if domain == "" || tx.Account.Kind == AccountNone {
		if tx.Account.Kind == AccountNone && domain != "" {
			d.Reason = ReasonNullSender
		}
		return d
	}
	res, err := e.det.Detect(ctx, domain, now)
	if err != nil {
		d.Reason, d.Err = ReasonDNSFailure, err
		if e.cfg.DeferOnDNSFailure {
			d.Verdict, d.Reply = Defer, ReplyDNSDefer
		}
		return d
	}
	if !res.Microsoft {
		return d
	}
	d.Microsoft, d.Group = true, res.Group
	key := strings.ToLower(strings.Trim(rcpt, "<> "))
	if tx.seen[key] {
		d.Reason = ReasonDuplicate
		return d
	}
	if e.exempt[strings.ToLower(tx.Account.Name)] {
		d.Reason = ReasonExempt
		return d
	}
	counters := make([]state.Counter, len(e.rules))
	for i, r := range e.rules {
		counters[i] = state.Counter{
			Key:    "rate/" + r.Name + "/" + tx.Account.Name,
			Window: r.Window,
			Limit:  r.Limit,
			Soft:   r.Action == RuleMonitor,
		}
	}
	if len(counters) == 0 {
		d.Reason = ReasonWithinLimits
		return d
	}
	out, err := e.store.Reserve(ctx, counters, now)
	if err != nil {
		d.Reason, d.Err = ReasonStateFailure, err
		if !e.cfg.AcceptOnStateFailure {
			d.Verdict, d.Reply = Defer, ReplyStateDefer
		}
		return d
	}
	if !out.Admitted {
		r := e.rules[out.Blocked]
		d.Reason, d.Rule = ReasonRateLimit, r.Name
		if r.Action == RuleReject {
			d.Verdict, d.Reply = Reject, ReplyRateReject
		} else {
			d.Verdict, d.Reply = Defer, ReplyRateDefer
		}
		return d
	}
	tx.held = append(tx.held, out.Reservation)
	if tx.seen == nil {
		tx.seen = make(map[string]bool)
	}
	tx.seen[key] = true
	d.Reason = ReasonWithinLimits
	if len(out.OverSoft) > 0 {
		d.Reason, d.Monitor, d.Rule = ReasonRateLimit, true, e.rules[out.OverSoft[0]].Name
	}
	return d
}

// EndOfMessage decides the whole message at end of message. When the
// message passes, its units are committed; otherwise they are released and
// the decision carries the refusal (only non-SMTP mail is refused here).
func (e *Engine) EndOfMessage(ctx context.Context, tx *Transaction, now time.Time) Decision {
	if tx.refusal != nil {
		d := *tx.refusal
		d.Reason, d.Err = ReasonMessageRefused, errors.Join(fmt.Errorf("a recipient was refused: %s", tx.refusal.Reason), tx.refusal.Err)
		e.Abort(ctx, tx)
		return d
	}
	d := Decision{Reason: ReasonMessageAccepted}
	var errs []error
	for _, r := range tx.held {
		if err := e.store.Commit(ctx, r, now); err != nil {
			errs = append(errs, err)
		}
	}
	tx.held = tx.held[:0]
	if len(errs) > 0 {
		// A unit that cannot be made to count must not slip through: the
		// message is deferred unless the admin chose to fail open.
		d.Reason, d.Err = ReasonStateFailure, errors.Join(errs...)
		if !e.cfg.AcceptOnStateFailure {
			d.Verdict, d.Reply = Defer, ReplyStateDefer
		}
	}
	return d
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
	tx.seen = nil
	return errors.Join(errs...)
}
