// Package load generates milter load as a busy outbound MTA would, and
// measures it: N concurrent sessions, each reusing its connection for one
// message after another, send transactions drawn from a population of
// sending accounts (a configurable share of them authenticated) to
// recipients mixing Microsoft-hosted and other domains, with headers and
// a body. The milter is driven through milterclient, which sends only what
// the milter negotiated.
//
// A run reports messages per second, per-message latency percentiles
// (nearest rank: p50, p90, p99, max), round trips per message, what was
// decided for each recipient (by Microsoft and other domains), the edits
// asked for at end of message, and the milter's failures. Warm-up
// messages come first and are not measured; the measured messages start on
// every session at once. A duration cap bounds every run.
package load
