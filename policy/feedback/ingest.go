package feedback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/msgate/msgate/policy"
	"github.com/msgate/msgate/policy/feedback/report"
	"github.com/msgate/msgate/policy/feedback/stamp"
	"github.com/msgate/msgate/policy/state"
)

// Outcomes of one report.
const (
	OutcomeRecorded     = "recorded"
	OutcomeDuplicate    = "duplicate"
	OutcomeNotComplaint = "not-a-complaint"
	OutcomeUnattributed = "unattributed"
	OutcomeForged       = "forged"
	OutcomeUnparseable  = "unparseable"
	AttributedByStamp   = "stamp"
	AttributedByQueueID = "queue-id"
	AttributedByNone    = "none"
)

// Result is what happened to one report; msgate fbl prints it as a JSON
// line.
type Result struct {
	Format       string    `json:"format"`
	FeedbackType string    `json:"feedback_type,omitempty"`
	Account      string    `json:"account,omitempty"`
	AttributedBy string    `json:"attributed_by"`
	Outcome      string    `json:"outcome"`
	ReportID     string    `json:"report_id,omitempty"`
	SentAt       time.Time `json:"sent_at,omitzero"`
	Detail       string    `json:"detail,omitempty"`
	// Change is what a recorded complaint did to its account.
	Change policy.Transition `json:"-"`
}

// Recorder counts an attributed complaint against its account and says
// what that did to the account; *policy.Engine is one.
type Recorder interface {
	RecordComplaint(ctx context.Context, c state.Complaint, now time.Time) (added bool, t policy.Transition, err error)
}

// Ingester turns reports into complaints. Sealer may be nil (no stamping
// configured); Attributions are the queue ids remembered at end of
// message.
type Ingester struct {
	Sealer       *stamp.Sealer
	Attributions state.Attributions
	Recorder     Recorder
}

// Ingest parses one report and records its complaint. The error is non-nil
// only when the store failed: the report must then be kept and retried.
// Message-IDs are not used for attribution: reading them would cost the MTA
// a round trip per header on every message, and the queue id in Postfix's
// own Received header identifies the message as well.
func (in *Ingester) Ingest(ctx context.Context, raw []byte, now time.Time) (Result, error) {
	res := Result{Format: string(report.FormatUnknown), AttributedBy: AttributedByNone}
	rep, err := report.Parse(bytes.NewReader(raw))
	switch {
	case errors.Is(err, report.ErrNotReport):
		res.Outcome, res.Detail = OutcomeNotComplaint, err.Error()
		return res, nil
	case err != nil:
		res.Outcome, res.Detail = OutcomeUnparseable, err.Error()
		return res, nil
	}
	res.Format, res.FeedbackType, res.ReportID = string(rep.Format), rep.FeedbackType, rep.ID
	if !rep.Complaint {
		res.Outcome = OutcomeNotComplaint
		return res, nil
	}
	account, by, sent, detail, err := in.attribute(ctx, rep, now)
	switch {
	case err != nil:
		return res, fmt.Errorf("attributing by queue id: %w", err)
	case by == OutcomeForged:
		res.Outcome, res.Detail = OutcomeForged, detail
		return res, nil
	case by == "":
		res.Outcome, res.Detail = OutcomeUnattributed, detail
		return res, nil
	}
	res.Account, res.AttributedBy, res.SentAt = account, by, sent
	added, change, err := in.Recorder.RecordComplaint(ctx, state.Complaint{Account: account, ReportID: rep.ID, At: now.UTC()}, now)
	if err != nil {
		return res, fmt.Errorf("recording the complaint: %w", err)
	}
	res.Change = change
	res.Outcome = OutcomeRecorded
	if !added {
		res.Outcome = OutcomeDuplicate
	}
	return res, nil
}

// attribute finds the account: by a genuine stamp, else by queue id. A
// stamp that is present but does not verify attributes to nobody, so that
// a forged or altered stamp can never flag an account.
// by is "" when the report is unattributed, with detail saying why.
func (in *Ingester) attribute(ctx context.Context, rep *report.Report, now time.Time) (account, by string, sent time.Time, detail string, err error) {
	stale := ""
	if len(rep.Stamps) > 0 {
		if in.Sealer == nil {
			return "", OutcomeForged, time.Time{}, "the copy carries a stamp but no feedback.secret is configured to verify it", nil
		}
		var firstErr error
		for _, tok := range rep.Stamps {
			c, err := in.Sealer.Open(tok, now)
			if err == nil {
				return c.Account, AttributedByStamp, c.At, "", nil
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		if !errors.Is(firstErr, stamp.ErrExpired) && !errors.Is(firstErr, stamp.ErrRetired) {
			return "", OutcomeForged, time.Time{}, firstErr.Error(), nil
		}
		// A genuine but old stamp: the queue id may still be remembered.
		stale = firstErr.Error() + "; "
	}
	for _, id := range rep.QueueIDs {
		acct, at, ok, err := in.Attributions.Attribute(ctx, id)
		if err != nil {
			return "", "", time.Time{}, "", err
		}
		if ok {
			return acct, AttributedByQueueID, at, "", nil
		}
	}
	if len(rep.QueueIDs) == 0 {
		return "", "", time.Time{}, stale + "no stamp and no MTA queue id (Postfix or Sendmail Received header) in the copy", nil
	}
	return "", "", time.Time{}, stale + "no stamp, and no remembered queue id among " + fmt.Sprint(rep.QueueIDs), nil
}
