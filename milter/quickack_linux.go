package milter

import (
	"net"
	"syscall"
)

// quickAck acknowledges what was just read at once. Sendmail (and
// miltertest) write a macro packet and the command that follows it
// separately with Nagle's algorithm on: without an immediate ACK the second
// write waits for Linux's delayed ACK, about 40 ms per milter step. Linux
// clears TCP_QUICKACK by itself, so it is set after every read.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
