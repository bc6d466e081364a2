//go:build !linux

package milter

import "net"

func quickAck(net.Conn) {}
