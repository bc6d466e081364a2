package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// maxUnixPath is the longest socket path Linux can bind: sun_path holds 108
// bytes including the terminating NUL.
const maxUnixPath = 107

// ParseListen turns a milter socket in Postfix notation into arguments for
// net.Listen:
//
//	inet:127.0.0.1:8895   -> "tcp",  "127.0.0.1:8895"
//	inet:[::1]:8895       -> "tcp",  "[::1]:8895"
//	inet:localhost:8895   -> "tcp",  "localhost:8895"
//	inet6:[::1]:8895      -> "tcp6", "[::1]:8895"
//	unix:/run/msgate.sock -> "unix", "/run/msgate.sock"
//
// The host is required (inet:0.0.0.0:PORT listens on every IPv4 interface);
// the port is a number from 1 to 65535; a unix socket path must be absolute.
// Sendmail's "inet:PORT@HOST" form is refused with a hint.
func ParseListen(s string) (network, address string, err error) {
	kind, rest, found := strings.Cut(s, ":")
	switch {
	case s == "":
		return "", "", errors.New(`empty; use inet:HOST:PORT or unix:/PATH`)
	case kind == "unix":
		if err := checkUnixPath(rest); err != nil {
			return "", "", err
		}
		return "unix", rest, nil
	case kind == "inet" || kind == "inet6":
		addr, err := parseInet(kind, rest)
		if err != nil {
			return "", "", err
		}
		if kind == "inet6" {
			return "tcp6", addr, nil
		}
		return "tcp", addr, nil
	case strings.HasPrefix(s, "/"):
		return "", "", fmt.Errorf("missing socket type; write unix:%s", s)
	case found && looksLikeHostPort(s):
		return "", "", fmt.Errorf("missing socket type; write inet:%s", s)
	case !found:
		return "", "", fmt.Errorf("%q is not a socket; use inet:HOST:PORT or unix:/PATH", s)
	default:
		return "", "", fmt.Errorf("unknown socket type %q; use inet:HOST:PORT, inet6:[HOST]:PORT or unix:/PATH", kind)
	}
}

func checkUnixPath(p string) error {
	switch {
	case p == "":
		return errors.New("unix socket path is empty; write unix:/PATH")
	case !filepath.IsAbs(p):
		return fmt.Errorf("unix socket path %q is not absolute", p)
	case strings.ContainsRune(p, 0):
		return errors.New("unix socket path contains a NUL byte")
	case strings.HasSuffix(p, "/"):
		return fmt.Errorf("unix socket path %q names a directory", p)
	case len(p) > maxUnixPath:
		return fmt.Errorf("unix socket path is %d bytes long; the system allows at most %d", len(p), maxUnixPath)
	}
	return nil
}

func parseInet(kind, hostport string) (string, error) {
	if strings.Contains(hostport, "@") {
		return "", fmt.Errorf("sendmail's %s:PORT@HOST form is not accepted; write %s:HOST:PORT", kind, kind)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("%q is not HOST:PORT (write IPv6 addresses in brackets, as in %s:[::1]:8895)", hostport, kind)
	}
	if host == "" {
		return "", fmt.Errorf("missing host; use %s:127.0.0.1:%s, or %s:0.0.0.0:%s for every interface", kind, port, kind, port)
	}
	if err := checkPort(port); err != nil {
		return "", err
	}
	if err := checkHost(host); err != nil {
		return "", err
	}
	if kind == "inet6" {
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
			return "", fmt.Errorf("%s is an IPv4 address; use inet:%s", host, hostport)
		}
	}
	return net.JoinHostPort(host, port), nil
}

// checkPort accepts a decimal port from 1 to 65535. Port 0 (any free port) is
// refused: the MTA could not find the milter.
func checkPort(port string) error {
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

// checkHost accepts an IP address (IPv6 zones included) or a host name.
func checkHost(host string) error {
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if checkDomain(host) != nil {
		return fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	return nil
}

func looksLikeHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	return err == nil && checkPort(port) == nil && (host == "" || checkHost(host) == nil)
}
