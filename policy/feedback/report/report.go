package report

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Format is the kind of complaint report.
type Format string

const (
	// FormatJMRP is Microsoft's own Junk Mail Reporting Program format: a
	// multipart/mixed message holding the original as message/rfc822, with no
	// machine-readable report part.
	FormatJMRP Format = "jmrp"
	// FormatARF is an RFC 5965 Abuse Reporting Format report.
	FormatARF Format = "arf"
	// FormatUnknown is never returned with a Report; it exists for callers
	// that need a value for "no report".
	FormatUnknown Format = "unknown"
)

// StampHeader is the header msgate adds to outgoing mail; Parse collects its
// values from the original message.
const StampHeader = "X-Msgate-Ref"

// MaxSize is the largest input Parse reads. Complaint reports carry one
// message; anything bigger is not worth the memory.
const MaxSize = 10 << 20

// maxParts bounds the top-level parts Parse looks at. A report has two or
// three; the bound only stops pathological inputs.
const maxParts = 64

var (
	// ErrNotReport is returned for a message that is not a complaint report:
	// a DSN or bounce, an autoreply, an ordinary message. Callers recognise
	// and ignore it.
	ErrNotReport = errors.New("report: not a complaint report")
	// ErrUnparseable is returned for input that is truncated or garbage
	// before Parse can tell what kind of report it is.
	ErrUnparseable = errors.New("report: unparseable")
)

// Report is what one complaint report says about the message it complains
// about. Fields the report does not carry are left empty.
type Report struct {
	Format Format
	// FeedbackType is lower-cased: "abuse" for JMRP complaints; ARF's
	// Feedback-Type ("abuse", "fraud", "auth-failure", "not-spam", "virus",
	// "other" ...).
	FeedbackType string
	// Complaint is true for a user complaint (JMRP; ARF abuse, fraud, virus,
	// other) and false for auth-failure (DMARC forensic reports, RFC 6591),
	// not-spam (RFC 6650) and any type this package does not know.
	Complaint bool
	// Stamps are the values of StampHeader in the original message's header,
	// unfolded and trimmed, in header order. They are unverified: anybody can
	// write any header into a message that ends up complained about.
	Stamps []string
	// MessageID is the original's Message-ID without angle brackets ("" if
	// none). For ARF without it, the feedback report's Original-Message-ID.
	MessageID string
	// QueueIDs are the Postfix queue ids from the original's Received
	// headers that Postfix wrote ("by host (Postfix) with ESMTP id 4Xyz..."),
	// topmost first, without duplicates.
	QueueIDs []string
	// OriginalRcpt is JMRP's X-HmXmrOriginalRecipient or ARF's first
	// Original-Rcpt-To, as given: providers redact or hash it.
	OriginalRcpt string
	// OriginalMailFrom is ARF's Original-Mail-From, or else the original's
	// Return-Path.
	OriginalMailFrom string
	// SourceIP is the IP the provider received the original from: ARF's
	// Source-IP, or for JMRP the IP in the Subject ("complaint about message
	// from 192.0.2.1"). Empty when absent or not an IP (Microsoft sometimes
	// masks it as "192.0.2.xxx"). JMRP's X-Reporter-IP is the complaining
	// user's IP and is never used.
	SourceIP string
	// Arrival is ARF's Arrival-Date (or the older Received-Date), or else the
	// original's Date, in UTC; zero if unknown or unparseable.
	Arrival time.Time
	// ID identifies this report for de-duplication (hex SHA-256). It is
	// derived from the report's own Message-ID when it has one, so the same
	// report delivered twice, even through different paths that add their own
	// trace headers, gets the same ID; without a Message-ID it is derived
	// from the report's From, To, Date and Subject and its body with line
	// endings and trailing white space normalised. Two users' complaints
	// about one message are two reports with different IDs. A truncated copy
	// of a report with a Message-ID has the ID of the whole report.
	ID string
	// Reporter is the lower-cased address in the report's From, e.g.
	// "staff@hotmail.com". It is not authenticated.
	Reporter string
	// Truncated is true when the input ended (or its MIME structure broke)
	// before the feedback-report fields and the original message's header
	// were complete. The fields then hold only what came before the cut, and
	// the last header field before the cut is dropped because it may have
	// been cut itself: a report whose stamp was lost this way has no Stamps
	// and Truncated set, one whose stamp was stripped has no Stamps alone.
	// A missing closing boundary after a complete original is not a cut.
	Truncated bool
}

// Parse reads one complaint report, a whole email as delivered to the
// complaint mailbox, and says what it reports.
//
// It returns an error wrapping ErrNotReport for mail that is not a
// complaint report, and one wrapping ErrUnparseable for input that is
// empty, larger than MaxSize, garbage, or cut before its kind is known. A
// report cut later is returned with Truncated set. Other errors come from
// reading r.
func Parse(r io.Reader) (*Report, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("report: reading input: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: too large (more than %d bytes)", ErrUnparseable, MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrUnparseable)
	}
	return parse(data)
}

func parse(data []byte) (*Report, error) {
	// A report saved from an mbox starts with the "From " separator line.
	if bytes.HasPrefix(data, []byte("From ")) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	rd := bytes.NewReader(data)
	br := bufio.NewReader(rd)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the report's header: %s", ErrUnparseable, clip(err))
	}
	if h.Len() == 0 {
		return nil, fmt.Errorf("%w: no header fields", ErrUnparseable)
	}
	headerLen := len(data) - rd.Len() - br.Buffered()
	if hb := data[:headerLen]; !bytes.HasSuffix(hb, []byte("\n\n")) && !bytes.HasSuffix(hb, []byte("\n\r\n")) {
		// Legal for a message without a body, but a report has one: the
		// input was cut inside the header.
		return nil, fmt.Errorf("%w: the report's header is not ended by an empty line", ErrUnparseable)
	}
	body := data[headerLen:]

	rep := &Report{
		ID:       reportID(h, body),
		Reporter: strings.ToLower(address(h.Get("From"))),
	}
	subject := h.Get("Subject")
	jmrpSubject := isJMRPSubject(subject)

	mediaType, params := contentType(h.Get("Content-Type"))
	reportType := strings.ToLower(params["report-type"])
	switch {
	case mediaType == "multipart/report":
		// RFC 6522: the report-type names the report. Only feedback-report
		// (RFC 5965 §3) is a complaint; delivery-status (RFC 3464) is a
		// bounce, disposition-notification (RFC 8098) a read receipt.
		if reportType != "" && reportType != "feedback-report" {
			return nil, fmt.Errorf("%w: multipart/report with report-type=%s", ErrNotReport, reportType)
		}
	case strings.HasPrefix(mediaType, "multipart/"):
	default:
		if jmrpSubject {
			return nil, fmt.Errorf("%w: JMRP subject but %s body, not multipart", ErrUnparseable, mediaType)
		}
		return nil, fmt.Errorf("%w: %s message", ErrNotReport, mediaType)
	}
	declaredARF := reportType == "feedback-report"
	boundary := params["boundary"]
	if boundary == "" {
		if declaredARF || jmrpSubject {
			return nil, fmt.Errorf("%w: %s without a boundary", ErrUnparseable, mediaType)
		}
		return nil, fmt.Errorf("%w: %s without a boundary", ErrNotReport, mediaType)
	}

	s := scanParts(body, boundary)
	switch {
	case s.feedback != nil:
		err = rep.fromARF(s)
	case jmrpSubject || (s.original != nil && s.original.has("X-HmXmrOriginalRecipient")):
		err = rep.fromJMRP(s, subject)
	case declaredARF:
		return nil, fmt.Errorf("%w: feedback report without a message/feedback-report part%s", ErrUnparseable, s.cause())
	default:
		return nil, fmt.Errorf("%w: %s without a feedback report or a JMRP original", ErrNotReport, mediaType)
	}
	if err != nil {
		return nil, err
	}
	rep.fromOriginal(s.original)
	rep.Truncated = s.truncated()
	return rep, nil
}

func (rep *Report) fromARF(s *scan) error {
	fb := s.feedback
	ft := strings.ToLower(firstWord(fb.get("Feedback-Type")))
	if ft == "" {
		return fmt.Errorf("%w: message/feedback-report part without Feedback-Type%s", ErrUnparseable, s.cause())
	}
	rep.Format = FormatARF
	rep.FeedbackType = ft
	switch ft {
	// RFC 5965 §7.3 registers abuse, fraud, other and virus: all say a
	// recipient (or its filter) objects to the message.
	case "abuse", "fraud", "virus", "other":
		rep.Complaint = true
	}
	rep.OriginalMailFrom = address(fb.get("Original-Mail-From"))
	rep.OriginalRcpt = address(fb.get("Original-Rcpt-To"))
	rep.SourceIP = ipAddr(fb.get("Source-IP"))
	rep.MessageID = messageID(fb.get("Original-Message-ID"))
	if d := fb.get("Arrival-Date"); d != "" {
		rep.Arrival = parseDate(d)
	} else {
		// Received-Date is the field's name in the pre-RFC drafts that
		// Yahoo and AOL still write.
		rep.Arrival = parseDate(fb.get("Received-Date"))
	}
	return nil
}

func (rep *Report) fromJMRP(s *scan, subject string) error {
	if len(s.original) == 0 && !s.truncated() {
		return fmt.Errorf("%w: JMRP report without the original message", ErrUnparseable)
	}
	rep.Format = FormatJMRP
	rep.FeedbackType = "abuse"
	rep.Complaint = true
	rep.SourceIP = jmrpSourceIP(subject)
	rep.OriginalRcpt = address(s.original.get("X-HmXmrOriginalRecipient"))
	return nil
}

// fromOriginal fills what the original message's header says. For the
// envelope sender and the arrival time the feedback report's fields win; for
// the Message-ID the original's header wins over the non-standard
// Original-Message-ID field.
func (rep *Report) fromOriginal(o fields) {
	for _, v := range o.values(StampHeader) {
		if v = strings.TrimSpace(v); v != "" {
			rep.Stamps = append(rep.Stamps, v)
		}
	}
	if id := messageID(o.get("Message-ID")); id != "" {
		rep.MessageID = id
	}
	rep.QueueIDs = postfixQueueIDs(o.values("Received"))
	if rep.OriginalMailFrom == "" {
		rep.OriginalMailFrom = address(o.get("Return-Path"))
	}
	if rep.Arrival.IsZero() {
		rep.Arrival = parseDate(o.get("Date"))
	}
}

// scan is what the top-level parts of a multipart report hold.
type scan struct {
	feedback    fields // fields of the first message/feedback-report part; nil if none
	feedbackCut bool
	original    fields // header of the first message/rfc822 or text/rfc822-headers part; nil if none
	originalCut bool
	err         error // what stopped the walk over the parts, if not the closing boundary
}

// truncated says whether the input ended before the original's header was
// read whole. A missing closing boundary after a complete original header is
// common in real reports and does not count.
func (s *scan) truncated() bool {
	if s.original != nil {
		return s.originalCut || s.feedbackCut
	}
	return s.err != nil || s.feedbackCut
}

func (s *scan) cause() string {
	if s.err == nil {
		return ""
	}
	return " (" + clip(s.err) + ")"
}

// clip shortens a parser's error for the log and keeps it printable ASCII:
// go-message quotes the offending line, which in garbage is long and binary.
func clip(err error) string {
	const max = 80
	msg := []byte(err.Error())
	for i, c := range msg {
		if c < ' ' || c > '~' {
			msg[i] = '?'
		}
	}
	if len(msg) > max {
		return string(msg[:max]) + "..."
	}
	return string(msg)
}

func scanParts(body []byte, boundary string) *scan {
	s := &scan{}
	mr := textproto.NewMultipartReader(bytes.NewReader(body), boundary)
	for range maxParts {
		p, err := mr.NextPart()
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			return s
		}
		mediaType, _ := contentType(p.Header.Get("Content-Type"))
		switch mediaType {
		case "message/feedback-report":
			if s.feedback == nil {
				s.feedback, s.feedbackCut = readFields(decoded(p))
			}
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			if s.original == nil {
				s.original, s.originalCut = readFields(decoded(p))
			}
		}
		if s.feedback != nil && s.original != nil {
			// Anything after is of no interest, and a broken tail (a
			// missing closing boundary) must not spoil what was read.
			return s
		}
	}
	return s
}

// decoded undoes the part's Content-Transfer-Encoding. go-message reports an
// unknown encoding or charset but still returns a readable body, which is
// what we want: the fields we need are ASCII.
func decoded(p *textproto.Part) io.Reader {
	e, _ := message.New(message.Header{Header: p.Header}, p)
	return e.Body
}

func reportID(h textproto.Header, body []byte) string {
	sum := sha256.New()
	if id := messageID(h.Get("Message-Id")); id != "" {
		io.WriteString(sum, "msgate report id v1\x00message-id\x00")
		io.WriteString(sum, id)
		return hex.EncodeToString(sum.Sum(nil))
	}
	io.WriteString(sum, "msgate report id v1\x00content\x00")
	for _, k := range []string{"From", "To", "Date", "Subject"} {
		io.WriteString(sum, k+": "+strings.Join(strings.Fields(h.Get(k)), " ")+"\n")
	}
	io.WriteString(sum, "\n")
	for line := range bytes.Lines(bytes.TrimRight(body, " \t\r\n")) {
		sum.Write(bytes.TrimRight(line, " \t\r\n"))
		sum.Write([]byte{'\n'})
	}
	return hex.EncodeToString(sum.Sum(nil))
}
