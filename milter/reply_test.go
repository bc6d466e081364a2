package milter

import (
	"encoding/binary"
	"testing"

	"github.com/msgate/msgate/policy"
)

func TestResponse(t *testing.T) {
	tests := []struct {
		name     string
		d        policy.Decision
		wantCode byte
		wantData string
	}{
		{"accept", policy.Decision{Verdict: policy.Accept}, 'c', ""},
		{"monitor passes", policy.Decision{Verdict: policy.Accept, Monitor: true, Reason: policy.ReasonRateLimit}, 'c', ""},
		{"defer", policy.Decision{Verdict: policy.Defer, Reply: policy.ReplyRateDefer}, 'y',
			"451 4.7.1 This account has sent too much mail to Microsoft-hosted mailboxes; try again later\x00"},
		{"reject", policy.Decision{Verdict: policy.Reject, Reply: policy.ReplyRateReject}, 'y',
			"550 5.7.1 This account has sent too much mail to Microsoft-hosted mailboxes\x00"},
		{"percent escaped", policy.Decision{Verdict: policy.Defer, Reply: policy.Reply{Code: 451, Enhanced: "4.7.1", Text: "100% full"}},
			'y', "451 4.7.1 100%% full\x00"},
		{"hold continues after the quarantine", policy.Decision{Verdict: policy.Hold, Reply: policy.ReplyCapHold}, 'c', ""},
		{"refusal without reply is not sent", policy.Decision{Verdict: policy.Defer}, 'c', ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := appendResponse([]byte("x"), tt.d)
			if b[0] != 'x' {
				t.Fatalf("appendResponse overwrote what was in the buffer")
			}
			b = b[1:]
			if n := binary.BigEndian.Uint32(b); int(n) != len(b)-4 {
				t.Fatalf("packet length %d, packet has %d bytes", n, len(b)-4)
			}
			if code, data := b[4], string(b[5:]); code != tt.wantCode || data != tt.wantData {
				t.Errorf("response = %q %q, want %q %q", code, data, tt.wantCode, tt.wantData)
			}
		})
	}
}
