package config

import "testing"

func TestParseListen(t *testing.T) {
	for _, tt := range []struct {
		in, network, address string
		err                  string // "" when valid
	}{
		{"inet:127.0.0.1:8895", "tcp", "127.0.0.1:8895", ""},
		{"inet:0.0.0.0:8895", "tcp", "0.0.0.0:8895", ""},
		{"inet:localhost:8895", "tcp", "localhost:8895", ""},
		{"inet:[::1]:8895", "tcp", "[::1]:8895", ""},
		{"inet:[fe80::1%eth0]:8895", "tcp", "[fe80::1%eth0]:8895", ""},
		{"inet6:[::1]:8895", "tcp6", "[::1]:8895", ""},
		{"inet6:[::]:8895", "tcp6", "[::]:8895", ""},
		{"inet6:localhost:8895", "tcp6", "localhost:8895", ""},
		{"inet:127.0.0.1:65535", "tcp", "127.0.0.1:65535", ""},
		{"unix:/run/msgate/msgate.sock", "unix", "/run/msgate/msgate.sock", ""},

		{"", "", "", "empty; use inet:HOST:PORT or unix:/PATH"},
		{"127.0.0.1:8895", "", "", "missing socket type; write inet:127.0.0.1:8895"},
		{"localhost:8895", "", "", "missing socket type; write inet:localhost:8895"},
		{"[::1]:8895", "", "", "missing socket type; write inet:[::1]:8895"},
		{"/run/msgate.sock", "", "", "missing socket type; write unix:/run/msgate.sock"},
		{"8895", "", "", `"8895" is not a socket; use inet:HOST:PORT or unix:/PATH`},
		{"tcp:127.0.0.1:8895", "", "", `unknown socket type "tcp"; use inet:HOST:PORT, inet6:[HOST]:PORT or unix:/PATH`},
		{"INET:127.0.0.1:8895", "", "", `unknown socket type "INET"; use inet:HOST:PORT, inet6:[HOST]:PORT or unix:/PATH`},
		{"inet:127.0.0.1", "", "", `"127.0.0.1" is not HOST:PORT (write IPv6 addresses in brackets, as in inet:[::1]:8895)`},
		{"inet:::1:8895", "", "", `"::1:8895" is not HOST:PORT (write IPv6 addresses in brackets, as in inet:[::1]:8895)`},
		{"inet::8895", "", "", "missing host; use inet:127.0.0.1:8895, or inet:0.0.0.0:8895 for every interface"},
		{"inet:127.0.0.1:0", "", "", `port "0" is not a number from 1 to 65535`},
		{"inet:127.0.0.1:65536", "", "", `port "65536" is not a number from 1 to 65535`},
		{"inet:127.0.0.1:milter", "", "", `port "milter" is not a number from 1 to 65535`},
		{"inet:127.0.0.1:-1", "", "", `port "-1" is not a number from 1 to 65535`},
		{"inet:bad_host:8895", "", "", `host "bad_host" is neither an IP address nor a host name`},
		{"inet:8895@127.0.0.1", "", "", "sendmail's inet:PORT@HOST form is not accepted; write inet:HOST:PORT"},
		{"inet6:127.0.0.1:8895", "", "", "127.0.0.1 is an IPv4 address; use inet:127.0.0.1:8895"},
		{"unix:", "", "", "unix socket path is empty; write unix:/PATH"},
		{"unix:run/msgate.sock", "", "", `unix socket path "run/msgate.sock" is not absolute`},
		{"unix:/run/msgate/", "", "", `unix socket path "/run/msgate/" names a directory`},
		{"unix:/run/\x00", "", "", "unix socket path contains a NUL byte"},
	} {
		network, address, err := ParseListen(tt.in)
		if tt.err == "" {
			if err != nil || network != tt.network || address != tt.address {
				t.Errorf("ParseListen(%q) = %q, %q, %v; want %q, %q", tt.in, network, address, err, tt.network, tt.address)
			}
			continue
		}
		if err == nil || err.Error() != tt.err {
			t.Errorf("ParseListen(%q) = %q, %q, %v; want error %q", tt.in, network, address, err, tt.err)
		}
	}
}

func TestParseListenLongPath(t *testing.T) {
	long := "/"
	for len(long) < maxUnixPath {
		long += "x"
	}
	if _, _, err := ParseListen("unix:" + long); err != nil {
		t.Errorf("a %d-byte path: %v", len(long), err)
	}
	if _, _, err := ParseListen("unix:" + long + "x"); err == nil {
		t.Errorf("a %d-byte path was accepted", len(long)+1)
	}
}
