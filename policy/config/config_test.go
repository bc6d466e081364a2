package config

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

var update = flag.Bool("update", false, "rewrite the golden .err files in testdata/config/invalid")

// The test data lives at the repository root; tests run in this directory.
const testdata = "../../testdata/config"

// Golden files: testdata/config/invalid/NAME.err holds the Error() text of
// loading NAME.toml, with Error.File cut to the base name ("NAME.toml: KEY:
// MSG"), so that the goldens do not depend on where the tests run from.
func TestInvalid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "invalid", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid configs found: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(file)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load = %+v, %v; want an *Error", cfg, err)
			}
			if cfg != nil {
				t.Errorf("Load returned a Config along with the error")
			}
			if cerr.File != file {
				t.Errorf("Error.File = %q, want the path as given, %q", cerr.File, file)
			}
			cerr.File = filepath.Base(cerr.File)
			got := cerr.Error() + "\n"
			golden := strings.TrimSuffix(file, ".toml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Error() =\n%s\nwant (%s):\n%s", got, golden, want)
			}
			if len(cerr.Problems) != strings.Count(got, "\n") {
				t.Errorf("%d problems on %d lines", len(cerr.Problems), strings.Count(got, "\n"))
			}
		})
	}
}

// Every golden belongs to a config, so none is left behind by a rename.
func TestInvalidGoldensHaveConfigs(t *testing.T) {
	goldens, _ := filepath.Glob(filepath.Join(testdata, "invalid", "*.err"))
	for _, g := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(g, ".err") + ".toml"); err != nil {
			t.Errorf("%s has no config: %v", g, err)
		}
	}
}

func TestValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "valid", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid configs found: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			if p := cfg.Validate(); p != nil {
				t.Errorf("Validate after Load = %v", p)
			}
		})
	}
}

func load(t *testing.T, name string) *Config {
	t.Helper()
	cfg, err := Load(filepath.Join(testdata, "valid", name))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkConfig reports each table of got that differs from want.
func checkConfig(t *testing.T, got, want *Config) {
	t.Helper()
	g, w := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range g.NumField() {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			t.Errorf("%s = %+v\nwant %+v", g.Type().Field(i).Name, g.Field(i).Interface(), w.Field(i).Interface())
		}
	}
}

func TestMinimalIsDefault(t *testing.T) {
	checkConfig(t, load(t, "minimal.toml"), Default())
}

func TestFull(t *testing.T) {
	want := &Config{
		Milter: Milter{
			Listen:          "inet:[::1]:9901",
			SocketMode:      "0600",
			IdleTimeout:     Duration(10 * time.Minute),
			WriteTimeout:    Duration(time.Minute),
			ShutdownTimeout: 0,
			OnError:         "accept",
		},
		Admin: Admin{Listen: "inet:127.0.0.1:9902", SocketMode: "0600"},
		Log:   Log{Level: "debug", Format: "console", FlushInterval: Duration(250 * time.Millisecond)},
		State: State{Backend: "memory", Path: "/srv/msgate/state.db", RedisURL: "redis://redis.internal:6380/2", RedisPrefix: "mx1", Timeout: Duration(250 * time.Millisecond)},
		Microsoft: Microsoft{
			Resolver:        "[2001:db8::53]:5353",
			ExtraDomains:    []string{"contoso.example", "fabrikam.example"},
			ExtraMXSuffixes: []string{".mx.contoso.example", ".mail.fabrikam.example"},
			OnDNSFailure:    "defer",
			DNSTimeout:      Duration(500 * time.Millisecond),
			CacheMinTTL:     0,
			CacheMaxTTL:     Duration(36 * time.Hour),
			NegativeTTL:     Duration(time.Hour),
			CacheSize:       5000,
		},
		Rate: []Rate{
			{Name: "burst", Window: Duration(time.Minute), Limit: 10, Action: "reject"},
			{Name: "weekly", Window: Duration(7 * Day), Limit: 5000, Action: "monitor"},
			{Name: "daily_2", Window: Duration(Day), Limit: 800, Action: "defer"},
		},
		Accounts: Accounts{Exempt: []string{"newsletter@example.org", "2001:db8::25", "192.0.2.25", "backup-job"}},
		Mitigation: Mitigation{Enabled: true, DailyCap: 200, Window: Duration(Day), Action: "hold",
			RampStart: "2026-11-01", RampGrowth: 1.5, RampCeiling: 5000},
		Feedback: Feedback{
			Secret: "full-config-test-secret-0123456789", StampAll: true,
			MaxAge: Duration(90 * Day), Retention: Duration(45 * Day),
			Spool: "/srv/msgate/spool", OnFlag: []string{"/usr/local/bin/page-admin", "--msgate"},
			Retired: []RetiredSecret{{Secret: "the-previous-secret-0123456789", Until: "2026-12-31"}},
			Threshold: []Threshold{
				{Complaints: 2, Within: Duration(Day), Action: "defer"},
				{Complaints: 5, Within: Duration(14 * Day), Action: "reject"},
			},
		},
		Replies: Replies{
			LogFile: "/var/log/mail.log", StateFile: "/srv/msgate/delivery.json", PausedAction: "hold",
			TransportFile: "/srv/msgate/transport", Postmap: []string{"/usr/sbin/postmap", "-o"},
			Reload:   []string{"/usr/bin/sudo", "/usr/sbin/postfix", "reload"},
			OnResume: []string{"/usr/local/sbin/flush-microsoft"}, Release: []string{"/usr/sbin/postsuper"}, OnEvent: []string{"/usr/local/bin/page-admin", "--event"},
			CapFactor: 0.8, MinCapFactor: 0.25, CapRecovery: Duration(12 * time.Hour), Probation: Duration(30 * time.Minute),
			Rule: []ReplyRule{{Name: "blocked", Match: "S3150", Class: "block", Count: 2, Within: Duration(30 * time.Minute),
				Action: "suspend", Duration: Duration(time.Hour)}},
		},
		Release: Release{Enabled: true, Interval: Duration(5 * time.Minute), MaxPerRun: 20, LeaveRoom: 50,
			Postqueue: []string{"/usr/bin/sudo", "/usr/sbin/postqueue"}},
		SNDS: SNDS{Key: "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", BaseURL: "https://snds.example.net/snds/", Interval: Duration(30 * time.Minute),
			Timeout: Duration(20 * time.Second), IPs: []string{"192.0.2.25", "2001:db8::25"}, ComplaintThreshold: 0.5, RampGreenOnly: true,
			StateFile: "/srv/msgate/snds.json"},
		Alerts: Alerts{Command: []string{"/usr/local/bin/page-admin", "--alert"}, URL: "https://alerts.example.net/hooks/msgate?team=mail",
			Headers: []string{"Authorization: Bearer full-config-token", "X-Team:mail"}, Timeout: Duration(2 * time.Second), Retries: 5,
			Backoff: Duration(500 * time.Millisecond), QueueSize: 20},
	}
	checkConfig(t, load(t, "full.toml"), want)
}

// full.toml must set every key, so that it tests the decoding of each.
func TestFullSetsEveryKey(t *testing.T) {
	var raw map[string]any
	if _, err := toml.DecodeFile(filepath.Join(testdata, "valid", "full.toml"), &raw); err != nil {
		t.Fatal(err)
	}
	checkEveryKey(t, "full.toml", raw)
}

// checkEveryKey reports each key of Config that raw (a decoded file) leaves
// out. A key of an array of tables needs to be set in one element only.
func checkEveryKey(t *testing.T, file string, raw map[string]any) {
	t.Helper()
	var walk func(prefix string, typ reflect.Type, tables []map[string]any)
	walk = func(prefix string, typ reflect.Type, tables []map[string]any) {
		for _, f := range fieldsOf(typ) {
			var values []map[string]any
			set := false
			for _, tbl := range tables {
				v, ok := tbl[f.name]
				set = set || ok
				switch v := v.(type) {
				case map[string]any:
					values = append(values, v)
				case []map[string]any:
					values = append(values, v...)
				}
			}
			if !set {
				t.Errorf("%s does not set %s%s", file, prefix, f.name)
				continue
			}
			ft := typ.Field(f.index).Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			// An empty array of tables ("retired = []") has no keys to set.
			if typ.Field(f.index).Type.Kind() == reflect.Slice && len(values) == 0 {
				continue
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]() {
				walk(prefix+f.name+".", ft, values)
			}
		}
	}
	walk("", reflect.TypeFor[Config](), []map[string]any{raw})
}

func TestUnixSocket(t *testing.T) {
	cfg := load(t, "unix-socket.toml")
	network, addr, err := ParseListen(cfg.Milter.Listen)
	if err != nil || network != "unix" || addr != "/var/spool/postfix/msgate/msgate.sock" {
		t.Errorf("ParseListen(%q) = %q, %q, %v", cfg.Milter.Listen, network, addr, err)
	}
	if m := cfg.Milter.FileMode(); m != 0o660 {
		t.Errorf("FileMode = %v, want 0660", m)
	}
}

func TestRateOmittedOrEmpty(t *testing.T) {
	if got := load(t, "no-rate-limits.toml").Rate; got == nil || len(got) != 0 {
		t.Errorf(`rate = [] gave %#v, want an empty, non-nil slice`, got)
	}
	if got, want := load(t, "minimal.toml").Rate, Default().Rate; !reflect.DeepEqual(got, want) {
		t.Errorf("no rate key gave %+v, want the defaults %+v", got, want)
	}
}

func TestInlineRates(t *testing.T) {
	want := []Rate{
		{Name: "hourly", Window: Duration(time.Hour), Limit: 50, Action: "defer"},
		{Name: "daily", Window: Duration(Day), Limit: 400, Action: "reject"},
	}
	if got := load(t, "inline-rates.toml").Rate; !reflect.DeepEqual(got, want) {
		t.Errorf("Rate = %+v, want %+v", got, want)
	}
}

// A file that sets one key gets every other default.
func TestDefaultsFillUnset(t *testing.T) {
	cfg, err := Parse([]byte("[milter]\nlisten = \"unix:/run/msgate.sock\"\n"), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Milter.Listen = "unix:/run/msgate.sock"
	checkConfig(t, cfg, want)
}

func TestDefault(t *testing.T) {
	d := Default()
	if p := d.Validate(); p != nil {
		t.Errorf("Default().Validate() = %v", p)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"milter.listen", d.Milter.Listen, "inet:127.0.0.1:8895"},
		{"milter.socket_mode", d.Milter.SocketMode, "0660"},
		{"milter.idle_timeout", d.Milter.IdleTimeout.D(), 6 * time.Minute},
		{"milter.write_timeout", d.Milter.WriteTimeout.D(), 30 * time.Second},
		{"milter.shutdown_timeout", d.Milter.ShutdownTimeout.D(), 10 * time.Second},
		{"milter.on_error", d.Milter.OnError, "defer"},
		{"log.level", d.Log.Level, "info"},
		{"log.format", d.Log.Format, "json"},
		{"state.backend", d.State.Backend, "embedded"},
		{"microsoft.resolver", d.Microsoft.Resolver, ""},
		{"microsoft.extra_domains", d.Microsoft.ExtraDomains, []string(nil)},
		{"microsoft.extra_mx_suffixes", d.Microsoft.ExtraMXSuffixes, []string(nil)},
		{"microsoft.on_dns_failure", d.Microsoft.OnDNSFailure, "accept"},
		{"microsoft.dns_timeout", d.Microsoft.DNSTimeout.D(), 2 * time.Second},
		{"microsoft.cache_min_ttl", d.Microsoft.CacheMinTTL.D(), 60 * time.Second},
		{"microsoft.cache_max_ttl", d.Microsoft.CacheMaxTTL.D(), 6 * time.Hour},
		{"microsoft.negative_ttl", d.Microsoft.NegativeTTL.D(), 15 * time.Minute},
		{"microsoft.cache_size", d.Microsoft.CacheSize, 100000},
		{"rate", d.Rate, []Rate{
			{Name: "hourly", Window: Duration(time.Hour), Limit: 100, Action: "defer"},
			{Name: "daily", Window: Duration(24 * time.Hour), Limit: 1000, Action: "defer"},
		}},
		{"accounts.exempt", d.Accounts.Exempt, []string(nil)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("default %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Each call returns its own copy.
	d.Rate[0].Limit = 1
	if Default().Rate[0].Limit != 100 {
		t.Error("Default shares its Rate slice between calls")
	}
}

// The example config an admin copies documents the defaults: loading it must
// give exactly Default(), and it must show every key.
func TestContribIsDefault(t *testing.T) {
	const file = "../../contrib/msgate.toml"
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, cfg, Default())

	var raw map[string]any
	if _, err := toml.DecodeFile(file, &raw); err != nil {
		t.Fatal(err)
	}
	checkEveryKey(t, "contrib/msgate.toml", raw)
}

// What MarshalText writes, Parse reads back to the same Config.
func TestEncodeRoundTrip(t *testing.T) {
	for _, name := range []string{"full.toml", "minimal.toml", "unix-socket.toml"} {
		cfg := load(t, name)
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
			t.Fatal(err)
		}
		back, err := Parse(buf.Bytes(), name+" encoded")
		if err != nil {
			t.Fatalf("%v\n%s", err, buf.String())
		}
		checkConfig(t, back, cfg)
	}
}

func TestNormalize(t *testing.T) {
	cfg, err := Parse([]byte(`
[microsoft]
extra_domains = ["Contoso.EXAMPLE."]
extra_mx_suffixes = ["MX.Example.net", ".mail.example.net."]
[accounts]
exempt = ["Alice@Example.ORG", "2001:0DB8:0:0::1", "Bob"]
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ got, want []string }{
		{cfg.Microsoft.ExtraDomains, []string{"contoso.example"}},
		{cfg.Microsoft.ExtraMXSuffixes, []string{".mx.example.net", ".mail.example.net"}},
		{cfg.Accounts.Exempt, []string{"alice@example.org", "2001:db8::1", "bob"}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestValidateCollectsAll(t *testing.T) {
	c := Default()
	c.Milter.Listen = ""
	c.Log.Level = ""
	c.Rate = append(c.Rate, Rate{})
	want := []Problem{
		{"milter.listen", "empty; use inet:HOST:PORT or unix:/PATH"},
		{"log.level", `must be "debug", "info", "warn" or "error", not ""`},
		{"rate[2].name", "required"},
		{"rate[2].window", "must be at least 1s, not 0s"},
		{"rate[2].limit", "must be at least 1, not 0"},
		{"rate[2].action", `must be "defer", "reject" or "monitor", not ""`},
	}
	if got := c.Validate(); !reflect.DeepEqual(got, want) {
		t.Errorf("Validate() =\n%v\nwant\n%v", got, want)
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{File: "/etc/msgate/msgate.toml", Problems: []Problem{
		{Msg: "line 3: unexpected EOF"},
		{Key: "rate[1].window", Msg: "must be at least 1s, not 0s"},
	}}
	want := "/etc/msgate/msgate.toml: line 3: unexpected EOF\n" +
		"/etc/msgate/msgate.toml: rate[1].window: must be at least 1s, not 0s"
	if got := e.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	e.File = ""
	if got := e.Error(); got != "line 3: unexpected EOF\nrate[1].window: must be at least 1s, not 0s" {
		t.Errorf("Error() without a file = %q", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want fs.ErrNotExist", err)
	}
	var cerr *Error
	if errors.As(err, &cerr) {
		t.Errorf("a missing file is not a config problem, got *Error %v", cerr)
	}
}

func TestFileMode(t *testing.T) {
	for _, c := range []struct {
		mode string
		want fs.FileMode
	}{{"0660", 0o660}, {"600", 0o600}, {"0777", 0o777}, {"0", 0}, {"0999", 0o660}, {"", 0o660}, {"01777", 0o660}} {
		if got := (Milter{SocketMode: c.mode}).FileMode(); got != c.want {
			t.Errorf("FileMode(%q) = %o, want %o", c.mode, got, c.want)
		}
	}
}

// FuzzParse checks that no input panics, that what Parse accepts passes
// Validate, and that what it refuses comes with at least one problem.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*", "*.toml"))
	files = append(files, "../../contrib/msgate.toml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.toml")
		if err == nil {
			if p := cfg.Validate(); p != nil {
				t.Fatalf("Parse accepted a config with problems %v", p)
			}
			return
		}
		var cerr *Error
		if !errors.As(err, &cerr) || len(cerr.Problems) == 0 || cfg != nil {
			t.Fatalf("Parse = %v, %#v", cfg, err)
		}
	})
}
