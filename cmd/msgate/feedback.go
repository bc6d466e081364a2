package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/msgate/msgate/cmd/msgate/internal/spool"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/feedback"
	"github.com/msgate/msgate/policy/feedback/stamp"
)

// buildSealer makes the stamp sealer from [feedback]; nil when no secret is
// configured.
func buildSealer(f config.Feedback) (*stamp.Sealer, error) {
	if f.Secret == "" {
		return nil, nil
	}
	var retired []stamp.Key
	for _, r := range f.Retired {
		retired = append(retired, stamp.Key{Secret: []byte(r.Secret), NotAfter: r.UntilTime()})
	}
	s, err := stamp.New(stamp.Key{Secret: []byte(f.Secret)}, retired, f.MaxAge.D())
	if err != nil {
		return nil, fmt.Errorf("feedback.secret: %w", err)
	}
	return s, nil
}

// FlagEvent is what on_flag's command reads on its standard input.
type FlagEvent struct {
	Event      string    `json:"event"` // "flagged"
	Account    string    `json:"account"`
	Action     string    `json:"action"`
	Complaints int       `json:"complaints"`
	Within     string    `json:"within"`
	At         time.Time `json:"at"`
	ReportID   string    `json:"report_id"`
}

// ingest records one report handed to the daemon (by msgate fbl or from
// the spool). An error means the store failed and the report must be kept.
func (d *daemon) ingest(ctx context.Context, raw []byte) (feedback.Result, error) {
	now := d.now()
	res, err := d.ingester.Load().Ingest(ctx, raw, now)
	if err != nil {
		return res, err
	}
	d.metrics.ObserveReport(res)
	log := d.log.With(zap.String("format", res.Format), zap.String("feedback_type", res.FeedbackType),
		zap.String("outcome", res.Outcome), zap.String("attributed_by", res.AttributedBy),
		zap.String("account", res.Account), zap.String("report_id", res.ReportID))
	switch res.Outcome {
	case feedback.OutcomeUnparseable:
		path, err := spool.Write(d.spoolDir(), spool.Unparseable, raw, now)
		if err != nil {
			log.Error("an unparseable report could not be kept", zap.Error(err))
		} else {
			log.Warn("unparseable report kept for the admin", zap.String("path", path), zap.String("detail", res.Detail))
		}
		return res, nil
	case feedback.OutcomeRecorded:
	default:
		log.Info("complaint report", zap.String("detail", res.Detail))
		return res, nil
	}
	st := res.Change.Now
	d.alerts.transition(res.Change, now)
	log.Info("complaint recorded", zap.Int("complaints", len(st.Complaints)), zap.Bool("flagged", st.Flagged))
	if res.Change.Flagged() && st.Threshold != nil {
		ev := FlagEvent{Event: "flagged", Account: res.Account, Action: st.Action.String(),
			Complaints: len(st.Complaints), Within: st.Threshold.Within.String(), At: now.UTC(), ReportID: res.ReportID}
		d.log.Warn("account flagged by complaints", zap.String("account", ev.Account), zap.String("action", ev.Action),
			zap.Int("complaints", ev.Complaints), zap.String("within", ev.Within))
		d.notify(ev)
	}
	return res, nil
}

// notify runs on_flag's command in the background.
func (d *daemon) notify(ev FlagEvent) {
	argv := d.cfg.Load().Feedback.OnFlag
	if len(argv) == 0 {
		return
	}
	body, _ := json.Marshal(ev)
	go func() {
		if err := runCommand(context.Background(), argv, append(body, '\n')); err != nil {
			d.log.Error("on_flag command failed", zap.Strings("command", argv), zap.Error(err))
		}
	}()
}

func (d *daemon) spoolDir() string { return d.cfg.Load().SpoolDir() }

// drainSpool ingests the reports that msgate fbl left while the daemon was
// down. A report stays when the store fails, to be tried again.
func (d *daemon) drainSpool(ctx context.Context) {
	dir := d.spoolDir()
	paths, err := spool.Pending(dir)
	if err != nil {
		d.log.Error("reading the report spool", zap.String("spool", dir), zap.Error(err))
		return
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			d.log.Error("reading a spooled report", zap.String("path", p), zap.Error(err))
			continue
		}
		if _, err := d.ingest(ctx, raw); err != nil {
			d.log.Warn("spooled report not ingested; will retry", zap.String("path", p), zap.Error(err))
			return
		}
		if err := spool.Done(p); err != nil {
			d.log.Error("removing an ingested report from the spool", zap.String("path", p), zap.Error(err))
		}
	}
}

// forget drops complaints and queue ids older than the retention.
func (d *daemon) forget(ctx context.Context, now time.Time) {
	cutoff := now.Add(-d.cfg.Load().Feedback.Retention.D())
	if err := d.store.ForgetComplaints(ctx, cutoff); err != nil {
		d.log.Warn("forgetting old complaints", zap.Error(err))
	}
	if err := d.store.ForgetAttributions(ctx, cutoff); err != nil {
		d.log.Warn("forgetting old queue ids", zap.Error(err))
	}
}
