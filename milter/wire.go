package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	gomilter "github.com/emersion/go-milter"
)

// The wire: packets are a 4-byte big-endian length, a command or reply
// code, and data. msgate reads and writes them itself rather than through
// go-milter's session loop, which allocates a 4 KiB write buffer per reply,
// a packet and a map per command, and a modifier per callback: at the
// rates of the load (thousands of messages a second on 2 cores)
// that garbage was a quarter of msgate's time. go-milter still supplies
// the protocol's constants, and the client the tests speak through.

// maxPacket bounds a packet's length before anything is allocated for it
// (go-milter's bound: Postfix sends body chunks of up to 64 KiB, msgate
// asks for none).
const maxPacket = 1 << 20

// keepBuffer is the largest read buffer a session keeps between packets; a
// larger packet gets a buffer of its own.
const keepBuffer = 64 << 10

// protocolVersion is the version msgate answers an MTA of version 6 or
// later with: the version of the "no reply" flags and of the DATA stage. An
// older MTA is answered with version 2 (go-milter's), which Postfix,
// Sendmail 8.17 and miltertest also accept with the macro list.
const protocolVersion = 6

// Commands from the MTA.
const (
	cmdAbort   = 'A'
	cmdBody    = 'B'
	cmdConnect = 'C'
	cmdMacro   = 'D'
	cmdEOB     = 'E'
	cmdHelo    = 'H'
	cmdQuitNC  = 'K' // version 6: the MTA reuses the connection for a new SMTP session
	cmdHeader  = 'L'
	cmdMail    = 'M'
	cmdEOH     = 'N'
	cmdOptNeg  = 'O'
	cmdQuit    = 'Q'
	cmdRcpt    = 'R'
	cmdData    = 'T'
	cmdUnknown = 'U'
)

// Replies and requests to the MTA.
const (
	replyContinue   = byte(gomilter.ActContinue)  // 'c'
	replyAccept     = byte(gomilter.ActAccept)    // 'a': this message needs msgate no more
	replyCode       = byte(gomilter.ActReplyCode) // 'y'
	replyAddHeader  = 'h'
	replyQuarantine = 'q'
	replyOptNeg     = 'O'
)

var (
	errZeroPacket = errors.New("milter: zero-length packet")
	errMalformed  = errors.New("milter: malformed command")
)

// readPacket reads one packet. data aliases *buf (grown as needed) and is
// valid until the next call.
func readPacket(r io.Reader, buf *[]byte) (code byte, data []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	switch {
	case n == 0:
		return 0, nil, errZeroPacket
	case n > maxPacket:
		return 0, nil, fmt.Errorf("milter: packet length %d exceeds %d bytes", n, maxPacket)
	}
	var b []byte
	if n <= keepBuffer {
		if cap(*buf) < int(n) {
			*buf = make([]byte, keepBuffer)
		}
		b = (*buf)[:n]
	} else {
		b = make([]byte, n)
	}
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// appendPacket appends one packet: its length, code and data.
func appendPacket(b []byte, code byte, data ...string) []byte {
	n := 1
	for _, d := range data {
		n += len(d)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, code)
	for _, d := range data {
		b = append(b, d...)
	}
	return b
}

// negotiation is the answer to the MTA's option negotiation: the version,
// the actions and the stages msgate wants, and the macros it asks for.
func negotiation(version uint32, actions gomilter.OptAction, protocol gomilter.OptProtocol, macros map[gomilter.Stage][]string) []byte {
	var data []byte
	data = binary.BigEndian.AppendUint32(data, version)
	data = binary.BigEndian.AppendUint32(data, uint32(actions))
	data = binary.BigEndian.AppendUint32(data, uint32(protocol))
	if actions&gomilter.OptSetSymList != 0 {
		for stage := gomilter.StageConnect; stage <= gomilter.StageEOH; stage++ {
			names, ok := macros[stage]
			if !ok {
				continue
			}
			data = binary.BigEndian.AppendUint32(data, uint32(stage))
			data = append(data, strings.Join(names, " ")...)
			data = append(data, 0)
		}
	}
	return appendPacket(nil, replyOptNeg, string(data))
}

// offer is what the MTA's option negotiation says it supports.
type offer struct {
	version  uint32
	actions  gomilter.OptAction
	protocol gomilter.OptProtocol
}

func parseOffer(data []byte) (offer, error) {
	if len(data) < 12 {
		return offer{}, errMalformed
	}
	return offer{
		version:  binary.BigEndian.Uint32(data),
		actions:  gomilter.OptAction(binary.BigEndian.Uint32(data[4:])),
		protocol: gomilter.OptProtocol(binary.BigEndian.Uint32(data[8:])),
	}, nil
}

// protocolFor is the protocol version and flags msgate takes from an
// offer: Protocol where the MTA speaks version 6, less what it does not
// offer; protocolV2 for older MTAs.
func protocolFor(o offer) (uint32, gomilter.OptProtocol) {
	if o.version < protocolVersion {
		return 2, protocolV2
	}
	return protocolVersion, Protocol & o.protocol
}

// cstring splits the NUL-terminated string at the start of b from the rest.
// ok is false when b holds no NUL.
func cstring(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return b, nil, false
	}
	return b[:i], b[i+1:], true
}

// macros are the values msgate reads from the MTA's macro packets. Like
// go-milter, a macro packet replaces what the previous one said: each
// stage's values arrive just before its command.
type macros struct {
	queueID    string // i
	authAuthen string // {auth_authen}
	clientAddr string // {client_addr}
}

// parseMacros reads a macro packet (its stage code, then name and value
// pairs). Only the macros msgate reads are kept; names are accepted with or
// without braces.
func parseMacros(data []byte) (macros, error) {
	var m macros
	if len(data) == 0 {
		return m, errMalformed
	}
	rest := data[1:]
	for len(rest) > 0 {
		var name, value []byte
		name, rest, _ = cstring(rest)
		value, rest, _ = cstring(rest)
		if len(name) > 2 && name[0] == '{' && name[len(name)-1] == '}' {
			name = name[1 : len(name)-1]
		}
		switch string(name) {
		case "i":
			m.queueID = string(value)
		case "auth_authen":
			m.authAuthen = string(value)
		case "client_addr":
			m.clientAddr = string(value)
		}
	}
	return m, nil
}

// connectInfo is the connect command's data.
type connectInfo struct {
	host   string
	family byte // '4', '6', 'L' (unix), 'U' (unknown)
	port   uint16
	addr   string
}

func parseConnect(data []byte) (connectInfo, error) {
	host, rest, ok := cstring(data)
	if !ok || len(rest) < 1 {
		return connectInfo{}, errMalformed
	}
	ci := connectInfo{host: string(host), family: rest[0]}
	rest = rest[1:]
	if ci.family == '4' || ci.family == '6' {
		if len(rest) < 2 {
			return connectInfo{}, errMalformed
		}
		ci.port = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	addr, _, _ := cstring(rest)
	ci.addr = string(addr)
	return ci, nil
}

// address reads the address argument of MAIL or RCPT, without its angle
// brackets. The ESMTP parameters that may follow it are left.
func address(data []byte) string {
	a, _, _ := cstring(data)
	return strings.Trim(string(a), "<>")
}

func familyName(f byte) string {
	switch f {
	case '4':
		return "tcp4"
	case '6':
		return "tcp6"
	case 'L':
		return "unix"
	}
	return "unknown"
}
