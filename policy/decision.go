package policy

import (
	"go.uber.org/zap/zapcore"

	"github.com/msgate/msgate/policy/detect"
)

// Verdict is what happens to a recipient or a message.
type Verdict uint8

const (
	// Accept lets the recipient or message through.
	Accept Verdict = iota
	// Defer refuses it temporarily (4xx); the client retries later.
	Defer
	// Reject refuses it permanently (5xx).
	Reject
	// Hold accepts the message into the MTA's hold queue (milter
	// quarantine); only decided at end of message.
	Hold
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Defer:
		return "defer"
	case Reject:
		return "reject"
	case Hold:
		return "hold"
	}
	return "unknown"
}

// Reason says why a decision was taken. The set is fixed so that it can be a
// metrics label.
type Reason string

const (
	ReasonNotMicrosoft    Reason = "not-microsoft"
	ReasonNullSender      Reason = "null-sender"
	ReasonExempt          Reason = "exempt"
	ReasonWithinLimits    Reason = "within-limits"
	ReasonRateLimit       Reason = "rate-limit"
	ReasonDailyCap        Reason = "daily-cap"
	ReasonFlagged         Reason = "account-flagged"
	ReasonDNSFailure      Reason = "dns-failure"
	ReasonStateFailure    Reason = "state-failure"
	ReasonDuplicate       Reason = "duplicate-recipient"
	ReasonMessageRefused  Reason = "message-refused"
	ReasonMessageAccepted Reason = "message-accepted"
	ReasonDeliveryPaused  Reason = "microsoft-delivery-paused"
)

// Reply is what the SMTP client is told. Text is plain words for the person
// reading a bounce and never carries internal detail.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// Decision is the policy's answer for one recipient or one message.
type Decision struct {
	Verdict Verdict
	Reply   Reply // empty for Accept
	Reason  Reason
	// Rule names the rate rule that decided, if any.
	Rule string
	// Monitor is true when a monitor rule would have acted: the mail passes,
	// the decision is logged as "would have acted".
	Monitor bool
	// Postponed is true when a refusal of a non-SMTP recipient was turned
	// into Accept at RCPT and will refuse the whole message at end of
	// message.
	Postponed bool
	// Microsoft and Group say how the recipient was classified.
	Microsoft bool
	Group     detect.Group
	// Domain is the recipient's domain (for logs; never the local part).
	Domain string
	// Err is the internal cause, for logs only.
	Err error
	// Stamp, at end of message, is the token to add as the stamp header.
	Stamp string
	// QueueID, on a hold at end of message, is the MTA's id of the held
	// message (when the MTA told it), so that it can be released. The
	// session logs it already (queue_id).
	QueueID string
}

// StampHeader is the header that carries the stamp.
const StampHeader = "X-Msgate-Ref"

// Replies, named once.
var (
	ReplyRateDefer = Reply{451, "4.7.1",
		"This account has sent too much mail to Microsoft-hosted mailboxes; try again later"}
	ReplyRateReject = Reply{550, "5.7.1",
		"This account has sent too much mail to Microsoft-hosted mailboxes"}
	ReplyDNSDefer = Reply{451, "4.7.1",
		"Cannot check where this recipient's mail is hosted right now; try again later"}
	ReplyStateDefer = Reply{451, "4.7.1",
		"Temporary local problem; try again later"}
	ReplyFlaggedDefer = Reply{451, "4.7.1",
		"Mail from this account to Microsoft-hosted mailboxes is held because recipients complained; contact your postmaster"}
	ReplyFlaggedReject = Reply{550, "5.7.1",
		"Mail from this account to Microsoft-hosted mailboxes is stopped because recipients complained; contact your postmaster"}
	ReplyCapDefer = Reply{451, "4.7.1",
		"This server has reached its daily volume for Microsoft-hosted mailboxes; try again later"}
	ReplyCapReject = Reply{550, "5.7.1",
		"This server has reached its daily volume for Microsoft-hosted mailboxes"}
	ReplyPausedDefer = Reply{451, "4.7.1",
		"Delivery to Microsoft-hosted mailboxes is paused on this server; try again later"}
	// ReplyPausedHold is the quarantine reason of mail held while
	// Microsoft delivery is paused.
	ReplyPausedHold = Reply{Text: "msgate: delivery to Microsoft-hosted mailboxes paused"}
	// ReplyCapHold is the quarantine reason Postfix logs for a held message.
	ReplyCapHold = Reply{Text: "msgate: daily volume for Microsoft-hosted mailboxes reached"}
)

// String is the reply as an SMTP line: "451 4.7.1 text".
func (r Reply) String() string {
	if r.Code == 0 {
		return ""
	}
	return itoa3(r.Code) + " " + r.Enhanced + " " + r.Text
}

func itoa3(n int) string {
	return string([]byte{byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)})
}

// MarshalLogObject lets a Decision log itself with fixed keys.
func (d Decision) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("action", d.Verdict.String())
	enc.AddString("reason", string(d.Reason))
	if d.Rule != "" {
		enc.AddString("rule", d.Rule)
	}
	if d.Monitor {
		enc.AddBool("would_have_acted", true)
	}
	if d.Postponed {
		enc.AddBool("postponed_to_end_of_message", true)
	}
	if d.Domain != "" {
		enc.AddString("rcpt_domain", d.Domain)
	}
	if d.Microsoft {
		enc.AddString("provider", string(d.Group))
	}
	if d.Reply.Code != 0 {
		enc.AddString("reply", d.Reply.String())
	}
	if d.Err != nil {
		enc.AddString("error", d.Err.Error())
	}
	if d.Stamp != "" {
		enc.AddBool("stamped", true)
	}
	return nil
}
