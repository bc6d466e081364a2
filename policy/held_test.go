package policy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/state/memory"
)

// A held message is remembered by queue id, so that its release knows its
// account.
func TestHoldRemembersQueueID(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Cap: capOf(0, policy.CapHold)}, fakeDetector{}, s)
	tx := e.Begin(policy.Envelope{SASLLogin: "alice", Sender: "a@example.org", QueueID: "4HELD1"})
	e.Recipient(ctx, tx, "x@outlook.com", t0)
	if d := e.EndOfMessage(ctx, tx, t0); d.Verdict != policy.Hold || d.Err != nil {
		t.Fatalf("end of message: %+v, want a hold", d)
	}
	account, _, ok, err := s.Attribute(ctx, "4HELD1")
	if err != nil || !ok || account != "alice" {
		t.Errorf("Attribute = %q %v %v, want alice", account, ok, err)
	}
}

func TestAdmitHeld(t *testing.T) {
	tests := []struct {
		name     string
		cfg      policy.Config
		account  string
		units    int
		wantRule string // "" for the cap when refused
		refused  bool
		cap      int64 // cap use after commit (or after the refusal)
	}{
		{"fits", policy.Config{Cap: capOf(5, policy.CapHold), Rules: []policy.Rule{hourly(5)}}, "alice", 3, "", false, 3},
		{"cap all or none", policy.Config{Cap: capOf(2, policy.CapHold)}, "alice", 3, "", true, 0},
		{"rule all or none", policy.Config{Cap: capOf(10, policy.CapHold), Rules: []policy.Rule{hourly(2)}}, "alice", 3, "hourly", true, 0},
		{"exempt skips rules", policy.Config{Cap: capOf(10, policy.CapHold), Rules: []policy.Rule{hourly(1)}, Exempt: []string{"alice"}}, "alice", 3, "", false, 3},
		{"monitor rule counts, refuses nothing", policy.Config{Cap: capOf(10, policy.CapHold),
			Rules: []policy.Rule{{Name: "watch", Window: time.Hour, Limit: 1, Action: policy.RuleMonitor}}}, "alice", 3, "", false, 3},
		{"no cap, no rules", policy.Config{}, "alice", 3, "", false, 0},
		{"zero units", policy.Config{Cap: capOf(0, policy.CapHold)}, "alice", 0, "", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := memory.New()
			e := policy.NewEngine(tt.cfg, fakeDetector{}, s)
			a, err := e.AdmitHeld(ctx, tt.account, tt.units, t0)
			if tt.refused {
				var nr *policy.NoRoomError
				if !errors.Is(err, policy.ErrNoRoom) || !errors.As(err, &nr) || nr.Rule != tt.wantRule {
					t.Fatalf("AdmitHeld: %v, want no room in %q", err, tt.wantRule)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if err := e.CommitHeld(ctx, &a, t0); err != nil {
				t.Fatal(err)
			}
			if got := usage(t, s, "cap", 24*time.Hour); got != tt.cap {
				t.Errorf("cap used %d, want %d", got, tt.cap)
			}
			if tt.refused {
				if got := usage(t, s, "rate/hourly/alice", time.Hour); got != 0 {
					t.Errorf("a refused message left %d units on the rule", got)
				}
			}
		})
	}
}

// Units given back leave no trace; a second ReturnHeld changes nothing.
func TestReturnHeld(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Cap: capOf(3, policy.CapHold), Rules: []policy.Rule{hourly(3)}}, fakeDetector{}, s)
	a, err := e.AdmitHeld(ctx, "alice", 3, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := usage(t, s, "cap", 24*time.Hour); got != 3 {
		t.Fatalf("reserved %d, want 3", got)
	}
	if err := e.ReturnHeld(ctx, &a); err != nil {
		t.Fatal(err)
	}
	if err := e.ReturnHeld(ctx, &a); err != nil {
		t.Fatal(err)
	}
	if got := usage(t, s, "cap", 24*time.Hour) + usage(t, s, "rate/hourly/alice", time.Hour); got != 0 {
		t.Errorf("%d units left after giving back", got)
	}
}

func TestHeldRoom(t *testing.T) {
	s := memory.New()
	e := policy.NewEngine(policy.Config{Cap: capOf(10, policy.CapHold), Exempt: []string{"ops"},
		Rules: []policy.Rule{hourly(4), {Name: "daily", Window: 24 * time.Hour, Limit: 6, Action: policy.RuleDefer},
			{Name: "watch", Window: time.Hour, Limit: 1, Action: policy.RuleMonitor}}}, fakeDetector{}, s)
	send(e, "alice", "a@outlook.com", "b@outlook.com", "c@outlook.com")
	capRoom, room, err := e.HeldRoom(ctx, []string{"alice", "bob", "ops"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if capRoom != 7 || room["alice"] != 1 || room["bob"] != 4 {
		t.Errorf("room: cap %d, accounts %v; want 7, alice 1, bob 4", capRoom, room)
	}
	if _, ok := room["ops"]; ok {
		t.Errorf("exempt account limited: %v", room)
	}
	capRoom, room, err = policy.NewEngine(policy.Config{Cap: capOf(1, policy.CapMonitor)}, fakeDetector{}, s).HeldRoom(ctx, []string{"alice"}, t0)
	if err != nil || capRoom != -1 || len(room) != 0 {
		t.Errorf("monitor cap: %d %v %v, want no room limit", capRoom, room, err)
	}
}
