// Package admin is msgate's local admin API: the HTTP server that msgate
// serve runs on [admin] listen (a unix socket by default), and the client
// the status and account commands use. It serves /healthz, /metrics
// (Prometheus text format) and a small JSON API under /v1/.
//
// It reads and changes state only through the policy engine and the state
// store; it decides nothing about mail.
package admin
