package postfixtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msgate/msgate/cmd/msgate/internal/smtpclient"
)

// Delivery is one SMTP transaction that Postfix completed with the sink.
// A message for several recipients of one route arrives as one Delivery.
type Delivery struct {
	Sender     string   // envelope sender, "" for a bounce
	Recipients []string // envelope recipients, in RCPT order
	MailArgs   string   // the MAIL command after "FROM:", e.g. "<a@b> SIZE=312"
	RcptArgs   []string // each RCPT command after "TO:"
	// Message is the message as Postfix relayed it, header and body, with
	// "\n" line ends and dots unstuffed. Postfix has added its Received
	// header; a milter's header changes are here.
	Message string
}

// Header returns the first value of the named message header field, or "".
func (d Delivery) Header(name string) string {
	m, err := mail.ReadMessage(strings.NewReader(d.Message))
	if err != nil {
		return ""
	}
	return m.Header.Get(name)
}

// BySubject returns the deliveries whose Subject is subject.
func BySubject(ds []Delivery, subject string) []Delivery {
	var out []Delivery
	for _, d := range ds {
		if d.Header("Subject") == subject {
			out = append(out, d)
		}
	}
	return out
}

// AllRecipients returns the envelope recipients of ds, in order.
func AllRecipients(ds []Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Recipients...)
	}
	return out
}

// Delivered returns every message the sink has received in this test.
func (p *Postfix) Delivered(t testing.TB) []Delivery {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.sinkRoot, sinkDump))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading the sink's dump: %v", err)
	}
	ds, err := parseDump(string(b))
	if err != nil {
		t.Fatalf("parsing the sink's dump: %v", err)
	}
	return ds
}

// parseDump parses smtp-sink's -D file written with -S sinkMarker. Per
// message smtp-sink writes (smtp-sink(1), DUMP FILE FORMAT): the -S string;
// X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args, one X-Rcpt-Args
// per RCPT; a three-line "Received: ... (smtp-sink) ..." header that ends
// its own records; the message as received without CRs and dot-stuffing;
// and an empty line. Each message is appended in one go when its "." has
// been received, so only the last message of a file read during an append
// can be incomplete; it is left out until it ends with the empty line.
func parseDump(dump string) ([]Delivery, error) {
	var out []Delivery
	chunks := strings.Split(dump, sinkMarker+"\n")
	if chunks[0] != "" {
		return nil, fmt.Errorf("dump does not start with %q", sinkMarker)
	}
	for i, chunk := range chunks[1:] {
		last := i == len(chunks)-2
		if !strings.HasSuffix(chunk, "\n\n") {
			if last {
				break // being written
			}
			return nil, fmt.Errorf("message %d does not end with an empty line", i+1)
		}
		d, err := parseDumpMessage(strings.TrimSuffix(chunk, "\n"))
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i+1, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func parseDumpMessage(s string) (Delivery, error) {
	var d Delivery
	for {
		line, rest, ok := strings.Cut(s, "\n")
		if !ok {
			return d, errors.New("no Received record from smtp-sink")
		}
		s = rest
		name, value, _ := strings.Cut(line, ": ")
		switch name {
		case "X-Client-Addr", "X-Client-Proto", "X-Helo-Args":
		case "X-Mail-Args":
			d.MailArgs = value
			d.Sender = smtpclient.AngleAddr(value)
		case "X-Rcpt-Args":
			d.RcptArgs = append(d.RcptArgs, value)
			d.Recipients = append(d.Recipients, smtpclient.AngleAddr(value))
		case "Received":
			// "Received: from ...\n\tby HOST (smtp-sink) with ...;\n\tDATE\n"
			for range 2 {
				l, r, ok := strings.Cut(s, "\n")
				if !ok || !strings.HasPrefix(l, "\t") {
					return d, fmt.Errorf("smtp-sink's Received record ends early at %q", l)
				}
				s = r
			}
			d.Message = s
			return d, nil
		default:
			return d, fmt.Errorf("unknown smtp-sink record %q", line)
		}
	}
}

// WaitDelivered polls Delivered, flushing the queue in between, until pred
// holds, and returns the deliveries. After 60 seconds it fails the test with
// the deliveries, the queue and the end of the Postfix log.
func (p *Postfix) WaitDelivered(t testing.TB, pred func([]Delivery) bool, what string) []Delivery {
	t.Helper()
	deadline := time.Now().Add(deliveryTimeout)
	lastFlush := time.Now()
	for {
		ds := p.Delivered(t)
		if pred(ds) {
			return ds
		}
		if time.Now().After(deadline) {
			var subjects []string
			for _, d := range ds {
				subjects = append(subjects, fmt.Sprintf("%q to %v", d.Header("Subject"), d.Recipients))
			}
			q, qerr := queue()
			t.Fatalf("waited %v for %s\ndelivered: %v\nqueue: %+v (err %v)\npostfix log (last lines):\n%s",
				deliveryTimeout, what, subjects, q, qerr, p.logTail(40))
		}
		if time.Since(lastFlush) > 2*time.Second {
			p.Flush(t)
			lastFlush = time.Now()
		}
		time.Sleep(pollInterval)
	}
}

// QueueEntry is one message in the Postfix queue, as postqueue -j shows it
// (postqueue(1), JSON OBJECT FORMAT).
type QueueEntry struct {
	QueueName   string           `json:"queue_name"` // maildrop, incoming, active, deferred, hold
	QueueID     string           `json:"queue_id"`
	ArrivalTime int64            `json:"arrival_time"`
	MessageSize int64            `json:"message_size"`
	Sender      string           `json:"sender"`
	Recipients  []QueueRecipient `json:"recipients"`
}

// QueueRecipient is a recipient still to be delivered.
type QueueRecipient struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason,omitempty"` // why the last try failed
}

// Queue returns the messages in the Postfix queue.
func (p *Postfix) Queue(t testing.TB) []QueueEntry {
	t.Helper()
	q, err := queue()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func queue() ([]QueueEntry, error) {
	path, err := program("postqueue")
	if err != nil {
		return nil, err
	}
	out, err := commandOutput(path, "-j")
	if err != nil {
		return nil, fmt.Errorf("postqueue -j: %w", err)
	}
	return parseQueue(out)
}

func parseQueue(out []byte) ([]QueueEntry, error) {
	var q []QueueEntry
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e QueueEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("parsing postqueue -j line %q: %w", line, err)
		}
		q = append(q, e)
	}
	return q, nil
}
