package feedback_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/feedback"
	"github.com/msgate/msgate/policy/feedback/stamp"
	"github.com/msgate/msgate/policy/state/memory"
)

var (
	ctx = context.Background()
	t0  = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
)

// jmrp builds a Microsoft JMRP report around an original with the given
// extra header lines and Postfix queue id.
func jmrp(guid, extraHeaders, queueID string) []byte {
	return []byte(strings.ReplaceAll(`From: staff@hotmail.com
To: fbl@example.org
Subject: complaint about message from 198.51.100.20
Message-ID: <`+guid+`@BAY0-XMR.phx.gbl>
Date: Fri, 27 Nov 2026 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: message/rfc822
Content-Disposition: inline

X-HmXmrOriginalRecipient: jo@hotmail.com
X-Message-Guid: `+guid+`
Received: from [192.0.2.44] (unknown [192.0.2.44])
	by mx.test.local (Postfix) with ESMTPSA id `+queueID+`
	for <jo@hotmail.com>; Fri, 27 Nov 2026 11:00:00 +0000 (UTC)
From: Alice <alice@example.org>
To: jo@hotmail.com
Subject: offer
Message-ID: <orig-`+guid+`@example.org>
`+extraHeaders+`
hello
--b1--
`, "\n", "\r\n"))
}

func newIngester(t *testing.T) (*feedback.Ingester, *memory.Store, *stamp.Sealer) {
	t.Helper()
	s, err := stamp.New(stamp.Key{Secret: []byte("a test secret that is long enough")}, nil, 60*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	eng := policy.NewEngine(policy.Config{}, nil, st)
	return &feedback.Ingester{Sealer: s, Attributions: st, Recorder: eng}, st, s
}

func ingest(t *testing.T, in *feedback.Ingester, raw []byte) feedback.Result {
	t.Helper()
	r, err := in.Ingest(ctx, raw, t0)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	return r
}

func TestStampAttributesOnce(t *testing.T) {
	in, st, s := newIngester(t)
	tok, _ := s.Seal("alice", t0.Add(-time.Hour))
	raw := jmrp("g1", "X-Msgate-Ref: "+tok, "4AbCdEf123")
	r := ingest(t, in, raw)
	if r.Outcome != feedback.OutcomeRecorded || r.Account != "alice" || r.AttributedBy != feedback.AttributedByStamp ||
		r.Format != "jmrp" || r.FeedbackType != "abuse" || !r.SentAt.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("got %+v", r)
	}
	if r := ingest(t, in, raw); r.Outcome != feedback.OutcomeDuplicate || r.Account != "alice" {
		t.Fatalf("the same report again: %+v, want duplicate", r)
	}
	// A second user complaining about the same message is a second complaint.
	if r := ingest(t, in, jmrp("g2", "X-Msgate-Ref: "+tok, "4AbCdEf123")); r.Outcome != feedback.OutcomeRecorded {
		t.Fatalf("another report: %+v", r)
	}
	if cs, _ := st.ComplaintsSince(ctx, "alice", time.Time{}); len(cs) != 2 {
		t.Fatalf("alice has %d complaints, want 2", len(cs))
	}
}

func TestAlteredStampFlagsNobody(t *testing.T) {
	in, st, s := newIngester(t)
	st.Remember(ctx, "4AbCdEf123", "alice", t0)
	tok, _ := s.Seal("alice", t0)
	b := []byte(tok)
	b[len(b)-3] ^= 1 // one character changed
	if b[len(b)-3] == '.' || b[len(b)-3] < '-' {
		b[len(b)-3] = 'A'
	}
	r := ingest(t, in, jmrp("g1", "X-Msgate-Ref: "+string(b), "4AbCdEf123"))
	if r.Outcome != feedback.OutcomeForged || r.Account != "" {
		t.Fatalf("altered stamp: %+v, want forged and no account", r)
	}
	other, _ := stamp.New(stamp.Key{Secret: []byte("somebody else's secret, long enough")}, nil, 0)
	foreign, _ := other.Seal("bob", t0)
	if r := ingest(t, in, jmrp("g2", "X-Msgate-Ref: "+foreign, "4AbCdEf123")); r.Outcome != feedback.OutcomeForged {
		t.Fatalf("foreign stamp: %+v", r)
	}
	if cs, _ := st.ComplainedSince(ctx, time.Time{}); len(cs) != 0 {
		t.Fatalf("complaints recorded from forged stamps: %+v", cs)
	}
}

func TestQueueIDFallback(t *testing.T) {
	in, st, _ := newIngester(t)
	st.Remember(ctx, "4AbCdEf123", "alice", t0.Add(-2*time.Hour))
	r := ingest(t, in, jmrp("g1", "", "4AbCdEf123"))
	if r.Outcome != feedback.OutcomeRecorded || r.Account != "alice" || r.AttributedBy != feedback.AttributedByQueueID {
		t.Fatalf("stamp stripped: %+v, want attributed by queue id", r)
	}
	r = ingest(t, in, jmrp("g2", "", "4ZzUnknown9"))
	if r.Outcome != feedback.OutcomeUnattributed || r.AttributedBy != feedback.AttributedByNone || r.Detail == "" {
		t.Fatalf("unknown queue id: %+v", r)
	}
}

func TestNotComplaints(t *testing.T) {
	in, st, _ := newIngester(t)
	for file, want := range map[string]string{
		"arf-auth-failure.eml": feedback.OutcomeNotComplaint,
		"dsn.eml":              feedback.OutcomeNotComplaint,
		"plain.eml":            feedback.OutcomeNotComplaint,
		"garbage.eml":          feedback.OutcomeUnparseable,
		"empty.eml":            feedback.OutcomeUnparseable,
	} {
		raw, err := os.ReadFile("../../testdata/reports/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if r := ingest(t, in, raw); r.Outcome != want {
			t.Errorf("%s: %+v, want %s", file, r, want)
		}
	}
	if cs, _ := st.ComplainedSince(ctx, time.Time{}); len(cs) != 0 {
		t.Fatalf("complaints recorded: %+v", cs)
	}
}
