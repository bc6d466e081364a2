//go:build linux && amd64

package sendmailtest

// sysSetns is setns(2): package syscall lacks SYS_SETNS on amd64.
const sysSetns = 308
