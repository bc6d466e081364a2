// Package postfixtest runs the machine's real Postfix on loopback for
// end-to-end tests of msgate: a fresh main.cf and master.cf, an smtpd on
// 127.0.0.1, and smtp-sink as the only next hop, so that what Postfix
// delivered can be read back from the sink's dump file.
//
// Postfix is a system-wide service: there is one /etc/postfix and one queue.
// Start therefore takes a lock that serialises every Postfix test on the
// machine, across test binaries (go test runs packages in parallel), and
// empties the queue before and after each test. Tests that call Start must
// run as root; Available says whether they can.
//
// Deliveries are recognised by their content: give each message a unique
// Subject (Message builds one) and search Delivered for it.
//
// Nothing here leaves 127.0.0.0/8: only the configured RelayDomains are
// routed (to the sink), every other destination gets an immediate error
// transport, and DNS lookups are disabled.
package postfixtest
