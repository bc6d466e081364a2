package config_test

import (
	"fmt"

	"github.com/msgate/msgate/policy/config"
)

func ExampleParse() {
	cfg, err := config.Parse([]byte(`
[milter]
listen = "unix:/run/msgate/msgate.sock"

[[rate]]
name = "weekly"
window = "7d"
limit = 2000
`), "msgate.toml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Milter.Listen, cfg.Milter.IdleTimeout) // the rest are defaults
	for _, r := range cfg.Rate {
		fmt.Println(r.Name, r.Window, r.Window.D(), r.Limit, r.Action)
	}
	// Output:
	// unix:/run/msgate/msgate.sock 6m
	// weekly 7d 168h0m0s 2000 defer
}

func ExampleParse_problems() {
	_, err := config.Parse([]byte(`
[milter]
listen = "127.0.0.1:8895"
idle_timeout = 360

[[rate]]
name = "hourly"
window = "1h"
limit = 0
`), "msgate.toml")
	fmt.Println(err)
	// Output:
	// msgate.toml: milter.listen: missing socket type; write inet:127.0.0.1:8895
	// msgate.toml: milter.idle_timeout: must be a duration string such as "90s", "1h30m" or "7d", not an integer (360)
	// msgate.toml: rate[0].limit: must be at least 1, not 0
}

func ExampleParseListen() {
	for _, s := range []string{"inet:127.0.0.1:8895", "inet6:[::1]:8895", "unix:/run/msgate.sock"} {
		network, address, _ := config.ParseListen(s)
		fmt.Println(network, address)
	}
	// Output:
	// tcp 127.0.0.1:8895
	// tcp6 [::1]:8895
	// unix /run/msgate.sock
}
