package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// SNDS configures the import of Microsoft's SNDS (Smart Network Data
// Services) automated data access exports: the daily data and the IP
// status (which of the server's IPs Microsoft blocks).
type SNDS struct {
	// Key is the automated data access key from the SNDS portal; empty
	// turns the import off.
	Key string `toml:"key"`
	// BaseURL is where the exports are (data.aspx and ipStatus.aspx
	// under it).
	BaseURL string `toml:"base_url"`
	// Interval is how often both exports are fetched.
	Interval Duration `toml:"interval"`
	// Timeout bounds one fetch of both.
	Timeout Duration `toml:"timeout"`
	// IPs are the server's addresses to watch; empty watches every IP the
	// key gives access to.
	IPs []string `toml:"ips"`
	// ComplaintThreshold is the complaint rate, in percent, above which a
	// row is an alert.
	ComplaintThreshold float64 `toml:"complaint_threshold"`
	// RampGreenOnly advances the mitigation ramp only on days SNDS judged
	// GREEN instead of every calendar day.
	RampGreenOnly bool `toml:"ramp_green_only"`
	// StateFile keeps the last good import; default snds.json beside
	// state.path.
	StateFile string `toml:"state_file"`
}

// DefaultSNDSBaseURL is Microsoft's SNDS automated data access root.
const DefaultSNDSBaseURL = "https://sendersupport.olc.protection.outlook.com/snds/"

// minSNDSInterval bounds snds.interval from below: SNDS publishes a day's
// data once a day, and its IP status changes no faster than a delisting.
const minSNDSInterval = 5 * time.Minute

func defaultSNDS() SNDS {
	return SNDS{
		BaseURL:            DefaultSNDSBaseURL,
		Interval:           Duration(time.Hour),
		Timeout:            Duration(time.Minute),
		ComplaintThreshold: 0.3,
	}
}

// SNDSStateFile is where the last SNDS import is kept.
func (c *Config) SNDSStateFile() string { return c.besideState(c.SNDS.StateFile, "snds.json") }

// Addrs parses IPs (Validate has checked them).
func (s SNDS) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, ip := range s.IPs {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func (s *SNDS) validate(v *validator, m Mitigation) {
	if strings.ContainsFunc(s.Key, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		v.add("snds.key", "must not hold spaces or control characters (copy the key alone from the SNDS portal)")
	}
	if u, err := url.Parse(s.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		v.add("snds.base_url", "must be an http or https URL without a query, such as %q, not %q", DefaultSNDSBaseURL, s.BaseURL)
	}
	if s.Interval.D() < minSNDSInterval {
		v.add("snds.interval", "must be at least %s, not %s", Duration(minSNDSInterval), s.Interval)
	}
	if s.Timeout.D() < time.Second || s.Timeout.D() > 10*time.Minute {
		v.add("snds.timeout", "must be from 1s to 10m, not %s", s.Timeout)
	} else if s.Timeout >= s.Interval && s.Interval.D() >= minSNDSInterval {
		v.add("snds.timeout", "must be shorter than snds.interval (%s), not %s", s.Interval, s.Timeout)
	}
	seen := map[netip.Addr]bool{}
	for i, ip := range s.IPs {
		a, err := netip.ParseAddr(ip)
		switch {
		case err != nil || a.Zone() != "":
			v.add(fmt.Sprintf("snds.ips[%d]", i), "must be an IP address, not %q", ip)
		case seen[a.Unmap()]:
			v.add(fmt.Sprintf("snds.ips[%d]", i), "%s is listed twice", ip)
		}
		seen[a.Unmap()] = true
	}
	if !(s.ComplaintThreshold > 0 && s.ComplaintThreshold <= 100) {
		v.add("snds.complaint_threshold", "must be a percentage more than 0 and at most 100, not %v", s.ComplaintThreshold)
	}
	if s.RampGreenOnly {
		switch _, ramp := m.RampStartTime(); {
		case s.Key == "":
			v.add("snds.ramp_green_only", "needs snds.key: without imports the ramp would never advance")
		case !m.Enabled || !ramp || (len(m.Ramp) == 0 && m.RampGrowth == 0):
			v.add("snds.ramp_green_only", "needs a mitigation ramp (mitigation.enabled, ramp_start, and ramp or ramp_growth)")
		}
	}
	v.absPath("snds.state_file", s.StateFile)
}
