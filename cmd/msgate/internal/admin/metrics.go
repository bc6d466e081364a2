package admin

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/detect"
)

// Metrics are msgate's Prometheus metrics. Labels take values from fixed
// sets only: never an address, a login or a domain.
type Metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	sync      prometheus.Histogram
	replies   *prometheus.CounterVec
	delivery  prometheus.Gauge
	capFactor prometheus.Gauge
	feedback  *feedbackMetrics
	snds      *sndsMetrics
	// The children of decisions and latency met so far: a label set
	// resolved once, not hashed and checked on every decision.
	counters sync.Map // decisionLabels -> prometheus.Counter
	stages   sync.Map // stage -> prometheus.Observer
}

type decisionLabels struct {
	stage   string
	verdict policy.Verdict
	reason  policy.Reason
	monitor bool
}

const decisionsHelp = "Decisions by stage (recipient, end-of-message), action (accept, defer, reject, hold), " +
	"reason (not-microsoft, null-sender, exempt, within-limits, rate-limit, daily-cap, account-flagged, " +
	"dns-failure, state-failure, duplicate-recipient, message-accepted, message-refused) and " +
	"would_have_acted (true for monitor rules past their limit)."

// NewMetrics registers the metrics. capUsage reports the cap's use and
// limit when scraped; det and sessions feed the detection and session
// gauges.
func NewMetrics(capUsage func() (used, limit float64), det func() detect.Stats, sessions func() int) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "msgate_decisions_total",
			Help: decisionsHelp,
		}, []string{"stage", "action", "reason", "would_have_acted"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "msgate_decision_duration_seconds",
			Help:    "Time the policy took over one decision, by stage (recipient, end-of-message).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 2.5},
		}, []string{"stage"}),
	}
	m.sync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "msgate_state_sync_duration_seconds",
		Help: "Time each fdatasync of the embedded state's log took: the disk wait that end of message " +
			"shares with the other commits of its batch (none with the memory backend).",
		Buckets: []float64{.0001, .00025, .0005, .00075, .001, .002, .005, .01, .025, .1, .5, 2.5},
	})
	m.replies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "msgate_delivery_replies_total",
		Help: "Delivery outcomes Postfix reported (smtp_delivery_status_filter), by class (block, throttle, " +
			"connection_limit, not_reputation, success, other) and the first [[replies.rule]] that matched (\"\" for none).",
	}, []string{"class", "rule"})
	m.delivery = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "msgate_microsoft_delivery_state",
		Help: "Microsoft delivery: 0 normal, 1 throttled (suspended after throttle replies), 2 blocked (suspended after block replies).",
	})
	m.capFactor = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "msgate_cap_factor",
		Help: "What Microsoft's throttle replies multiply the cap by now (1: not lowered).",
	})
	m.capFactor.Set(1)
	m.feedback = newFeedbackMetrics(reg)
	m.snds = newSNDSMetrics(reg)
	reg.MustRegister(m.decisions, m.latency, m.sync, m.replies, m.delivery, m.capFactor)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "msgate_cap_used",
		Help: "Microsoft units counted against the server-wide cap in its window (committed and reserved).",
	}, func() float64 { u, _ := capUsage(); return u }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "msgate_cap_limit",
		Help: "The server-wide cap in force now (0 when the cap is disabled).",
	}, func() float64 { _, l := capUsage(); return l }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "msgate_detect_lookups_total",
		Help: "MX lookups started to classify recipient domains.",
	}, func() float64 { return float64(det().Lookups) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "msgate_detect_cache_hits_total",
		Help: "Recipient domains classified from the MX cache.",
	}, func() float64 { return float64(det().CacheHits) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "msgate_detect_lookup_failures_total",
		Help: "MX lookups that failed (timeout, SERVFAIL, network); on_dns_failure applied.",
	}, func() float64 { return float64(det().Failures) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "msgate_milter_sessions",
		Help: "Open milter connections.",
	}, func() float64 { return float64(sessions()) }))
	return m
}

// ObserveReply counts one delivery outcome.
func (m *Metrics) ObserveReply(class, rule string) { m.replies.WithLabelValues(class, rule).Inc() }

// SetDelivery sets the delivery state gauges: mode 0 normal, 1 throttled,
// 2 blocked.
func (m *Metrics) SetDelivery(mode int, capFactor float64) {
	m.delivery.Set(float64(mode))
	m.capFactor.Set(capFactor)
}

// ObserveSync records one fdatasync of the state's log; it fits
// embedded.Options.ObserveSync.
func (m *Metrics) ObserveSync(took time.Duration) { m.sync.Observe(took.Seconds()) }

// Observe records one decision; it fits milter.Options.Observe.
func (m *Metrics) Observe(stage string, d policy.Decision, took time.Duration) {
	key := decisionLabels{stage, d.Verdict, d.Reason, d.Monitor}
	c, ok := m.counters.Load(key)
	if !ok {
		would := "false"
		if d.Monitor {
			would = "true"
		}
		c, _ = m.counters.LoadOrStore(key, m.decisions.WithLabelValues(stage, d.Verdict.String(), string(d.Reason), would))
	}
	c.(prometheus.Counter).Inc()
	o, ok := m.stages.Load(stage)
	if !ok {
		o, _ = m.stages.LoadOrStore(stage, m.latency.WithLabelValues(stage))
	}
	o.(prometheus.Observer).Observe(took.Seconds())
}

// Registerer is where other parts of msgate register their metrics, to be
// served on /metrics with these.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }
