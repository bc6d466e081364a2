package snds

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/replies"
)

func sampleImport(t *testing.T, data, status string) Import {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(testdata, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rows, err := ParseData(read(data))
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := ParseIPStatus(read(status))
	if err != nil {
		t.Fatal(err)
	}
	return Import{Data: rows, Status: ranges}
}

func ips(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestAssess(t *testing.T) {
	mixed := sampleImport(t, "data-mixed.csv", "status-mixed.csv")
	blocked := sampleImport(t, "data-mixed.csv", "status-blocked.csv")
	for _, c := range []struct {
		name string
		cfg  Config
		imp  Import
		want string // Blocked green/yellow/red worst@ip red-rows over-rows
	}{
		{"all rows, 203.0.113.10 listed", Config{ComplaintThreshold: 0.3}, mixed, "true 1/1/1 2.1%@192.0.2.27 1 2"},
		{"watched IPs outside the listed range", Config{IPs: ips("192.0.2.25", "192.0.2.26"), ComplaintThreshold: 0.3}, mixed, "false 1/1/0 0.4%@192.0.2.26 0 1"},
		{"watched IP in the listed range", Config{IPs: ips("192.0.2.25"), ComplaintThreshold: 0.5}, blocked, "true 1/0/0 < 0.1%@192.0.2.25 0 0"},
		{"a high threshold", Config{ComplaintThreshold: 5}, blocked, "true 1/1/1 2.1%@192.0.2.27 1 0"},
		{"an IP not in the exports", Config{IPs: ips("198.51.100.99")}, mixed, "false 0/0/0 0%@invalid IP 0 0"},
		{"nothing imported", Config{}, Import{}, "false 0/0/0 0%@invalid IP 0 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := Assess(c.cfg, c.imp)
			got := fmt.Sprintf("%v %d/%d/%d %s@%s %d %d", a.Blocked, a.Green, a.Yellow, a.Red, a.Worst, a.WorstIP, len(a.RedRows), len(a.OverThreshold))
			if got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
			if a.Blocked != (a.Reason() != "") {
				t.Errorf("Reason() = %q with Blocked %v", a.Reason(), a.Blocked)
			}
			if len(a.IPs) != len(c.cfg.IPs) {
				t.Errorf("%d IP views for %d IPs", len(a.IPs), len(c.cfg.IPs))
			}
		})
	}
	a := Assess(Config{IPs: ips("192.0.2.27", "198.51.100.99")}, blocked)
	if v := a.IPs[0]; !v.InData || v.Filter != Red || v.Complaints != (Rate{2.1, false}) || !v.Blocked {
		t.Errorf("view of 192.0.2.27 = %+v", v)
	}
	if v := a.IPs[1]; v.InData || v.Blocked {
		t.Errorf("view of an IP not in the exports = %+v", v)
	}
	if r := Assess(Config{}, blocked).Reason(); !strings.Contains(r, "192.0.2.0-192.0.2.255: Blocked due to user complaints") {
		t.Errorf("Reason() = %q", r)
	}
}

func TestEvents(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	cfg := Config{ComplaintThreshold: 0.3}
	none := Assess(cfg, Import{})
	mixed := Assess(cfg, sampleImport(t, "data-mixed.csv", "status-empty.csv"))
	blocked := Assess(cfg, sampleImport(t, "data-mixed.csv", "status-blocked.csv"))
	kinds := func(evs []Event) string {
		var s []string
		for _, e := range evs {
			s = append(s, e.String())
		}
		return strings.Join(s, " | ")
	}
	for _, c := range []struct {
		name       string
		prev, cur  Assessment
		wantEvents string
	}{
		{"first import", none, mixed, "snds_red: 192.0.2.27 is RED on 2026-11-30 | " +
			"snds_complaints: 192.0.2.26 has a complaint rate of 0.4% on 2026-11-30 (threshold 0.3%) | " +
			"snds_complaints: 192.0.2.27 has a complaint rate of 2.1% on 2026-11-30 (threshold 0.3%)"},
		{"the same day again", mixed, mixed, ""},
		{"listed", mixed, blocked, "snds_blocked: SNDS lists as blocked 192.0.2.0-192.0.2.255: Blocked due to user complaints or other evidence of spamming"},
		{"still listed", blocked, blocked, ""},
		{"no longer listed", blocked, mixed, "snds_unblocked"},
	} {
		t.Run(c.name, func(t *testing.T) {
			evs := Events(cfg, c.prev, c.cur, now)
			if got := kinds(evs); got != c.wantEvents {
				t.Errorf("got %q\nwant %q", got, c.wantEvents)
			}
			for _, e := range evs {
				if !e.At.Equal(now) {
					t.Errorf("event at %v", e.At)
				}
			}
		})
	}
}

func TestBlockApply(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	b := Block{Since: now.Add(-time.Hour), Until: now.Add(2 * time.Hour), Reason: "SNDS lists as blocked 192.0.2.25"}
	normal := replies.State{Factor: 0.5, Lowered: now.Add(-time.Minute)}
	throttled := replies.State{Mode: replies.Throttled, Since: now.Add(-2 * time.Hour), Until: now.Add(10 * time.Minute), Rule: "ip_reputation"}
	longBlock := replies.State{Mode: replies.Blocked, Since: now.Add(-10 * time.Minute), Until: now.Add(5 * time.Hour), Rule: "block_list"}
	for _, c := range []struct {
		name  string
		b     Block
		st    replies.State
		mode  replies.Mode
		since time.Time
		until time.Time
		rule  string
	}{
		{"normal becomes blocked", b, normal, replies.Blocked, b.Since, b.Until, RuleName},
		{"a throttle is raised to a block", b, throttled, replies.Blocked, throttled.Since, b.Until, RuleName},
		{"a longer block of the replies lasts", b, longBlock, replies.Blocked, b.Since, longBlock.Until, RuleName},
		{"an ended block changes nothing", Block{Since: now.Add(-3 * time.Hour), Until: now}, throttled, replies.Throttled, throttled.Since, throttled.Until, "ip_reputation"},
		{"no block", Block{}, normal, replies.Normal, time.Time{}, time.Time{}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.b.Apply(c.st, now)
			if got.Mode != c.mode || !got.Since.Equal(c.since) || !got.Until.Equal(c.until) || got.Rule != c.rule {
				t.Errorf("got %s since %v until %v rule %q; want %s since %v until %v rule %q",
					got.Mode, got.Since, got.Until, got.Rule, c.mode, c.since, c.until, c.rule)
			}
			if got.Factor != c.st.Factor {
				t.Errorf("the cap factor changed: %v", got.Factor)
			}
			if c.mode == replies.Blocked && !got.Paused(now) {
				t.Error("blocked but not paused")
			}
		})
	}
}
