package milter_test

import (
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/msgate/msgate/milter"
	"github.com/msgate/msgate/policy/state"
)

func TestNegotiationFollowsTheOffer(t *testing.T) {
	noReplies := gomilter.OptNoConnReply | gomilter.OptNoMailReply
	for _, tc := range []struct {
		name        string
		version     uint32
		offer       gomilter.OptProtocol
		wantVersion uint32
		wantProto   gomilter.OptProtocol
	}{
		{"version 6, every flag (Postfix, Sendmail)", 6, postfixOffer, 6, milter.Protocol},
		{"version 6 without the no-reply flags", 6, postfixOffer &^ noReplies, 6, milter.Stages},
		{"version 6, nothing offered", 6, 0, 6, 0},
		{"version 2", 2, 0x7f, 2, milter.Stages | gomilter.OptNoData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, hourly(10))
			r := dialOffer(t, f.addr, tc.version, tc.offer)
			if r.version != tc.wantVersion || r.proto != tc.wantProto {
				t.Fatalf("negotiated version %d, protocol %#x; want %d, %#x", r.version, r.proto, tc.wantVersion, tc.wantProto)
			}
			// connect and MAIL are answered exactly when the no-reply
			// flags were not negotiated: a stray answer would be read as
			// the RCPT's.
			r.connect(t)
			if got := r.mailRcpt(t, "alice", "a@outlook.com"); got != 'c' {
				t.Fatalf("RCPT answered %q", got)
			}
			if got := r.endOfMessage(t); got != 'c' {
				t.Fatalf("end of message answered %q", got)
			}
			if u := f.usage("rate/hourly/alice", time.Hour); u != (state.Usage{Committed: 1}) {
				t.Fatalf("usage = %+v, want 1 committed", u)
			}
		})
	}
}

func TestDataAcceptsWhatNeedsNoEndOfMessage(t *testing.T) {
	f := start(t, hourly(10))
	r := dialRaw(t, f.addr)
	if got := r.mailRcpt(t, "alice", "b@example.org"); got != 'c' {
		t.Fatalf("RCPT answered %q", got)
	}
	if got := r.data(t); got != 'a' {
		t.Fatalf("DATA of a message without a Microsoft recipient answered %q, want accept", got)
	}
	// Postfix ends the accepted message with an abort, then goes on with
	// the next transaction on the connection.
	r.write(t, 'A', nil)
	if got := r.mailRcpt(t, "alice", "a@outlook.com"); got != 'c' {
		t.Fatalf("RCPT answered %q", got)
	}
	if got := r.data(t); got != 'c' {
		t.Fatalf("DATA of a message with a Microsoft recipient answered %q, want continue", got)
	}
	if got := r.endOfMessage(t); got != 'c' {
		t.Fatalf("end of message answered %q", got)
	}
	if u := f.usage("rate/hourly/alice", time.Hour); u != (state.Usage{Committed: 1}) {
		t.Fatalf("usage = %+v, want the Microsoft recipient committed", u)
	}
}

func TestDataKeepsARefusedRecipientsMessage(t *testing.T) {
	f := start(t, hourly(1))
	r := dialRaw(t, f.addr)
	r.mailRcpt(t, "alice", "a@outlook.com")
	r.endOfMessage(t)
	// Over the limit: the recipient is refused, nothing is reserved, but
	// the message (to its other recipients) is still Microsoft's business:
	// end of message stamps it.
	if got := r.mailRcpt(t, "alice", "b@outlook.com"); got != 'y' {
		t.Fatalf("RCPT over the limit answered %q, want a reply code", got)
	}
	if got := r.data(t); got != 'c' {
		t.Fatalf("DATA answered %q, want continue", got)
	}
}

func TestQuitNewConnectionStartsANewSession(t *testing.T) {
	f := start(t, hourly(1))
	r := dialRaw(t, f.addr)
	if got := r.mailRcpt(t, "alice", "a@outlook.com"); got != 'c' {
		t.Fatalf("RCPT answered %q", got)
	}
	// The SMTP session ends in the middle of the transaction; the MTA
	// keeps the milter connection for its next one.
	r.write(t, 'K', nil)
	r.connect(t)
	if got := r.mailRcpt(t, "alice", "b@outlook.com"); got != 'c' {
		t.Fatalf("RCPT in the new session answered %q: the old session's unit was not given back", got)
	}
	if got := r.endOfMessage(t); got != 'c' {
		t.Fatalf("end of message answered %q", got)
	}
	if u := f.usage("rate/hourly/alice", time.Hour); u != (state.Usage{Committed: 1}) {
		t.Fatalf("usage = %+v, want 1 committed", u)
	}
}
