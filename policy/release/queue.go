package release

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxLine bounds one line of postqueue -j output. A message with many
// thousands of recipients still fits; a longer line is reported and skipped.
const MaxLine = 16 << 20

// QueueHold is the queue_name of held mail.
const QueueHold = "hold"

// Message is one message in the Postfix queue.
type Message struct {
	Queue      string      `json:"queue_name"` // maildrop, incoming, active, deferred or hold
	ID         string      `json:"queue_id"`
	Arrival    time.Time   `json:"arrival_time"`
	Size       int64       `json:"message_size"`
	Sender     string      `json:"sender"` // "" for the null sender
	Recipients []Recipient `json:"recipients"`
}

// Recipient is a recipient still to be delivered.
type Recipient struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason,omitempty"`
}

// LineError is one line of postqueue -j that was skipped.
type LineError struct {
	Line int    `json:"line"` // from 1
	Text string `json:"text"` // the line's start
	Err  string `json:"error"`
}

func (e LineError) Error() string { return fmt.Sprintf("postqueue -j line %d: %s", e.Line, e.Err) }

// ErrBadQueueID is reported for a queue id that Postfix cannot have made.
// Queue ids are handed to postsuper as arguments: anything but letters and
// digits is refused.
var ErrBadQueueID = errors.New("not a Postfix queue id")

// wire is a line as postqueue prints it. Only the fields msgate uses are
// named; the others are ignored.
type wire struct {
	Queue      *string         `json:"queue_name"`
	ID         *string         `json:"queue_id"`
	Arrival    *json.Number    `json:"arrival_time"`
	Size       json.RawMessage `json:"message_size"`
	Sender     string          `json:"sender"`
	Recipients []wireRecipient `json:"recipients"`
}

type wireRecipient struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason"`
}

// ParseQueue reads postqueue -j output. Lines that are not a message are
// returned as LineErrors and skipped; a queue id seen twice keeps its first
// line. The error is for a failed read only.
func ParseQueue(r io.Reader) ([]Message, []LineError, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		msgs []Message
		bad  []LineError
		seen = map[string]bool{}
	)
	for n := 1; ; n++ {
		line, tooLong, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return msgs, bad, fmt.Errorf("reading postqueue -j output: %w", err)
		}
		last := errors.Is(err, io.EOF)
		if tooLong {
			bad = append(bad, LineError{Line: n, Text: excerpt(line), Err: fmt.Sprintf("longer than %d bytes", MaxLine)})
		} else if len(bytes.TrimSpace(line)) > 0 {
			m, perr := ParseLine(line)
			switch {
			case perr != nil:
				bad = append(bad, LineError{Line: n, Text: excerpt(line), Err: perr.Error()})
			case seen[m.ID]:
				bad = append(bad, LineError{Line: n, Text: excerpt(line), Err: fmt.Sprintf("queue id %s listed again", m.ID)})
			default:
				seen[m.ID] = true
				msgs = append(msgs, m)
			}
		}
		if last {
			return msgs, bad, nil
		}
	}
}

// readLine returns the next line without its end; tooLong is set (and the
// rest of the line consumed) past MaxLine.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLine+1 {
			if !tooLong {
				buf = append(buf, chunk[:min(len(chunk), 80)]...)
			}
			tooLong = true
		} else if !tooLong {
			buf = append(buf, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), tooLong, err
	}
}

// ParseLine reads one postqueue -j line.
func ParseLine(line []byte) (Message, error) {
	var w wire
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return Message{}, fmt.Errorf("not a postqueue -j entry: %w", err)
	}
	if dec.More() {
		return Message{}, errors.New("more than one JSON value on the line")
	}
	switch {
	case w.ID == nil:
		return Message{}, errors.New("no queue_id")
	case !validID(*w.ID):
		return Message{}, fmt.Errorf("queue_id %q: %w", excerpt([]byte(*w.ID)), ErrBadQueueID)
	case w.Queue == nil || *w.Queue == "":
		return Message{}, fmt.Errorf("queue %s: no queue_name", *w.ID)
	case w.Arrival == nil:
		return Message{}, fmt.Errorf("queue %s: no arrival_time", *w.ID)
	}
	at, err := w.Arrival.Int64()
	if err != nil || at < 0 {
		return Message{}, fmt.Errorf("queue %s: arrival_time %q is not a time in seconds", *w.ID, w.Arrival.String())
	}
	m := Message{Queue: *w.Queue, ID: *w.ID, Arrival: time.Unix(at, 0).UTC(), Sender: w.Sender}
	// The size only informs: a size Postfix cannot have printed is not
	// worth skipping the message for.
	_ = json.Unmarshal(w.Size, &m.Size)
	for _, r := range w.Recipients {
		if r.Address == "" {
			continue
		}
		m.Recipients = append(m.Recipients, Recipient{Address: r.Address, DelayReason: r.DelayReason})
	}
	return m, nil
}

// validID accepts Postfix's short (hexadecimal) and long (base 52, with a
// separator) queue ids: letters and digits, at most 64.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// excerpt is a line's start, for error reports.
func excerpt(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > 80 {
		s = strings.ToValidUTF8(s[:80], "") + "..."
	}
	return s
}

// Held returns the messages in the hold queue.
func Held(msgs []Message) []Message {
	var out []Message
	for _, m := range msgs {
		if m.Queue == QueueHold {
			out = append(out, m)
		}
	}
	return out
}
