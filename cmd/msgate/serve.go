package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/detect"
	"github.com/msgate/msgate/policy/feedback"
	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/embedded"
	"github.com/msgate/msgate/policy/state/memory"
	redisstate "github.com/msgate/msgate/policy/state/redis"
	goredis "github.com/redis/go-redis/v9"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlags("serve", stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg, source, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	level, err := zapcore.ParseLevel(cfg.Log.Level)
	if err != nil {
		fmt.Fprintln(stderr, "msgate serve:", err)
		return exitUsage
	}
	atom := zap.NewAtomicLevelAt(level)
	// Lines wait in memory up to flush_interval and are written together:
	// written one by one, each decision line cost msgate a system call and
	// a wake-up of the writer. Stop writes what is left.
	out := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(stderr), FlushInterval: cfg.Log.FlushInterval.D()}
	defer out.Stop()
	log := newLogger(cfg.Log.Format, atom, out)

	d, err := newDaemon(cfg, log)
	if err != nil {
		log.Error("cannot start", zap.String("config", source), zap.Error(err))
		return exitUsage
	}
	d.source, d.level = source, atom
	defer d.close()
	ln, err := listen(cfg.Milter.Listen, cfg.Milter.FileMode())
	if err != nil {
		log.Error("cannot listen for the MTA", zap.String("listen", cfg.Milter.Listen), zap.Error(err))
		return exitTempFail
	}
	adminLn, err := listen(cfg.Admin.Listen, cfg.Admin.FileMode())
	if err != nil {
		ln.Close()
		log.Error("cannot listen for the admin API", zap.String("listen", cfg.Admin.Listen), zap.Error(err))
		return exitTempFail
	}
	if l := cfg.Replies.Listen; l != "" {
		if d.feedLn, err = listen(l, 0o660); err != nil {
			ln.Close()
			adminLn.Close()
			log.Error("cannot listen for Postfix's delivery status lookups", zap.String("listen", l), zap.Error(err))
			return exitTempFail
		}
	}
	log.Info("msgate serving",
		zap.String("version", version), zap.String("config", source),
		zap.String("milter", cfg.Milter.Listen), zap.String("admin", cfg.Admin.Listen),
		zap.String("state", cfg.State.Backend), zap.Int("rate_rules", len(cfg.Rate)),
		zap.Bool("cap", cfg.Mitigation.Enabled), zap.String("replies", cfg.Replies.Listen))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			d.reload()
		}
	}()
	if err := d.run(ctx, ln, adminLn); err != nil {
		log.Error("milter server failed", zap.Error(err))
		return exitFailure
	}
	log.Info("msgate stopped")
	return exitOK
}

// listen opens a socket in Postfix notation; a unix socket's directory is
// created when missing.
func listen(spec string, mode os.FileMode) (net.Listener, error) {
	network, address, err := config.ParseListen(spec)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := os.MkdirAll(filepath.Dir(address), 0o750); err != nil {
			return nil, fmt.Errorf("creating the socket's directory: %w", err)
		}
	}
	return milter.Listen(network, address, mode)
}

// daemon is msgate serve's parts, wired.
type daemon struct {
	cfg     atomic.Pointer[config.Config]
	source  string // the config file, or "built-in defaults"
	level   zap.AtomicLevel
	log     *zap.Logger
	det     atomic.Pointer[detect.Detector]
	store   state.Store
	engine  *policy.Engine
	srv     *milter.Server
	metrics *admin.Metrics
	api     *admin.Server
	now     func() time.Time
	// ingester is nil when the store cannot keep complaints.
	ingester atomic.Pointer[feedback.Ingester]
	// snds imports SNDS's exports; nil when [snds] key is empty.
	snds *sndsFeed
	// alerts carries [alerts] out.
	alerts *alerter
	// feed is what Microsoft's replies do; feedLn, when set, is where
	// Postfix reports them.
	feed   *deliveryFeed
	feedLn net.Listener
	// rel releases held mail ([release], msgate release).
	rel *releaser
}

func buildDetector(cfg *config.Config) (*detect.Detector, error) {
	m := cfg.Microsoft
	return detect.New(detect.Config{
		Resolver:        m.Resolver,
		ExtraDomains:    m.ExtraDomains,
		ExtraMXSuffixes: m.ExtraMXSuffixes,
		Timeout:         m.DNSTimeout.D(),
		MinTTL:          m.CacheMinTTL.D(),
		MaxTTL:          m.CacheMaxTTL.D(),
		NegativeTTL:     m.NegativeTTL.D(),
		MaxEntries:      m.CacheSize,
	})
}

func engineConfig(cfg *config.Config) (policy.Config, error) {
	pc := policy.Config{
		Exempt:               cfg.Accounts.Exempt,
		DeferOnDNSFailure:    cfg.Microsoft.OnDNSFailure == config.ActionDefer,
		AcceptOnStateFailure: cfg.Milter.OnError == config.ActionAccept,
		StampAll:             cfg.Feedback.StampAll,
	}
	sealer, err := buildSealer(cfg.Feedback)
	if err != nil {
		return pc, err
	}
	pc.Sealer = sealer
	for _, t := range cfg.Feedback.Threshold {
		a, err := policy.ParseRuleAction(t.Action)
		if err != nil || a == policy.RuleMonitor {
			return pc, fmt.Errorf("feedback threshold action %q", t.Action)
		}
		pc.Thresholds = append(pc.Thresholds, policy.Threshold{Complaints: t.Complaints, Within: t.Within.D(), Action: a})
	}
	m := cfg.Mitigation
	action, ok := policy.ParseCapAction(m.Action)
	if !ok {
		return pc, fmt.Errorf("mitigation.action %q", m.Action)
	}
	pc.Cap = policy.Cap{Enabled: m.Enabled, Daily: m.DailyCap, Window: m.Window.D(), Action: action,
		Ramp: m.Ramp, Growth: m.RampGrowth, Ceiling: m.RampCeiling}
	if start, ok := m.RampStartTime(); ok {
		pc.Cap.RampStart = start
	}
	for _, r := range cfg.Rate {
		a, err := policy.ParseRuleAction(r.Action)
		if err != nil {
			return pc, fmt.Errorf("rate %q: %w", r.Name, err)
		}
		pc.Rules = append(pc.Rules, policy.Rule{Name: r.Name, Window: r.Window.D(), Limit: r.Limit, Action: a})
	}
	return pc, nil
}

// openStore opens the configured backend; observeSync gets the time of
// each fdatasync of the embedded store's log. A Redis that does not answer
// is logged, not fatal: decisions get milter.on_error until it does.
func openStore(cfg *config.Config, log *zap.Logger, observeSync func(time.Duration)) (state.Store, error) {
	switch cfg.State.Backend {
	case config.BackendMemory:
		return memory.New(), nil
	case config.BackendEmbedded:
		if err := os.MkdirAll(filepath.Dir(cfg.State.Path), 0o750); err != nil {
			return nil, fmt.Errorf("creating the state directory: %w", err)
		}
		s, err := embedded.Open(embedded.Options{Path: cfg.State.Path, ObserveSync: observeSync})
		if err != nil {
			return nil, fmt.Errorf("opening the state file: %w", err)
		}
		return s, nil
	case config.BackendRedis:
		// The report spool lives beside state.path.
		if err := os.MkdirAll(filepath.Dir(cfg.State.Path), 0o750); err != nil {
			return nil, fmt.Errorf("creating the state directory: %w", err)
		}
		goredis.SetLogger(redisLog{log.Named("redis")})
		c, err := redisstate.Dial(cfg.State.RedisURL, cfg.State.Timeout.D())
		if err != nil {
			return nil, fmt.Errorf("state.redis_url: %w", err)
		}
		s, err := redisstate.New(redisstate.Options{Client: c, Prefix: cfg.State.RedisPrefix, Timeout: cfg.State.Timeout.D()})
		if err != nil {
			return nil, err
		}
		if err := s.Ping(context.Background()); err != nil {
			log.Warn("Redis does not answer; decisions follow milter.on_error until it does", zap.String("redis_url", redactURL(cfg.State.RedisURL)), zap.Error(err))
		}
		return s, nil
	}
	return nil, fmt.Errorf("state.backend %q is not available", cfg.State.Backend)
}

// redisLog puts go-redis's own messages (a failed dial, a dropped
// connection) in msgate's log, at warn: they say Redis is unreachable.
type redisLog struct{ log *zap.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

func newDaemon(cfg *config.Config, log *zap.Logger) (*daemon, error) {
	det, err := buildDetector(cfg)
	if err != nil {
		return nil, err
	}
	pc, err := engineConfig(cfg)
	if err != nil {
		return nil, err
	}
	d := &daemon{log: log, now: time.Now, level: zap.NewAtomicLevel(), source: "test"}
	// The metrics come first, for the store reports its syncs to them;
	// they read the engine and the server, set below, only when scraped.
	d.metrics = admin.NewMetrics(func() (float64, float64) { return admin.CapUsage(d.engine, d.now)() },
		func() detect.Stats { return d.det.Load().Stats() }, func() int { return d.srv.Active() })
	d.alerts = newAlerter(cfg.Alerts, log, d.metrics.Registerer())
	store, err := openStore(cfg, log, d.metrics.ObserveSync)
	if err != nil {
		return nil, err
	}
	d.store = store
	d.cfg.Store(cfg)
	d.det.Store(det)
	d.engine = policy.NewEngine(pc, det, store)
	d.srv = milter.NewServer(milter.Options{
		Policy:          d.engine,
		Logger:          log,
		Now:             d.now,
		IdleTimeout:     cfg.Milter.IdleTimeout.D(),
		WriteTimeout:    cfg.Milter.WriteTimeout.D(),
		DecisionTimeout: cfg.Microsoft.DNSTimeout.D() + time.Second,
	})
	d.feed, err = newDeliveryFeed(cfg, log, d.engine, d.metrics, func() time.Time { return d.now() },
		func(now time.Time) []string { return d.det.Load().MicrosoftDomains(now) })
	if err != nil {
		store.Close()
		return nil, err
	}
	d.feed.attributions = store
	d.feed.alert = d.alerts.delivery
	if d.snds, err = newSNDSFeed(cfg, log, d.metrics, d.feed, func() time.Time { return d.now() },
		func() config.Mitigation { return d.cfg.Load().Mitigation }); err != nil {
		store.Close()
		return nil, err
	}
	d.srv.Observe(func(stage string, dec policy.Decision, took time.Duration) {
		d.metrics.Observe(stage, dec, took)
		d.alerts.observe(stage, dec)
		if dec.Verdict == policy.Hold && dec.Reason == policy.ReasonDeliveryPaused && dec.QueueID != "" {
			d.feed.held(dec.QueueID)
		}
	})
	d.rel = &releaser{log: log.Named("release"), engine: d.engine, cfg: d.cfg.Load, attributions: store, now: d.now,
		detector:   func() policy.Detector { return d.det.Load() },
		releasable: func(now time.Time) bool { return !d.engine.Delivery().Paused(now) }, wake: make(chan struct{}, 1)}
	d.feed.paced = d.rel.takeOver
	d.api = &admin.Server{Engine: d.engine, Metrics: d.metrics, Now: d.now, Sessions: d.srv.Active, Log: log.Named("admin"),
		Ingest: d.ingest, Delivery: d.feed.status, Release: d.rel.run}
	d.api.SNDS = d.snds.status
	if d.snds != nil {
		d.snds.OnEvent = d.alerts.snds
	}
	d.api.Changed = d.alerts.transition
	d.setIngester(pc)
	return d, nil
}

func (d *daemon) setIngester(pc policy.Config) {
	d.ingester.Store(&feedback.Ingester{Sealer: pc.Sealer, Attributions: d.store, Recorder: d.engine})
}

// reload re-reads the config file (SIGHUP). A config with problems is
// refused whole and the running one kept; counts survive either way.
func (d *daemon) reload() {
	if d.source == "built-in defaults" {
		d.log.Warn("reload: running on built-in defaults; there is no config file to re-read")
		return
	}
	cfg, err := config.Load(d.source)
	if err == nil {
		err = d.apply(cfg)
	}
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			for _, p := range cerr.Problems {
				d.log.Error("reload refused: config problem", zap.String("key", p.Key), zap.String("problem", p.Msg))
			}
		} else {
			d.log.Error("reload refused", zap.Error(err))
		}
		d.log.Warn("reload refused; the running configuration stays in force", zap.String("config", d.source))
		return
	}
	d.log.Info("configuration reloaded", zap.String("config", d.source), zap.Int("rate_rules", len(cfg.Rate)),
		zap.Bool("cap", cfg.Mitigation.Enabled))
}

// apply puts a new configuration in force. What only a restart changes is
// logged as such.
func (d *daemon) apply(cfg *config.Config) error {
	old := d.cfg.Load()
	det, err := buildDetector(cfg)
	if err != nil {
		return err
	}
	pc, err := engineConfig(cfg)
	if err != nil {
		return err
	}
	for key, changed := range map[string]bool{
		"milter.listen":      cfg.Milter.Listen != old.Milter.Listen,
		"admin.listen":       cfg.Admin.Listen != old.Admin.Listen,
		"state.backend":      cfg.State.Backend != old.State.Backend,
		"log.format":         cfg.Log.Format != old.Log.Format,
		"log.flush_interval": cfg.Log.FlushInterval != old.Log.FlushInterval,
		"replies.listen":     cfg.Replies.Listen != old.Replies.Listen,
		"replies.log_file":   cfg.Replies.LogFile != old.Replies.LogFile,
		"replies.state_file": cfg.ReplyStateFile() != old.ReplyStateFile(),
		"snds":               !reflect.DeepEqual(cfg.SNDS, old.SNDS),
	} {
		if changed {
			d.log.Warn("reload: this setting changes only on restart", zap.String("key", key))
		}
	}
	if err := d.feed.setConfig(cfg.Replies); err != nil {
		return err
	}
	if lvl, err := zapcore.ParseLevel(cfg.Log.Level); err == nil {
		d.level.SetLevel(lvl)
	}
	d.det.Store(det)
	d.engine.Reload(pc, det)
	d.alerts.configure(cfg.Alerts)
	d.setIngester(pc)
	d.cfg.Store(cfg)
	return nil
}

// run serves the milter on ln and the admin API on adminLn until ctx ends,
// then shuts down gracefully within the configured deadline.
func (d *daemon) run(ctx context.Context, ln, adminLn net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Serve(ln) }()
	api := &http.Server{Handler: d.api.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: zap.NewStdLog(d.log.Named("admin"))}
	if adminLn != nil {
		go func() {
			if err := api.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("admin API stopped", zap.Error(err))
			}
		}()
	}
	// The daemon's own workers run until run returns.
	fctx, fstop := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	defer func() { fstop(); workers.Wait() }()
	workers.Go(func() { d.feed.run(fctx) })
	workers.Go(func() {
		d.alerts.watchCap(fctx, d.engine, func() time.Time { return d.now() }, func() time.Duration { return d.cfg.Load().State.Timeout.D() })
	})
	workers.Go(func() { d.rel.loop(fctx) })
	if path := d.cfg.Load().Replies.LogFile; path != "" {
		workers.Go(func() { d.feed.followLog(fctx, path) })
	}
	if d.snds != nil {
		workers.Go(func() { d.snds.run(fctx) })
	}
	if d.feedLn != nil {
		fs := d.feed.serveFeed(d.feedLn)
		defer func() { d.feedLn.Close(); fs.Close() }()
	}
	expire := time.NewTicker(time.Minute)
	defer expire.Stop()
	// Reports spooled while the daemon was down are taken at start and
	// then every few seconds.
	spoolTick := time.NewTicker(5 * time.Second)
	defer spoolTick.Stop()
	d.drainSpool(ctx)
	for {
		select {
		case err := <-errc:
			api.Close()
			return err
		case <-spoolTick.C:
			d.drainSpool(ctx)
		case <-expire.C:
			if err := d.store.Expire(ctx, d.now()); err != nil {
				d.log.Warn("expiring old counts failed", zap.Error(err))
			}
			d.forget(ctx, d.now())
		case <-ctx.Done():
			deadline := d.cfg.Load().Milter.ShutdownTimeout.D()
			d.log.Info("shutting down", zap.Int("sessions", d.srv.Active()), zap.Stringer("deadline", deadline))
			sctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			d.srv.Shutdown(sctx)
			api.Shutdown(sctx)
			if err := <-errc; !errors.Is(err, milter.ErrServerClosed) {
				return err
			}
			return nil
		}
	}
}

func (d *daemon) close() {
	d.alerts.close()
	if err := d.store.Close(); err != nil {
		d.log.Warn("closing state", zap.Error(err))
	}
}

// redactURL drops the password from a URL for the logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}
