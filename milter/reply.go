package milter

import (
	"strings"

	"github.com/msgate/msgate/policy"
)

// appendResponse appends the packet that answers the MTA for a decision.
//
// Refusals are sent as a reply code (SMFIR_REPLYCODE) rather than as
// SMFIR_TEMPFAIL or SMFIR_REJECT, so that the MTA uses msgate's text.
// Acceptance is "continue", which both Postfix and Sendmail take as accept
// at end of message; msgate never sends a final accept, so the MTA keeps
// asking it about every later message of the connection.
//
// Hold is "continue" here: the adapter sends the quarantine request first.
func appendResponse(b []byte, d policy.Decision) []byte {
	if d.Verdict == policy.Accept || d.Verdict == policy.Hold || d.Reply.Code == 0 {
		return appendPacket(b, replyContinue)
	}
	// libmilter's smfi_setreply: a lone '%' in the text is a format
	// directive to the MTA.
	return appendPacket(b, replyCode, strings.ReplaceAll(d.Reply.String(), "%", "%%"), "\x00")
}
