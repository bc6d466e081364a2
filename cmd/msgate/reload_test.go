package main

import (
	"os"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/admin"
	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/config"
)

// SIGHUP's reload: a good config takes effect with counts kept; a bad one
// is refused whole and the running one stays.
func TestReload(t *testing.T) {
	a := startAdminDaemon(t, limit(2, "defer"))
	c := dial(t, a.milterAddr)
	rcptReplies(t, c, milter.Message{From: "alice@example.org", Rcpts: []string{"a@outlook.com", "b@outlook.com"}})

	cfg := config.Default()
	cfg.Milter.Listen, cfg.Admin.Listen = "inet:"+a.milterAddr, "inet:"+a.adminAddr
	cfg.Microsoft.Resolver = a.d.cfg.Load().Microsoft.Resolver
	cfg.State.Path = a.d.cfg.Load().State.Path
	limit(3, "defer")(cfg)
	writeConfig(t, a.configPath, cfg)
	a.d.reload()
	got := rcptReplies(t, c, milter.Message{From: "alice@example.org", Rcpts: []string{"c@outlook.com", "d@outlook.com"}})
	if got["c@outlook.com"].Refused() || !isDefer(got["d@outlook.com"]) {
		t.Fatalf("after raising the limit to 3 with 2 used: %v", got)
	}

	if err := os.WriteFile(a.configPath, []byte("[[rate]]\nname = \"hourly\"\nwindow = \"1h\"\nlimit = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.d.reload()
	st, err := admin.NewClient("tcp", a.adminAddr, 5*time.Second).Status(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Rules) != 1 || st.Rules[0].Limit != 3 {
		t.Fatalf("a bad config replaced the running one: rules %+v", st.Rules)
	}
	if r := rcptReplies(t, c, milter.Message{From: "bob@example.org", Rcpts: []string{"x@outlook.com"}})["x@outlook.com"]; r.Refused() {
		t.Fatalf("after a refused reload: %v", r)
	}
}
