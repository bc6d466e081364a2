package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/replies"
	"github.com/msgate/msgate/policy/snds"
)

// maxSNDSBody bounds one export read: a day's data is one short line per
// IP, so even a large allocation's export stays far below it.
const maxSNDSBody = 8 << 20

// savedSNDS is the SNDS state file: the last good import.
type savedSNDS struct {
	Import snds.Import `json:"import"`
	// BlockedSince is when an import first listed the block in force
	// (zero: none).
	BlockedSince time.Time `json:"blocked_since,omitzero"`
	// Days are the days imported since the ramp started, and whether each
	// was GREEN (snds.ramp_green_only).
	Days map[string]bool `json:"days,omitempty"`
}

// sndsFeed fetches SNDS's exports on a schedule and imports them whole or
// not at all: it keeps the last good import in its state file, shows it in
// status and /metrics, and passes a block to the delivery feed.
type sndsFeed struct {
	log      *zap.Logger
	cfg      config.SNDS
	acfg     snds.Config
	path     string // "" on the memory backend
	client   *http.Client
	now      func() time.Time
	metrics  *admin.Metrics
	delivery *deliveryFeed
	// mitigation is the [mitigation] in force, for its ramp.
	mitigation func() config.Mitigation

	// OnEvent, when set before run, is called with every event: a block
	// listed or lifted, a row turned RED or over the complaint threshold,
	// a failed import. It is called from the fetcher's goroutine, one
	// event at a time and with no lock held; it must not block for long.
	OnEvent func(snds.Event)

	mu          sync.Mutex
	saved       savedSNDS
	assessed    snds.Assessment
	lastAttempt time.Time
	lastError   string
	errors      int
}

// newSNDSFeed returns nil when [snds] key is empty. It reads the state
// file and puts a block it records in force at once.
func newSNDSFeed(cfg *config.Config, log *zap.Logger, m *admin.Metrics, delivery *deliveryFeed, now func() time.Time,
	mitigation func() config.Mitigation) (*sndsFeed, error) {
	if cfg.SNDS.Key == "" {
		return nil, nil
	}
	f := &sndsFeed{log: log.Named("snds"), cfg: cfg.SNDS, path: cfg.SNDSStateFile(), now: now, metrics: m, delivery: delivery, mitigation: mitigation,
		acfg:   snds.Config{IPs: cfg.SNDS.Addrs(), ComplaintThreshold: cfg.SNDS.ComplaintThreshold},
		client: &http.Client{Timeout: cfg.SNDS.Timeout.D()}}
	if cfg.State.Backend == config.BackendMemory {
		f.path = ""
	} else if err := readStateFile(f.log, f.path, "SNDS state", "starting without an import", &f.saved); err != nil {
		return nil, err
	}
	f.assessed = snds.Assess(f.acfg, f.saved.Import)
	f.publish(now())
	return f, nil
}

// hold is how long an SNDS block lasts past a fetch attempt: until the
// next attempt has had its time, and one more, so that only a stopped
// daemon lets it lapse.
func (f *sndsFeed) hold() time.Duration { return 2*f.cfg.Interval.D() + f.cfg.Timeout.D() }

// rampStart is the mitigation ramp's first day when only GREEN days
// advance it; ok is false otherwise.
func (f *sndsFeed) rampStart() (start time.Time, ok bool) {
	if !f.cfg.RampGreenOnly {
		return time.Time{}, false
	}
	return f.mitigation().RampStartTime()
}

// publish hands the assessment to the delivery feed and the gauges.
func (f *sndsFeed) publish(now time.Time) {
	start, green := f.rampStart()
	f.mu.Lock()
	var b snds.Block
	if f.assessed.Blocked {
		b = snds.Block{Since: f.saved.BlockedSince, Until: now.Add(f.hold()), Reason: f.assessed.Reason()}
	}
	rampDay := 0
	if green {
		rampDay = snds.RampDay(f.saved.Days, start, now)
	}
	f.mu.Unlock()
	f.delivery.setSNDS(b, rampDay, now)
	f.metrics.SetSNDS(f.status())
}

// run fetches every interval until ctx ends. The first fetch comes an
// interval after the last good import, so restarts do not fetch again.
func (f *sndsFeed) run(ctx context.Context) {
	f.mu.Lock()
	wait := f.saved.Import.At.Add(f.cfg.Interval.D()).Sub(f.now())
	f.mu.Unlock()
	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.importOnce(ctx)
		t.Reset(f.cfg.Interval.D())
	}
}

// importOnce fetches both exports and imports them, or changes nothing
// and logs why.
func (f *sndsFeed) importOnce(ctx context.Context) error {
	now := f.now()
	imp, err := f.fetch(ctx, now)
	f.mu.Lock()
	f.lastAttempt = now
	if err != nil {
		f.lastError = err.Error()
		f.errors++
		last := f.saved.Import.At
		f.mu.Unlock()
		f.metrics.SNDSImported(false)
		f.log.Warn("SNDS import failed; the last import stays in force", zap.Time("last_import", last), zap.Error(err))
		f.publish(now) // a block in force is renewed: it lasts until an import lifts it
		f.emit(snds.Event{Kind: snds.EventImportFailed, At: now, Reason: err.Error()})
		return err
	}
	if start, ok := f.rampStart(); ok {
		f.saved.Days = snds.MergeDays(f.saved.Days, snds.GreenDays(f.acfg, imp), start)
	}
	prev := f.assessed
	cur := snds.Assess(f.acfg, imp)
	evs := snds.Events(f.acfg, prev, cur, now)
	f.saved.Import = imp
	switch {
	case !cur.Blocked:
		f.saved.BlockedSince = time.Time{}
	case !prev.Blocked || f.saved.BlockedSince.IsZero():
		f.saved.BlockedSince = now
	}
	f.assessed, f.lastError = cur, ""
	var b []byte
	if f.path != "" {
		b, _ = json.MarshalIndent(f.saved, "", "  ")
	}
	f.mu.Unlock()
	if b != nil {
		if err := writeFileAtomic(f.path, b); err != nil {
			f.log.Error("cannot save the SNDS import; a restart starts from the one before", zap.String("file", f.path), zap.Error(err))
		}
	}
	f.metrics.SNDSImported(true)
	f.publish(now)
	f.log.Info("SNDS imported", zap.Int("rows", len(imp.Data)), zap.Int("ranges", len(imp.Status)), zap.Bool("blocked", cur.Blocked),
		zap.Int("green", cur.Green), zap.Int("yellow", cur.Yellow), zap.Int("red", cur.Red), zap.Stringer("worst_complaint_rate", cur.Worst))
	for _, e := range evs {
		f.log.Warn("SNDS", zap.String("event", string(e.Kind)), zap.String("detail", e.String()))
		f.emit(e)
	}
	return nil
}

func (f *sndsFeed) emit(e snds.Event) {
	if f.OnEvent != nil {
		f.OnEvent(e)
	}
}

// fetch reads and parses both exports within snds.timeout.
func (f *sndsFeed) fetch(ctx context.Context, now time.Time) (snds.Import, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout.D())
	defer cancel()
	dataURL, err := snds.DataURL(f.cfg.BaseURL, f.cfg.Key, time.Time{})
	if err != nil {
		return snds.Import{}, err
	}
	statusURL, err := snds.StatusURL(f.cfg.BaseURL, f.cfg.Key)
	if err != nil {
		return snds.Import{}, err
	}
	data, err := f.get(ctx, "data.aspx", dataURL)
	if err != nil {
		return snds.Import{}, err
	}
	rows, err := snds.ParseData(data)
	if err != nil {
		return snds.Import{}, err
	}
	status, err := f.get(ctx, "ipStatus.aspx", statusURL)
	if err != nil {
		return snds.Import{}, err
	}
	ranges, err := snds.ParseIPStatus(status)
	if err != nil {
		return snds.Import{}, err
	}
	return snds.Import{At: now, Data: rows, Status: ranges}, nil
}

// get reads one export. Its errors name the page, never the URL: the key
// is in the URL.
func (f *sndsFeed) get(ctx context.Context, page, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching SNDS %s: %w", page, hideURL(err))
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching SNDS %s: %w", page, hideURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching SNDS %s: HTTP status %s", page, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSNDSBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading SNDS %s: %w", page, hideURL(err))
	}
	if len(b) > maxSNDSBody {
		return nil, fmt.Errorf("reading SNDS %s: the answer is larger than %d bytes", page, maxSNDSBody)
	}
	return b, nil
}

// hideURL drops the URL (and the key in it) from an HTTP client error.
func hideURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("%s: %w", uerr.Op, uerr.Err)
	}
	return err
}

// status is the import for msgate status.
func (f *sndsFeed) status() admin.SNDSStatus {
	if f == nil {
		return admin.SNDSStatus{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.assessed
	st := admin.SNDSStatus{Enabled: true, Imported: f.saved.Import.At, LastAttempt: f.lastAttempt, LastError: f.lastError, ImportErrors: f.errors,
		Blocked: a.Blocked, Reason: a.Reason(), BlockedRanges: len(a.BlockedRanges), Green: a.Green, Yellow: a.Yellow, Red: a.Red,
		OverThreshold: len(a.OverThreshold), ComplaintThreshold: f.acfg.ComplaintThreshold}
	if a.Blocked {
		st.BlockedSince = f.saved.BlockedSince
	}
	if a.WorstIP.IsValid() {
		st.WorstComplaintRate, st.WorstPercent, st.WorstIP = a.Worst.String(), a.Worst.Percent, a.WorstIP.String()
	}
	for _, v := range a.IPs {
		ip := admin.SNDSIP{IP: v.IP.String(), InData: v.InData, Blocked: v.Blocked}
		if v.InData {
			ip.Filter, ip.ComplaintRate, ip.Percent = v.Filter.String(), v.Complaints.String(), v.Complaints.Percent
		}
		st.IPs = append(st.IPs, ip)
	}
	return st
}

// sndsHolds drops the replies' resume while an SNDS block holds delivery
// (f.mu held): delivery resumes when the block is lifted.
func (f *deliveryFeed) sndsHolds(evs []replies.Event, now time.Time) []replies.Event {
	if !f.sndsBlock.Active(now) {
		return evs
	}
	return slices.DeleteFunc(evs, func(e replies.Event) bool { return e.Kind == replies.EventResumed })
}

// setSNDS puts SNDS's block (the zero Block for none) and ramp day (0:
// the calendar's) in force in the delivery state. Listing and lifting are
// transitions like the replies': logged, passed to on_event, and acted on
// by the worker.
func (f *deliveryFeed) setSNDS(b snds.Block, rampDay int, now time.Time) {
	f.mu.Lock()
	was, is := f.sndsBlock.Active(now), b.Active(now)
	f.sndsBlock, f.sndsRampDay = b, rampDay
	var evs []replies.Event
	switch {
	case is && !was:
		evs = append(evs, replies.Event{Kind: replies.EventBlocked, At: now, Rule: snds.RuleName, Reply: b.Reason, Until: b.Until})
	case was && !is && !f.tr.State().Paused(now):
		evs = append(evs, replies.Event{Kind: replies.EventResumed, At: now, Rule: snds.RuleName})
	}
	if len(evs) > 0 {
		f.took(evs, now)
	} else {
		f.publish(now)
	}
	f.mu.Unlock()
	if len(evs) > 0 {
		f.poke()
	}
}
