package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/cmd/msgate/internal/maillog"
	"github.com/msgate/msgate/cmd/msgate/internal/socketmap"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/replies"
	"github.com/msgate/msgate/policy/snds"
	"github.com/msgate/msgate/policy/state"
)

// repliesConfig translates [replies] for the tracker.
func repliesConfig(r config.Replies) (replies.Config, error) {
	rc := replies.Config{CapFactor: r.CapFactor, MinCapFactor: r.MinCapFactor, CapRecovery: r.CapRecovery.D(), Probation: r.Probation.D()}
	for _, rule := range r.Rule {
		re, err := regexp.Compile(rule.Match)
		if err != nil {
			return rc, fmt.Errorf("replies rule %q: %w", rule.Name, err)
		}
		class, err := replies.ParseClass(rule.Class)
		if err != nil {
			return rc, fmt.Errorf("replies rule %q: %w", rule.Name, err)
		}
		action, err := replies.ParseAction(rule.Action)
		if err != nil {
			return rc, fmt.Errorf("replies rule %q: %w", rule.Name, err)
		}
		rc.Rules = append(rc.Rules, replies.Rule{Name: rule.Name, Match: re, Class: class, Count: rule.Count,
			Within: rule.Within.D(), Action: action, Duration: rule.Duration.D()})
	}
	return rc, nil
}

// savedDelivery is the delivery state file.
type savedDelivery struct {
	// State is the tracker's, copied in when the file is written.
	State replies.State `json:"state"`
	// Held are the queue ids msgate put on hold while delivery was
	// suspended, released when it resumes.
	Held []string `json:"held,omitempty"`
	// QueuePaused is what the transport map says now.
	QueuePaused bool `json:"queue_paused"`
}

// deliveryFeed turns Postfix's delivery outcomes into the delivery state
// and carries out its transitions: the engine's view, the transport map,
// the release of held mail, on_event and the state file.
type deliveryFeed struct {
	log     *zap.Logger
	engine  *policy.Engine
	metrics *admin.Metrics
	now     func() time.Time
	// known lists the Microsoft domains to pause in the transport map.
	known func(now time.Time) []string
	// attributions names the account of a queue id (log_file lines).
	attributions state.Attributions
	path         string
	wake         chan struct{}
	// alert is told every transition, with the rules in force; nil
	// tells nobody.
	alert func(e replies.Event, rules []replies.Rule)
	// paced reports that [release] releases held mail at its pace (and
	// wakes it); the feed then leaves the mail it held to it.
	paced func() bool

	mu     sync.Mutex
	cfg    config.Replies
	rcfg   replies.Config
	tr     *replies.Tracker
	saved  savedDelivery
	events []replies.Event // for the worker
	dirty  bool
	// retryTransport and retryRelease are when a failed transport map
	// update or release of held mail is tried again (worker only).
	retryTransport, retryRelease time.Time
	// mapped is what the paused transport map lists: the Microsoft
	// domains and the suspension's end; refreshed is when it was written.
	mapped    string
	refreshed time.Time
	// sndsBlock is SNDS's say (snds.go): it blocks delivery too while
	// active, whatever the replies say.
	sndsBlock snds.Block
	// sndsRampDay holds the mitigation ramp back (snds.ramp_green_only).
	sndsRampDay int
}

// mapRefresh is how often at most a paused transport map is rewritten for
// Microsoft domains first seen (or a suspension extended) during the pause.
const mapRefresh = time.Minute

// transportRetry is how long after a failed update of the transport map
// or release of held mail the worker tries again.
const transportRetry = 30 * time.Second

func newDeliveryFeed(cfg *config.Config, log *zap.Logger, e *policy.Engine, m *admin.Metrics, now func() time.Time,
	known func(time.Time) []string) (*deliveryFeed, error) {
	rc, err := repliesConfig(cfg.Replies)
	if err != nil {
		return nil, err
	}
	f := &deliveryFeed{log: log.Named("delivery"), engine: e, metrics: m, now: now, known: known,
		path: cfg.ReplyStateFile(), wake: make(chan struct{}, 1), cfg: cfg.Replies, rcfg: rc}
	if cfg.State.Backend == config.BackendMemory {
		f.path = "" // nothing is kept on the memory backend
	} else if err := readStateFile(f.log, f.path, "delivery state", "starting from normal", &f.saved); err != nil {
		return nil, err
	}
	f.tr = replies.NewTracker(rc, f.saved.State)
	f.mu.Lock()
	f.publish(now())
	f.mu.Unlock()
	return f, nil
}

// setConfig puts a reloaded [replies] in force.
func (f *deliveryFeed) setConfig(r config.Replies) error {
	rc, err := repliesConfig(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.cfg, f.rcfg = r, rc
	f.tr.SetConfig(rc)
	f.publish(f.now())
	f.mu.Unlock()
	f.poke()
	return nil
}

func (f *deliveryFeed) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// lookup answers one socketmap lookup: always "not found", so Postfix's
// own handling of the delivery is unchanged.
func (f *deliveryFeed) lookup(name, key string) socketmap.Reply {
	f.observe(key, zap.String("map", name))
	return socketmap.NotFound
}

// logLine takes one line of the MTA's log (replies.log_file). A block or
// throttle reply is logged with the account that sent the message, when
// msgate remembers its queue id.
func (f *deliveryFeed) logLine(ctx context.Context, line string) {
	e, ok := maillog.ParseLine(line)
	if !ok {
		return
	}
	fields := []zap.Field{zap.String("queue_id", e.QueueID)}
	if f.attributions != nil && !strings.HasPrefix(e.DSN, "2.") {
		if account, _, found, err := f.attributions.Attribute(ctx, e.QueueID); err == nil && found {
			fields = append(fields, zap.String("account", account))
		}
	}
	f.observe(e.Key(), fields...)
}

// observe counts one outcome ("<enhanced status> <text>").
func (f *deliveryFeed) observe(key string, fields ...zap.Field) {
	now := f.now()
	f.mu.Lock()
	obs, evs := f.tr.Observe(key, now)
	if len(evs) > 0 {
		f.took(evs, now)
	}
	if obs.Rule != "" {
		// The counts are saved too (by the worker, at most once a
		// second): a restart between the 4th and 5th block reply must
		// not start the count over.
		f.dirty = true
	}
	f.mu.Unlock()
	f.metrics.ObserveReply(obs.Class.String(), obs.Rule)
	switch obs.Class {
	case replies.ClassBlock, replies.ClassThrottle:
		f.log.Info("microsoft reply", append(fields, zap.String("class", obs.Class.String()), zap.String("rule", obs.Rule))...)
	case replies.ClassConnLimit, replies.ClassNotReputation:
		f.log.Debug("microsoft reply", append(fields, zap.String("class", obs.Class.String()), zap.String("rule", obs.Rule))...)
	}
	if len(evs) > 0 {
		f.poke()
	}
}

// took records transitions (f.mu held): the engine sees them at once, the
// worker carries out the rest.
func (f *deliveryFeed) took(evs []replies.Event, now time.Time) {
	evs = f.sndsHolds(evs, now)
	for _, e := range evs {
		fields := []zap.Field{zap.String("event", string(e.Kind)), zap.String("rule", e.Rule)}
		if !e.Until.IsZero() {
			fields = append(fields, zap.Time("until", e.Until))
		}
		if e.CapFactor != 0 {
			fields = append(fields, zap.Float64("cap_factor", e.CapFactor))
		}
		if e.Reply != "" {
			fields = append(fields, zap.String("reply", e.Reply))
		}
		f.log.Warn("microsoft delivery", fields...)
	}
	f.events = append(f.events, evs...)
	f.dirty = true
	f.publish(now)
}

// publish puts the state in force in the engine and the gauges (f.mu held).
func (f *deliveryFeed) publish(now time.Time) {
	st := f.state(now)
	dl := policy.Delivery{Hold: f.cfg.PausedAction == config.ActionHold, CapFactor: f.tr.CapFactor(now), RampDay: f.sndsRampDay}
	if st.Paused(now) {
		dl.Until = st.Until
	}
	if dl.CapFactor < 1 {
		dl.CapReason = fmt.Sprintf("Microsoft throttled this server (last at %s); every %s without a throttle takes back one step",
			st.Lowered.UTC().Format(time.RFC3339), config.Duration(f.rcfg.CapRecovery))
	}
	f.engine.SetDelivery(dl)
	f.metrics.SetDelivery(int(st.Mode), dl.CapFactor)
}

// state is the delivery state in force (f.mu held): the replies', with
// an SNDS block folded in.
func (f *deliveryFeed) state(now time.Time) replies.State {
	return f.sndsBlock.Apply(f.tr.State(), now)
}

// held records a message put on hold while delivery was suspended. A
// queue id reaches end of message once: no scan for duplicates under the
// lock the sessions share.
func (f *deliveryFeed) held(id string) {
	f.mu.Lock()
	f.saved.Held = append(f.saved.Held, id)
	f.dirty = true
	f.mu.Unlock()
	f.poke()
}

// status is the state for msgate status.
func (f *deliveryFeed) status() admin.DeliveryStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.state(f.now())
	ds := admin.DeliveryStatus{Feed: f.cfg.Listen != "" || f.cfg.LogFile != "", State: st.Mode.String(), Held: len(f.saved.Held), Paused: f.saved.QueuePaused}
	if st.Mode != replies.Normal {
		ds.Since, ds.Until, ds.Rule, ds.Reply = st.Since, st.Until, st.Rule, st.Reply
	}
	return ds
}

// run carries out transitions until ctx ends: at once when woken, and
// every second for suspensions that end and caps that recover.
func (f *deliveryFeed) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	f.step(ctx)
	for {
		select {
		case <-ctx.Done():
			f.step(context.Background())
			return
		case <-tick.C:
		case <-f.wake:
		}
		f.step(ctx)
	}
}

// step does what the state asks for now. Nothing here holds f.mu while a
// command runs.
func (f *deliveryFeed) step(ctx context.Context) {
	now := f.now()
	f.mu.Lock()
	if evs := f.tr.Tick(now); len(evs) > 0 {
		f.took(evs, now)
	} else {
		f.publish(now) // the cap recovers with time
	}
	evs := f.events
	f.events = nil
	st := f.state(now)
	cfg := f.cfg
	rules := f.rcfg.Rules
	paused := st.Paused(now)
	// Held mail goes once delivery resumed and its probation passed.
	resumed := !paused && len(f.saved.Held) > 0 && st.Mode == replies.Normal && !st.OnProbation(now)
	var release []string
	if resumed && f.paced != nil && f.paced() {
		// Counted and at the cap's pace, rather than all at once and
		// uncounted.
		f.log.Info("delivery resumed; held mail is left to the paced release", zap.Int("messages", len(f.saved.Held)))
		f.saved.Held, f.dirty = nil, true
	} else if resumed {
		release = slices.Clone(f.saved.Held)
	}
	dirty := f.dirty
	f.dirty = false
	queueWas := f.saved.QueuePaused
	f.mu.Unlock()

	stale := paused && queueWas && !now.Before(f.refreshed.Add(mapRefresh)) && f.mapped != f.mapContent(st, now)
	if cfg.TransportFile != "" && (paused != queueWas || stale || !fileExists(cfg.TransportFile+".db")) && !now.Before(f.retryTransport) {
		if err := f.writeTransport(ctx, cfg, st, paused, now); err != nil {
			f.retryTransport = now.Add(transportRetry)
			f.log.Error("cannot update the transport map; queued Microsoft mail is not paused or resumed", zap.String("file", cfg.TransportFile), zap.Error(err))
		} else {
			f.retryTransport = time.Time{}
			f.log.Info("transport map updated", zap.String("file", cfg.TransportFile), zap.Bool("microsoft_paused", paused))
			f.mu.Lock()
			f.saved.QueuePaused, dirty = paused, true
			f.mu.Unlock()
		}
	}
	if len(release) > 0 && !now.Before(f.retryRelease) {
		if err := f.release(ctx, cfg, release); err != nil {
			f.retryRelease = now.Add(transportRetry)
			f.log.Error("cannot release held mail; it stays held (postsuper -H by hand, or msgate retries)", zap.Int("messages", len(release)), zap.Error(err))
		} else {
			f.retryRelease = time.Time{}
			f.log.Info("held mail released", zap.Int("messages", len(release)))
			f.mu.Lock()
			// held only appends and only this worker takes away: what was
			// released is the front of the list.
			f.saved.Held = slices.Clone(f.saved.Held[len(release):])
			dirty = true
			f.mu.Unlock()
		}
	}
	if f.alert != nil {
		for _, e := range evs {
			f.alert(e, rules)
		}
	}
	for _, e := range evs {
		if e.Kind == replies.EventResumed && len(cfg.OnResume) > 0 {
			if err := runCommand(ctx, cfg.OnResume, nil); err != nil {
				f.log.Warn("on_resume failed", zap.Strings("command", cfg.OnResume), zap.Error(err))
			}
		}
		if len(cfg.OnEvent) > 0 {
			b, _ := json.Marshal(e)
			if err := runCommand(ctx, cfg.OnEvent, b); err != nil {
				f.log.Warn("on_event failed", zap.String("event", string(e.Kind)), zap.Error(err))
			}
		}
	}
	if dirty && f.path != "" {
		f.mu.Lock()
		f.saved.State = f.tr.State()
		b, _ := json.MarshalIndent(f.saved, "", "  ")
		f.mu.Unlock()
		if err := writeFileAtomic(f.path, b); err != nil {
			f.log.Error("cannot save the delivery state; a restart would forget it", zap.String("file", f.path), zap.Error(err))
		}
	}
}

// writeTransport writes the transport map, compiles it and has Postfix
// read it (replies.reload).
func (f *deliveryFeed) writeTransport(ctx context.Context, cfg config.Replies, st replies.State, paused bool, now time.Time) error {
	content := ""
	if paused {
		content = f.mapContent(st, now)
	}
	if err := writeFileAtomic(cfg.TransportFile, []byte("# Written by msgate (replies.transport_file): do not edit.\n"+content)); err != nil {
		return err
	}
	f.mapped, f.refreshed = content, now
	if err := runCommand(ctx, append(slices.Clone(cfg.Postmap), "hash:"+cfg.TransportFile), nil); err != nil {
		return err
	}
	if len(cfg.Reload) > 0 {
		if err := runCommand(ctx, cfg.Reload, nil); err != nil {
			f.log.Warn("the transport map is written but Postfix was not reloaded: it takes effect when trivial-rewrite restarts",
				zap.Strings("command", cfg.Reload), zap.Error(err))
		}
	}
	return nil
}

// mapContent is the paused map's entries: every Microsoft domain msgate
// knows, deferred until the suspension ends.
func (f *deliveryFeed) mapContent(st replies.State, now time.Time) string {
	var b strings.Builder
	text := fmt.Sprintf("retry:4.7.1 msgate: delivery to Microsoft paused until %s (%s)",
		st.Until.UTC().Format(time.RFC3339), st.Rule)
	for _, d := range f.known(now) {
		fmt.Fprintf(&b, "%s %s\n", d, text)
	}
	return b.String()
}

// releaseBatch bounds the queue ids on one postsuper command line.
const releaseBatch = 500

func (f *deliveryFeed) release(ctx context.Context, cfg config.Replies, ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), releaseBatch)
		args := slices.Clone(cfg.Release)
		for _, id := range ids[:n] {
			args = append(args, "-H", id)
		}
		if err := runCommand(ctx, args, nil); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// commandTimeout bounds every command msgate runs (on_flag, on_event, the
// transport map's and the hold queue's).
const commandTimeout = 30 * time.Second

// runCommand runs argv with stdin (nil for none) within commandTimeout; its
// error carries what the command printed.
func runCommand(ctx context.Context, argv []string, stdin []byte) error {
	_, err := commandOutput(ctx, argv, stdin)
	return err
}

// commandOutput is runCommand that also returns what the command printed,
// standard output and error together.
func commandOutput(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", argv[0], err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeFileAtomic replaces path with b, durably.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readStateFile reads the JSON state file at path into v; a missing file
// leaves v as it is. A damaged one is moved aside (path.damaged) for the
// admin and v zeroed: refusing to start would stop every decision over a
// file that only steers Microsoft delivery. what names the state and
// starting what msgate starts from then, for the errors and the log.
func readStateFile[T any](log *zap.Logger, path, what, starting string, v *T) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the %s: %w", what, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		var zero T
		*v = zero
		aside := path + ".damaged"
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("the %s %s is damaged (%v) and cannot be moved aside: %w", what, path, err, rerr)
		}
		log.Error("the "+what+" was damaged: kept aside, "+starting, zap.String("file", aside), zap.Error(err))
	}
	return nil
}

// followLog reads replies.log_file until ctx ends.
func (f *deliveryFeed) followLog(ctx context.Context, path string) {
	maillog.Follow(ctx, path, 250*time.Millisecond, func(line string) { f.logLine(ctx, line) }, func(err error) {
		f.log.Warn("cannot read the mail log", zap.String("file", path), zap.Error(err))
	})
}

// serveFeed listens for Postfix's socketmap lookups.
func (f *deliveryFeed) serveFeed(ln net.Listener) *socketmap.Server {
	s := &socketmap.Server{Handler: f.lookup, OnError: func(err error) {
		f.log.Warn("socketmap client broke the protocol", zap.Error(err))
	}}
	go s.Serve(ln)
	return s
}
