package load

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.Flags(fs)
	err := fs.Parse([]string{"-milter", "unix:/run/m.sock", "-rcpts", "1-5", "-ms-domains", "Outlook.com, hotmail.com",
		"-sessions", "4", "-duration", "3s", "-tag", "server=msgate", "-tag", "scenario=32x1"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RcptsMin != 1 || cfg.RcptsMax != 5 {
		t.Errorf("rcpts %d-%d, want 1-5", cfg.RcptsMin, cfg.RcptsMax)
	}
	if strings.Join(cfg.MSDomains, ",") != "outlook.com,hotmail.com" {
		t.Errorf("ms domains %q", cfg.MSDomains)
	}
	if cfg.Sessions != 4 || cfg.Duration != 3*time.Second || cfg.Milter != "unix:/run/m.sock" {
		t.Errorf("config %+v", cfg)
	}
	if cfg.Tags["server"] != "msgate" || cfg.Tags["scenario"] != "32x1" {
		t.Errorf("tags %v", cfg.Tags)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for _, bad := range [][]string{{"-rcpts", "x"}, {"-rcpts", "1-y"}, {"-tag", "novalue"}} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := DefaultConfig()
		c.Flags(fs)
		if err := fs.Parse(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string // each must appear in the error
	}{
		{"remote milter", func(c *Config) { c.Milter = "inet:192.0.2.1:8895" }, []string{"-milter", "not on loopback", "-allow-remote"}},
		{"remote host name", func(c *Config) { c.Milter = "inet:mail.example:8895" }, []string{"not on loopback"}},
		{"not a socket", func(c *Config) { c.Milter = "127.0.0.1:8895" }, []string{"-milter", "inet:127.0.0.1:8895"}},
		{"no sessions", func(c *Config) { c.Sessions = 0 }, []string{"-sessions: must be at least 1"}},
		{"no messages", func(c *Config) { c.Messages = 0 }, []string{"-messages"}},
		{"negative warmup", func(c *Config) { c.Warmup = -1 }, []string{"-warmup"}},
		{"rcpts backwards", func(c *Config) { c.RcptsMin, c.RcptsMax = 3, 2 }, []string{"-rcpts", "3-2"}},
		{"fraction above 1", func(c *Config) { c.MSFraction = 1.5 }, []string{"-ms-fraction"}},
		{"fraction NaN", func(c *Config) { c.AuthFraction = nan() }, []string{"-auth-fraction"}},
		{"no Microsoft domains", func(c *Config) { c.MSDomains = nil }, []string{"-ms-domains: empty"}},
		{"no other domains", func(c *Config) { c.OtherDomains = nil }, []string{"-other-domains: empty"}},
		{"bad domain", func(c *Config) { c.OtherDomains = []string{"a@b"} }, []string{`"a@b" is not a domain`}},
		{"no accounts", func(c *Config) { c.Accounts = 0 }, []string{"-accounts"}},
		{"no duration", func(c *Config) { c.Duration = 0 }, []string{"-duration"}},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, []string{"-timeout"}},
		{"every problem at once", func(c *Config) { c.Sessions, c.Messages, c.Accounts = 0, 0, 0 },
			[]string{"-sessions", "-messages", "-accounts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("valid")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// Fractions of 0 and 1 need only one list of domains.
	c := DefaultConfig()
	c.MSFraction, c.OtherDomains = 1, nil
	if err := c.Validate(); err != nil {
		t.Errorf("all Microsoft: %v", err)
	}
	c = DefaultConfig()
	c.Milter = "inet:192.0.2.1:8895"
	c.AllowRemote = true
	if err := c.Validate(); err != nil {
		t.Errorf("remote allowed: %v", err)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestAuthSessions(t *testing.T) {
	for _, tc := range []struct {
		sessions int
		fraction float64
		want     int
	}{{32, 0.9, 29}, {1, 0.9, 1}, {1, 0.4, 0}, {10, 0, 0}, {10, 1, 10}} {
		c := Config{Sessions: tc.sessions, AuthFraction: tc.fraction}
		if got := c.authSessions(); got != tc.want {
			t.Errorf("%d sessions at %v: %d authenticated, want %d", tc.sessions, tc.fraction, got, tc.want)
		}
	}
}
