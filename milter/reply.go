package milter

import (
	"strings"

	gomilter "github.com/emersion/go-milter"

	"github.com/msgate/msgate/policy"
)

// Response translates a decision into a go-milter response.
//
// Refusals are sent as a reply code (SMFIR_REPLYCODE) rather than as
// SMFIR_TEMPFAIL or SMFIR_REJECT: the MTA then uses msgate's text, and
// go-milter treats the response as non-final, so the session's handler and
// its connection data survive for the next message. Acceptance is
// "continue", which both Postfix and Sendmail take as accept at end of
// message, for the same reason.
//
// Hold is "continue" here: the adapter sends the quarantine request first.
func Response(d policy.Decision) gomilter.Response {
	if d.Verdict == policy.Accept || d.Verdict == policy.Hold || d.Reply.Code == 0 {
		return gomilter.RespContinue
	}
	// libmilter's smfi_setreply: a lone '%' in the text is a format
	// directive to the MTA.
	return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), strings.ReplaceAll(d.Reply.String(), "%", "%%"))
}
