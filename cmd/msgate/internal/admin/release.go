package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/msgate/msgate/policy/release"
)

// ReleaseRequest is the body of POST /v1/release.
type ReleaseRequest struct {
	// DryRun plans and changes nothing.
	DryRun bool `json:"dry_run"`
	// Max bounds the messages released; 0 is release.max_per_run.
	Max int `json:"max,omitempty"`
}

// The outcomes of a held message in a release.
const (
	OutcomeReleased = "released"           // released and counted
	OutcomePlanned  = "would_release"      // a dry run would release it
	OutcomeKept     = "held"               // stays held (Reason says why)
	OutcomeFailed   = "failed"             // the release failed; its units were given back
	OutcomeUncount  = "released_uncounted" // released, but its units could not be made to count
)

// ReleaseStep is one held message in a release.
type ReleaseStep struct {
	release.Step
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// ReleaseReport is what a release did, or would do.
type ReleaseReport struct {
	Time   time.Time `json:"time"`
	DryRun bool      `json:"dry_run"`
	// Cap is the units the cap had room for when planning (after
	// release.leave_room); -1 for no hard cap.
	Cap int64 `json:"cap_room"`
	// Paused is set while Microsoft delivery is suspended.
	Paused bool `json:"delivery_paused,omitempty"`
	// Held is the messages in the hold queue; Steps those of them with a
	// Microsoft recipient, releases first, in release order.
	Held  int           `json:"held"`
	Steps []ReleaseStep `json:"steps"`
	// Skipped lists the lines of postqueue -j that could not be read.
	Skipped []release.LineError `json:"skipped_lines,omitempty"`
	// Released, Failed and Kept count the steps by outcome (Released
	// counts would_release in a dry run).
	Released int `json:"released"`
	Failed   int `json:"failed"`
	Kept     int `json:"kept"`
}

// ErrQueue wraps a failure to read the Postfix queue: postqueue missing,
// or failing.
var ErrQueue = errors.New("cannot read the Postfix queue")

func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	if s.Release == nil {
		s.fail(w, http.StatusNotImplemented, errors.New("this daemon does not release held mail"))
		return
	}
	var req ReleaseRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("reading the request: %w", err))
		return
	}
	if req.Max < 0 {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("max must be 0 or more, not %d", req.Max))
		return
	}
	rep, err := s.Release(r.Context(), req)
	if err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// Release asks the daemon to release held mail (or, with DryRun, to plan
// it). A release may take a while: each message runs postsuper.
func (c *Client) Release(req ReleaseRequest) (ReleaseReport, error) {
	var rep ReleaseReport
	err := c.do(http.MethodPost, "/v1/release", req, &rep)
	return rep, err
}

// Add appends a step and counts its outcome.
func (r *ReleaseReport) Add(s ReleaseStep) {
	r.Steps = append(r.Steps, s)
	switch s.Outcome {
	case OutcomeReleased, OutcomePlanned, OutcomeUncount:
		r.Released++
	case OutcomeFailed:
		r.Failed++
	default:
		r.Kept++
	}
}
