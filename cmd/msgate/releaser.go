package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/release"
	"github.com/msgate/msgate/policy/state"
)

// releaser carries out the paced release of held mail ([release],
// msgate release): it lists the hold queue, asks release.Plan, and for
// each message to release reserves its units, runs postsuper -H and counts
// the units, or gives them back when postsuper fails.
type releaser struct {
	log          *zap.Logger
	engine       *policy.Engine
	detector     func() policy.Detector
	cfg          func() *config.Config
	attributions state.Attributions
	now          func() time.Time
	// releasable reports whether Microsoft delivery lets held mail go
	// (it is not suspended). The ids the delivery feed releases at the
	// resume may have left already: postsuper -H skips those.
	releasable func(now time.Time) bool
	// wake starts a run of the loop before its interval is up.
	wake chan struct{}

	// mu makes runs one at a time: two runs planning on the same room
	// would each reserve it, and the second would find no room.
	mu sync.Mutex
}

// run releases (or, with req.DryRun, plans) once.
func (r *releaser) run(ctx context.Context, req admin.ReleaseRequest) (admin.ReleaseReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, now := r.cfg(), r.now()
	rep := admin.ReleaseReport{Time: now, DryRun: req.DryRun, Steps: []admin.ReleaseStep{}}
	out, err := commandStdout(ctx, append(slices.Clone(cfg.Release.Postqueue), "-j"))
	if err != nil {
		return rep, fmt.Errorf("%w: %v", admin.ErrQueue, err)
	}
	msgs, bad, err := release.ParseQueue(bytes.NewReader(out))
	if err != nil {
		return rep, fmt.Errorf("%w: %v", admin.ErrQueue, err)
	}
	rep.Skipped = bad
	for _, b := range bad {
		r.log.Warn("release: a line of postqueue -j was skipped", zap.Int("line", b.Line), zap.String("problem", b.Err))
	}
	held := release.Held(msgs)
	rep.Held = len(held)
	cands, err := r.candidates(ctx, held, now)
	if err != nil {
		return rep, err
	}
	// Each account once: HeldRoom reads the store for every account given.
	accounts := make([]string, 0, len(cands))
	for _, c := range cands {
		accounts = append(accounts, c.Account)
	}
	slices.Sort(accounts)
	accounts = slices.Compact(accounts)
	capRoom, room, err := r.engine.HeldRoom(ctx, accounts, now)
	if err != nil {
		return rep, fmt.Errorf("reading the room left by the cap and the rules: %w", err)
	}
	if capRoom != release.Unlimited {
		capRoom = max(capRoom-cfg.Release.LeaveRoom, 0)
	}
	budget := release.Budget{Cap: capRoom, Accounts: room, Messages: cfg.Release.MaxPerRun, Paused: !r.releasable(now)}
	if req.Max > 0 {
		budget.Messages = req.Max
	}
	rep.Cap, rep.Paused = capRoom, budget.Paused
	steps := release.Plan(cands, budget, now)
	if req.DryRun {
		for _, s := range steps {
			rep.Add(admin.ReleaseStep{Step: s, Outcome: map[bool]string{true: admin.OutcomePlanned, false: admin.OutcomeKept}[s.Release]})
		}
		return rep, nil
	}
	// A client that goes away does not stop the release halfway: a
	// postsuper killed after it moved the message would leave it released
	// with its units given back.
	r.execute(context.WithoutCancel(ctx), cfg, steps, &rep)
	return rep, nil
}

// candidates are the held messages with a Microsoft recipient, with
// their accounts and units.
func (r *releaser) candidates(ctx context.Context, held []release.Message, now time.Time) ([]release.Candidate, error) {
	det := r.detector()
	standing := map[string]bool{}
	var cands []release.Candidate
	for _, m := range held {
		c := release.Candidate{ID: m.ID, Arrival: m.Arrival}
		seen := map[string]bool{}
		microsoft := false
		for _, rc := range m.Recipients {
			addr := strings.ToLower(strings.Trim(rc.Address, "<> "))
			if seen[addr] {
				continue
			}
			seen[addr] = true
			res, err := det.Detect(ctx, policy.Domain(addr), now)
			switch {
			case err != nil:
				c.Unclassified = true
			case res.Microsoft:
				microsoft = true
				c.Units++
			}
		}
		if !microsoft && !c.Unclassified {
			continue // not msgate's to release
		}
		// msgate's record of the queue id names the account as the
		// milter saw it (the SASL login); the sender stands in without one.
		acc := policy.AccountOf(policy.Envelope{Sender: m.Sender, NullSender: m.Sender == ""})
		null := acc.Kind == policy.AccountNone
		c.Account = acc.Name
		if name, _, ok, err := r.attributions.Attribute(ctx, m.ID); err != nil {
			r.log.Warn("release: cannot read the account of a held message; its sender stands in", zap.String("queue_id", m.ID), zap.Error(err))
		} else if ok {
			c.Account, null = name, false
		}
		if null {
			// The null sender counts against nothing, at RCPT as here.
			c.Units = 0
		} else {
			flagged, ok := standing[c.Account]
			if !ok {
				st, err := r.engine.Standing(ctx, c.Account, now)
				if err != nil {
					return nil, fmt.Errorf("reading the standing of %s: %w", c.Account, err)
				}
				flagged = st.Flagged
				standing[c.Account] = flagged
			}
			c.Flagged = flagged
		}
		cands = append(cands, c)
	}
	return cands, nil
}

// execute releases the plan's messages in order. A limit that has no room
// after all (mail accepted since the plan) keeps the rest: all of them
// for the cap, the account's for its rules.
func (r *releaser) execute(ctx context.Context, cfg *config.Config, steps []release.Step, rep *admin.ReleaseReport) {
	var (
		capFull  bool
		stopped  = map[string]release.Reason{}
		released []string
	)
	for _, s := range steps {
		st := admin.ReleaseStep{Step: s, Outcome: admin.OutcomeKept}
		if !s.Release {
			rep.Add(st)
			continue
		}
		st.Release, st.Order = false, 0
		if capFull {
			st.Reason = release.ReasonCap
			rep.Add(st)
			continue
		}
		if reason, ok := stopped[s.Account]; ok {
			st.Reason = reason
			rep.Add(st)
			continue
		}
		now := r.now()
		adm, err := r.engine.AdmitHeld(ctx, s.Account, s.Units, now)
		var nr *policy.NoRoomError
		switch {
		case errors.As(err, &nr) && nr.Rule == "":
			capFull, st.Reason = true, release.ReasonCap
			rep.Add(st)
			continue
		case errors.As(err, &nr):
			stopped[s.Account], st.Reason = release.ReasonAccount, release.ReasonAccount
			rep.Add(st)
			continue
		case err != nil:
			// The store does not answer: nothing can be counted, so
			// nothing more leaves.
			capFull = true
			st.Outcome, st.Error = admin.OutcomeFailed, fmt.Sprintf("counting its units: %v", err)
			r.log.Error("release: cannot count a held message's units; the release stops", zap.String("queue_id", s.ID), zap.Error(err))
			rep.Add(st)
			continue
		}
		if err := postsuperRelease(ctx, cfg.Replies.Release, s.ID); err != nil {
			if rerr := r.engine.ReturnHeld(ctx, &adm); rerr != nil {
				err = errors.Join(err, fmt.Errorf("giving its units back: %w", rerr))
			}
			st.Outcome, st.Error = admin.OutcomeFailed, err.Error()
			r.log.Error("release: postsuper failed; the message stays held and its units are given back", zap.String("queue_id", s.ID),
				zap.String("account", s.Account), zap.Error(err))
			rep.Add(st)
			continue
		}
		released = append(released, s.ID)
		st.Release, st.Order, st.Outcome = true, rep.Released+1, admin.OutcomeReleased
		if err := r.engine.CommitHeld(ctx, &adm, now); err != nil {
			st.Outcome, st.Error = admin.OutcomeUncount, fmt.Sprintf("counting its units: %v", err)
			r.log.Error("release: a released message's units could not be counted", zap.String("queue_id", s.ID), zap.Error(err))
		}
		r.log.Info("held message released", zap.String("queue_id", s.ID), zap.String("account", s.Account), zap.Int("units", s.Units),
			zap.Duration("waited", s.Waited))
		rep.Add(st)
	}
	// Released mail is in the deferred queue: ask for its delivery now
	// rather than at the next queue run.
	for _, id := range released {
		if _, err := commandStdout(ctx, append(slices.Clone(cfg.Release.Postqueue), "-i", id)); err != nil {
			r.log.Warn("release: postqueue -i failed; the message leaves at the next queue run", zap.String("queue_id", id), zap.Error(err))
		}
	}
	r.log.Info("release run", zap.Int("released", rep.Released), zap.Int("failed", rep.Failed), zap.Int("held", rep.Kept),
		zap.Int64("cap_room", rep.Cap))
}

// loop releases every release.interval while release.enabled, until ctx
// ends. A reload's interval applies from the next wait.
func (r *releaser) loop(ctx context.Context) {
	for {
		t := time.NewTimer(r.cfg().Release.Interval.D())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-r.wake:
			t.Stop()
		}
		if !r.cfg().Release.Enabled {
			continue
		}
		if _, err := r.run(ctx, admin.ReleaseRequest{}); err != nil {
			r.log.Error("release run failed; held mail stays held", zap.Error(err))
		}
	}
}

// takeOver reports whether release.enabled is on and, when it is, wakes
// the loop: the delivery feed asks at the resume of Microsoft delivery,
// to leave the mail it held to the paced release.
func (r *releaser) takeOver() bool {
	if !r.cfg().Release.Enabled {
		return false
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// heldReleased matches postsuper's count of what -H released.
var heldReleased = regexp.MustCompile(`Released from hold: (\d+) message`)

// errNotHeld reports ids that postsuper -H did not find in the hold queue.
var errNotHeld = errors.New("not in the hold queue (released or deleted meanwhile)")

// postsuperRelease releases one held message with replies.release. When
// postsuper says it released none, the error wraps errNotHeld.
func postsuperRelease(ctx context.Context, argv []string, id string) error {
	out, err := commandOutput(ctx, append(slices.Clone(argv), "-H", id), nil)
	if err != nil {
		return err
	}
	if m := heldReleased.FindSubmatch(out); m != nil && string(m[1]) == "0" {
		return fmt.Errorf("%s released 0 of 1: %w", argv[0], errNotHeld)
	}
	return nil
}

// commandStdout runs argv within commandTimeout and returns its standard
// output; the error carries its standard error.
func commandStdout(ctx context.Context, argv []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
		}
		return out, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out, nil
}
