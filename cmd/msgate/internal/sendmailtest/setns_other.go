//go:build linux && !amd64 && !386

package sendmailtest

import "syscall"

const sysSetns = syscall.SYS_SETNS
