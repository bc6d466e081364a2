package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/detect"
	"github.com/msgate/msgate/policy/state"
	"github.com/msgate/msgate/policy/state/memory"
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
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "msgate serve:", err)
		return exitUsage
	}
	defer log.Sync()
	// go-milter reports connection errors through the standard logger.
	undo, _ := zap.RedirectStdLogAt(log.Named("go-milter"), zap.WarnLevel)
	defer undo()

	d, err := newDaemon(cfg, log)
	if err != nil {
		log.Error("cannot start", zap.String("config", source), zap.Error(err))
		return exitUsage
	}
	defer d.close()
	network, address, _ := config.ParseListen(cfg.Milter.Listen)
	ln, err := milter.Listen(network, address, cfg.Milter.FileMode())
	if err != nil {
		log.Error("cannot listen", zap.String("listen", cfg.Milter.Listen), zap.Error(err))
		return exitTempFail
	}
	log.Info("msgate serving",
		zap.String("version", version), zap.String("config", source),
		zap.String("milter", cfg.Milter.Listen), zap.String("state", cfg.State.Backend),
		zap.Int("rate_rules", len(cfg.Rate)))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := d.run(ctx, ln); err != nil {
		log.Error("milter server failed", zap.Error(err))
		return exitFailure
	}
	log.Info("msgate stopped")
	return exitOK
}

// daemon is msgate serve's parts, wired.
type daemon struct {
	cfg    *config.Config
	log    *zap.Logger
	det    *detect.Detector
	store  state.Store
	engine *policy.Engine
	srv    *milter.Server
	now    func() time.Time
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

func newDaemon(cfg *config.Config, log *zap.Logger) (*daemon, error) {
	det, err := buildDetector(cfg)
	if err != nil {
		return nil, err
	}
	pc, err := engineConfig(cfg)
	if err != nil {
		return nil, err
	}
	var store state.Store
	switch cfg.State.Backend {
	case config.BackendMemory:
		store = memory.New()
	default:
		return nil, fmt.Errorf("state.backend %q is not available", cfg.State.Backend)
	}
	d := &daemon{cfg: cfg, log: log, det: det, store: store, now: time.Now}
	d.engine = policy.NewEngine(pc, det, store)
	d.srv = milter.NewServer(milter.Options{
		Policy:          d.engine,
		Logger:          log,
		Now:             d.now,
		IdleTimeout:     cfg.Milter.IdleTimeout.D(),
		WriteTimeout:    cfg.Milter.WriteTimeout.D(),
		DecisionTimeout: cfg.Microsoft.DNSTimeout.D() + time.Second,
	})
	return d, nil
}

// run serves on ln until ctx ends, then shuts down gracefully within the
// configured deadline.
func (d *daemon) run(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Serve(ln) }()
	expire := time.NewTicker(time.Minute)
	defer expire.Stop()
	for {
		select {
		case err := <-errc:
			return err
		case <-expire.C:
			if e, ok := d.store.(state.Expirer); ok {
				if err := e.Expire(ctx, d.now()); err != nil {
					d.log.Warn("expiring old counts failed", zap.Error(err))
				}
			}
		case <-ctx.Done():
			d.log.Info("shutting down", zap.Int("sessions", d.srv.Active()),
				zap.Stringer("deadline", d.cfg.Milter.ShutdownTimeout.D()))
			sctx, cancel := context.WithTimeout(context.Background(), d.cfg.Milter.ShutdownTimeout.D())
			defer cancel()
			d.srv.Shutdown(sctx)
			if err := <-errc; !errors.Is(err, milter.ErrServerClosed) {
				return err
			}
			return nil
		}
	}
}

func (d *daemon) close() {
	if err := d.store.Close(); err != nil {
		d.log.Warn("closing state", zap.Error(err))
	}
}
