// Package sendmailtest runs a real Sendmail 8.17 for end-to-end tests of
// msgate, sealed in a network namespace of the test's own.
//
// Sendmail is not installed (Debian's sendmail-bin conflicts with
// postfix): .ci/test unpacks Debian's sendmail-bin, sendmail-base,
// sendmail-cf and libwrap0 with dpkg-deb -x into CacheDir. Start builds a
// sendmail.cf from a generated .mc with m4, pasting in the milter lines it
// is given (the tests give it contrib/sendmail/msgate.mc unchanged).
//
// # Layout
//
// Sendmail looks up its own name and would talk to the machine's
// resolver, so it never runs in the machine's network namespace. NewNetNS
// makes a named namespace (ip netns add; only a loopback, brought up) and
// everything the test's mail passes through lives in it, on its
// 127.0.0.1:
//
//	SMTP client (the test) -> Sendmail :25 -> sink :2526 (in the test)
//	                             |
//	                             +-> msgate serve :8895 -> DNS :53 (in the test)
//
// In detail:
//
//   - Sendmail runs as nsenter --net=NS unshare --uts --mount: in the
//     namespace, with its own host name (mx.test.local), and, bind-mounted
//     in its private mount namespace only, its own /etc/hosts,
//     /etc/resolv.conf (nameserver 127.0.0.1 in the namespace) and /dev,
//     whose /dev/log is a datagram socket the test reads: Sendmail's
//     syslog(3) lines are its log (Log, WaitLog).
//   - Programs such as msgate run in the namespace through
//     NetNS.Command (nsenter --net), as they would beside Sendmail.
//   - The test's own sockets join the namespace without a helper
//     process: NetNS.Listen, ListenPacket and Dial create them on an OS
//     thread that has entered the namespace with setns(2) (a socket stays
//     in the namespace it was made in). The sink (Sink, an SMTP server in
//     the test process that keeps each message) and a DNS server for
//     msgate's MX lookups are served this way, and Send speaks SMTP to
//     Sendmail this way.
//   - Unix sockets are files and cross namespaces: msgate's admin socket
//     and Sendmail's /dev/log are reached from the test as usual.
//
// # Cleanup
//
// Every process is stopped by its pid (Sendmail by SIGTERM, then SIGKILL
// to its process group); deleting the namespace first kills, by pid,
// whatever still runs in it. Namespaces are named msgate-smt-PID-N after
// the test process: one left by a killed test run is recognised by its
// dead PID and removed by the next NewNetNS. The folder of each Sendmail
// is removed with the test.
package sendmailtest
