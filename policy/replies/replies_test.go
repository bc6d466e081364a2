package replies_test

import (
	"math/rand"
	"regexp"
	"testing"
	"time"

	"github.com/msgate/msgate/policy/config"
	"github.com/msgate/msgate/policy/replies"
)

// defaults is the built-in configuration, as cmd/msgate builds it.
func defaults(t testing.TB) replies.Config {
	t.Helper()
	var cfg replies.Config
	for _, r := range config.DefaultReplyRules() {
		class, err := replies.ParseClass(r.Class)
		if err != nil {
			t.Fatal(err)
		}
		action, err := replies.ParseAction(r.Action)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Rules = append(cfg.Rules, replies.Rule{Name: r.Name, Match: regexp.MustCompile(r.Match), Class: class,
			Count: r.Count, Within: r.Within.D(), Action: action, Duration: r.Duration.D()})
	}
	cfg.CapFactor, cfg.MinCapFactor, cfg.CapRecovery, cfg.Probation = 0.5, 0.1, 24*time.Hour, 10*time.Minute
	return cfg
}

// Replies as Postfix hands them to smtp_delivery_status_filter.
const (
	blockReply    = "5.7.1 host hotmail-com.olc.protection.outlook.com[52.101.8.42] said: 550 5.7.1 Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. (in reply to MAIL FROM command)"
	throttleReply = "4.7.650 host hotmail-com.olc.protection.outlook.com[52.101.8.42] said: 451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775) (in reply to MAIL FROM command)"
)

func TestClassify(t *testing.T) {
	tr := replies.NewTracker(defaults(t), replies.State{})
	for _, c := range []struct {
		reply string
		class replies.Class
		rule  string
	}{
		{blockReply, replies.ClassBlock, "block_list"},
		{"5.0.0 host mx[1.2.3.4] said: 550 SC-001 (BAY004-MC1F12) Unfortunately, messages from 192.0.2.25 weren't sent.", replies.ClassBlock, "block_list"},
		{"5.7.1 host x.mail.protection.outlook.com[1.2.3.4] said: 550 5.7.606 Access denied, banned sending IP [192.0.2.25].", replies.ClassBlock, "block_list"},
		{throttleReply, replies.ClassThrottle, "ip_reputation"},
		{"4.7.500 host x.mail.protection.outlook.com[1.2.3.4] said: 451 4.7.500 Server busy. Please try again later from [192.0.2.25]. (AS12)", replies.ClassThrottle, "server_busy"},
		{"4.7.652 host x[1.2.3.4] said: 451 4.7.652 The mail server [192.0.2.25] has exceeded the maximum number of connections. (S3115)", replies.ClassConnLimit, "connection_limit"},
		{"5.7.509 host x[1.2.3.4] said: 550 5.7.509 Access denied, sending domain example.org does not pass DMARC verification", replies.ClassNotReputation, "not_reputation"},
		{"5.1.1 host x[1.2.3.4] said: 550 5.1.1 Requested action not taken: mailbox unavailable", replies.ClassNotReputation, "not_reputation"},
		{"2.0.0 250 2.0.0 OK <id@x>", replies.ClassSuccess, ""},
		{"4.4.1 connect to x[1.2.3.4]:25: Connection refused", replies.ClassOther, ""},
		{"5.7.1 host mx.example.org[1.2.3.4] said: 550 5.7.1 relaying denied", replies.ClassOther, ""},
	} {
		obs, _ := tr.Observe(c.reply, time.Unix(0, 0))
		if obs.Class != c.class || obs.Rule != c.rule {
			t.Errorf("%.60q: %v/%q, want %v/%q", c.reply, obs.Class, obs.Rule, c.class, c.rule)
		}
	}
}

func TestBlockAfterFiveInAnHour(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tr := replies.NewTracker(defaults(t), replies.State{})
	// Four in an hour, then a fifth after the first left the window: no block.
	for i := range 4 {
		if _, evs := tr.Observe(blockReply, t0.Add(time.Duration(i)*time.Minute)); len(evs) != 0 {
			t.Fatalf("reply %d: %v", i+1, evs)
		}
	}
	if _, evs := tr.Observe(blockReply, t0.Add(61*time.Minute)); len(evs) != 0 {
		t.Fatalf("a fifth an hour after the first: %v", evs)
	}
	// Then one a minute from minute 62: the earlier ones leave the window
	// as these come, and the fifth within an hour is at minute 65.
	var evs []replies.Event
	for m := 62; m < 65; m++ {
		if _, evs = tr.Observe(blockReply, t0.Add(time.Duration(m)*time.Minute)); len(evs) != 0 {
			t.Fatalf("minute %d: %v", m, evs)
		}
	}
	now := t0.Add(65 * time.Minute)
	_, evs = tr.Observe(blockReply, now)
	if len(evs) != 1 || evs[0].Kind != replies.EventBlocked || !evs[0].Until.Equal(now.Add(2*time.Hour)) || evs[0].Rule != "block_list" {
		t.Fatalf("events = %+v", evs)
	}
	st := tr.State()
	if st.Mode != replies.Blocked || !st.Paused(now) || !st.Paused(now.Add(2*time.Hour-time.Nanosecond)) || st.Paused(now.Add(2*time.Hour)) {
		t.Fatalf("state = %+v", st)
	}
	// Throttles while blocked do not ease the block.
	for i := range 3 {
		_, evs := tr.Observe(throttleReply, now.Add(time.Duration(i+1)*time.Second))
		for _, e := range evs {
			if e.Kind != replies.EventCapLowered {
				t.Fatalf("throttle %d while blocked: %+v", i, e)
			}
		}
	}
	if st := tr.State(); st.Mode != replies.Blocked || !st.Until.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("after throttles: %+v", st)
	}
	if evs := tr.Tick(now.Add(time.Hour)); len(evs) != 0 {
		t.Fatalf("tick before the end: %v", evs)
	}
	evs = tr.Tick(now.Add(2 * time.Hour))
	if len(evs) != 1 || evs[0].Kind != replies.EventResumed {
		t.Fatalf("tick at the end: %+v", evs)
	}
	if st := tr.State(); st.Mode != replies.Normal || st.Paused(now.Add(2*time.Hour)) {
		t.Fatalf("after resume: %+v", st)
	}
	if evs := tr.Tick(now.Add(3 * time.Hour)); len(evs) != 0 {
		t.Fatalf("resumed twice: %v", evs)
	}
}

// After a suspension, one reply of its rule within the probation suspends
// again; after the probation it takes Count again.
func TestProbation(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	block := func(tr *replies.Tracker, at time.Time) []replies.Event {
		_, evs := tr.Observe(blockReply, at)
		return evs
	}
	tr := replies.NewTracker(defaults(t), replies.State{})
	for i := range 5 {
		block(tr, t0.Add(time.Duration(i)*time.Second))
	}
	resumeAt := t0.Add(2*time.Hour + 4*time.Second)
	evs := tr.Tick(resumeAt)
	if len(evs) != 1 || evs[0].Kind != replies.EventResumed || !evs[0].Until.Equal(resumeAt.Add(10*time.Minute)) {
		t.Fatalf("resume: %+v", evs)
	}
	if st := tr.State(); !st.OnProbation(resumeAt) || st.OnProbation(resumeAt.Add(10*time.Minute)) {
		t.Fatalf("probation: %+v", st)
	}
	if evs := block(tr, resumeAt.Add(time.Minute)); len(evs) != 1 || evs[0].Kind != replies.EventBlocked {
		t.Fatalf("one block reply on probation: %+v", evs)
	}
	// Resumed again, and the probation passes: one reply is one again.
	again := resumeAt.Add(time.Minute + 2*time.Hour)
	tr.Tick(again)
	if evs := block(tr, again.Add(11*time.Minute)); len(evs) != 0 {
		t.Fatalf("one block reply after the probation: %+v", evs)
	}
}

func TestThrottleSuspendsAndLowersTheCap(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tr := replies.NewTracker(defaults(t), replies.State{})
	var kinds []replies.EventKind
	for i := range 3 {
		_, evs := tr.Observe(throttleReply, t0.Add(time.Duration(i)*time.Minute))
		for _, e := range evs {
			kinds = append(kinds, e.Kind)
		}
	}
	want := []replies.EventKind{replies.EventCapLowered, replies.EventCapLowered, replies.EventThrottled, replies.EventCapLowered}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
	at := t0.Add(2 * time.Minute)
	if f := tr.CapFactor(at); f != 0.125 {
		t.Fatalf("cap factor after 3 throttles = %v, want 0.125", f)
	}
	if st := tr.State(); st.Mode != replies.Throttled || !st.Until.Equal(at.Add(30*time.Minute)) {
		t.Fatalf("state = %+v", st)
	}
	// A day without throttling takes back one step, and so on up to 1.
	for _, c := range []struct {
		after time.Duration
		want  float64
	}{{23 * time.Hour, 0.125}, {24 * time.Hour, 0.25}, {48 * time.Hour, 0.5}, {72 * time.Hour, 1}, {30 * 24 * time.Hour, 1}} {
		if f := tr.CapFactor(at.Add(c.after)); f != c.want {
			t.Errorf("cap factor %v later = %v, want %v", c.after, f, c.want)
		}
	}
	// Not below the floor.
	for i := range 10 {
		tr.Observe(throttleReply, at.Add(time.Duration(i+1)*time.Second))
	}
	if f := tr.CapFactor(at.Add(11 * time.Second)); f != 0.1 {
		t.Errorf("cap factor after 13 throttles = %v, want the floor 0.1", f)
	}
}

// A saved state survives a restart: the suspension and the counts go on.
func TestResumeFromSavedState(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tr := replies.NewTracker(defaults(t), replies.State{})
	for i := range 4 {
		tr.Observe(blockReply, t0.Add(time.Duration(i)*time.Second))
	}
	again := replies.NewTracker(defaults(t), tr.State())
	_, evs := again.Observe(blockReply, t0.Add(5*time.Second))
	if len(evs) != 1 || evs[0].Kind != replies.EventBlocked {
		t.Fatalf("the fifth reply after a restart: %+v", evs)
	}
}

// Any reply text, at any time order (2,000 random cases, seeded): counts
// bounded by their rule, a suspension always has its end, the cap factor
// within its bounds.
func TestObserveAnyInput(t *testing.T) {
	cfg := defaults(t)
	r := rand.New(rand.NewSource(1))
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	samples := []string{blockReply, throttleReply, "2.0.0 250 ok"}
	for n := 0; n < 2000; n++ {
		b := make([]byte, r.Intn(60))
		r.Read(b)
		reply := string(b)
		if n%3 == 0 {
			reply = samples[r.Intn(len(samples))]
		}
		secs := r.Int63n(1<<30) - 1<<29
		tr := replies.NewTracker(cfg, replies.State{})
		for i := range 7 {
			now := t0.Add(time.Duration(secs) * time.Second * time.Duration(i))
			tr.Observe(reply, now)
			st := tr.State()
			for name, hits := range st.Hits {
				if len(hits) > 5 {
					t.Fatalf("%s holds %d hits", name, len(hits))
				}
			}
			if st.Mode != replies.Normal && st.Until.IsZero() {
				t.Fatalf("suspended without an end: %+v", st)
			}
			if f := tr.CapFactor(now); f < 0.1 || f > 1 {
				t.Fatalf("cap factor %v", f)
			}
		}
	}
}
