package milter

import (
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/msgate/msgate/policy"
)

func TestResponse(t *testing.T) {
	tests := []struct {
		name     string
		d        policy.Decision
		wantCode byte
		wantData string
	}{
		{"accept", policy.Decision{Verdict: policy.Accept}, byte(gomilter.ActContinue), ""},
		{"monitor passes", policy.Decision{Verdict: policy.Accept, Monitor: true, Reason: policy.ReasonRateLimit}, byte(gomilter.ActContinue), ""},
		{"defer", policy.Decision{Verdict: policy.Defer, Reply: policy.ReplyRateDefer}, byte(gomilter.ActReplyCode),
			"451 4.7.1 This account has sent too much mail to Microsoft-hosted mailboxes; try again later\x00"},
		{"reject", policy.Decision{Verdict: policy.Reject, Reply: policy.ReplyRateReject}, byte(gomilter.ActReplyCode),
			"550 5.7.1 This account has sent too much mail to Microsoft-hosted mailboxes\x00"},
		{"percent escaped", policy.Decision{Verdict: policy.Defer, Reply: policy.Reply{Code: 451, Enhanced: "4.7.1", Text: "100% full"}},
			byte(gomilter.ActReplyCode), "451 4.7.1 100%% full\x00"},
		{"hold continues after the quarantine", policy.Decision{Verdict: policy.Hold, Reply: policy.ReplyCapHold}, byte(gomilter.ActContinue), ""},
		{"refusal without reply is not sent", policy.Decision{Verdict: policy.Defer}, byte(gomilter.ActContinue), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Response(tt.d)
			msg := r.Response()
			if msg.Code != tt.wantCode || string(msg.Data) != tt.wantData {
				t.Errorf("Response = %q %q, want %q %q", msg.Code, msg.Data, tt.wantCode, tt.wantData)
			}
			if !r.Continue() {
				t.Errorf("Response is final: go-milter would drop the session's handler")
			}
		})
	}
}
