//go:build linux && 386

package sendmailtest

// sysSetns is setns(2): package syscall lacks SYS_SETNS on 386.
const sysSetns = 346
