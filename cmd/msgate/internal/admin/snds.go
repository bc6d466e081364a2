package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SNDSStatus is the last SNDS import as status reports it.
type SNDSStatus struct {
	// Enabled is false when [snds] key is empty; nothing else is set then.
	Enabled bool `json:"enabled"`
	// Imported is the last good import's time (zero: none yet);
	// LastAttempt the last fetch's, and LastError why it failed ("" when
	// it did not).
	Imported     time.Time `json:"imported,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	ImportErrors int       `json:"import_errors"`
	// Blocked is true while the IP status lists a watched IP: Microsoft
	// delivery is suspended for it. Since is when an import first listed
	// it, Reason the ranges and Microsoft's words.
	Blocked      bool      `json:"blocked"`
	BlockedSince time.Time `json:"blocked_since,omitzero"`
	Reason       string    `json:"reason,omitempty"`
	// BlockedRanges counts the listed ranges that hold a watched IP.
	BlockedRanges int `json:"blocked_ranges"`
	// Green, Yellow and Red count the watched rows of the data.
	Green  int `json:"green"`
	Yellow int `json:"yellow"`
	Red    int `json:"red"`
	// WorstComplaintRate is the highest of the watched rows ("< 0.1%"),
	// WorstPercent its number, WorstIP its row's IP.
	WorstComplaintRate string  `json:"worst_complaint_rate,omitempty"`
	WorstPercent       float64 `json:"worst_complaint_percent"`
	WorstIP            string  `json:"worst_ip,omitempty"`
	// OverThreshold counts the rows above ComplaintThreshold (percent).
	OverThreshold      int     `json:"over_threshold"`
	ComplaintThreshold float64 `json:"complaint_threshold"`
	// IPs are the watched IPs of [snds] ips, one each.
	IPs []SNDSIP `json:"ips,omitempty"`
}

// SNDSIP is one watched IP in the last import.
type SNDSIP struct {
	IP string `json:"ip"`
	// InData is false when the data has no row for the IP.
	InData        bool    `json:"in_data"`
	Filter        string  `json:"filter_result,omitempty"`
	ComplaintRate string  `json:"complaint_rate,omitempty"`
	Percent       float64 `json:"complaint_percent"`
	Blocked       bool    `json:"blocked"`
}

// sndsMetrics are the SNDS import's series. Only an IP of [snds] ips is a
// label value: the config bounds them.
type sndsMetrics struct {
	imports                     *prometheus.CounterVec
	imported, blocked, ranges   prometheus.Gauge
	worst, over                 prometheus.Gauge
	rows                        *prometheus.GaugeVec
	ipFilter, ipRate, ipBlocked *prometheus.GaugeVec
}

func newSNDSMetrics(reg *prometheus.Registry) *sndsMetrics {
	s := &sndsMetrics{
		imports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "msgate_snds_imports_total",
			Help: "SNDS fetches of both exports, by result (ok; failed: nothing changed, see the log).",
		}, []string{"result"}),
		imported: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "msgate_snds_last_import_timestamp_seconds",
			Help: "When the last good SNDS import was fetched (Unix time; 0: none yet).",
		}),
		blocked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "msgate_snds_blocked",
			Help: "1 while SNDS's IP status lists a watched IP as blocked (Microsoft delivery is suspended), else 0.",
		}),
		ranges: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "msgate_snds_blocked_ranges",
			Help: "Ranges of SNDS's IP status that block a watched IP.",
		}),
		worst: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "msgate_snds_worst_complaint_rate_percent",
			Help: "The highest complaint rate of a watched row of SNDS's data, in percent (a rate given as \"< 0.1%\" counts as 0.1).",
		}),
		over: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "msgate_snds_rows_over_complaint_threshold",
			Help: "Watched rows of SNDS's data whose complaint rate is above snds.complaint_threshold.",
		}),
		rows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "msgate_snds_rows",
			Help: "Watched rows of SNDS's data, by filter_result (green, yellow, red).",
		}, []string{"filter_result"}),
		ipFilter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "msgate_snds_ip_filter_result",
			Help: "SNDS's filter result per IP of snds.ips: 0 green, 1 yellow, 2 red, -1 no row in the data.",
		}, []string{"ip"}),
		ipRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "msgate_snds_ip_complaint_rate_percent",
			Help: "SNDS's complaint rate per IP of snds.ips, in percent (0 with no row in the data).",
		}, []string{"ip"}),
		ipBlocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "msgate_snds_ip_blocked",
			Help: "1 when SNDS's IP status lists the IP of snds.ips as blocked, else 0.",
		}, []string{"ip"}),
	}
	for _, r := range []string{"ok", "failed"} {
		s.imports.WithLabelValues(r)
	}
	reg.MustRegister(s.imports, s.imported, s.blocked, s.ranges, s.worst, s.over, s.rows, s.ipFilter, s.ipRate, s.ipBlocked)
	return s
}

// SNDSImported counts one fetch of SNDS's exports, good or failed.
func (m *Metrics) SNDSImported(ok bool) {
	r := "ok"
	if !ok {
		r = "failed"
	}
	m.snds.imports.WithLabelValues(r).Inc()
}

// SetSNDS sets the SNDS gauges from the last import.
func (m *Metrics) SetSNDS(st SNDSStatus) {
	s := m.snds
	if !st.Imported.IsZero() {
		s.imported.Set(float64(st.Imported.UnixMilli()) / 1000)
	}
	b := 0.0
	if st.Blocked {
		b = 1
	}
	s.blocked.Set(b)
	s.ranges.Set(float64(st.BlockedRanges))
	s.worst.Set(st.WorstPercent)
	s.over.Set(float64(st.OverThreshold))
	s.rows.WithLabelValues("green").Set(float64(st.Green))
	s.rows.WithLabelValues("yellow").Set(float64(st.Yellow))
	s.rows.WithLabelValues("red").Set(float64(st.Red))
	for _, ip := range st.IPs {
		f := -1.0
		switch ip.Filter {
		case "GREEN":
			f = 0
		case "YELLOW":
			f = 1
		case "RED":
			f = 2
		}
		s.ipFilter.WithLabelValues(ip.IP).Set(f)
		s.ipRate.WithLabelValues(ip.IP).Set(ip.Percent)
		blocked := 0.0
		if ip.Blocked {
			blocked = 1
		}
		s.ipBlocked.WithLabelValues(ip.IP).Set(blocked)
	}
}
