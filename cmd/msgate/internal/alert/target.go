package alert

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/msgate/msgate/policy/config"
)

// Command is a target that runs argv with the event's JSON on its standard
// input; run is msgate's command runner (an error for a non-zero exit,
// carrying what the command printed).
func Command(argv []string, run func(ctx context.Context, argv []string, stdin []byte) error) Target {
	return Target{Name: "command", Send: func(ctx context.Context, body []byte) error {
		return run(ctx, argv, body)
	}}
}

// HTTP is a target that POSTs the event's JSON to rawURL. Only a 2xx answer
// is a delivery: a redirect is not followed and counts as a failure.
// headers are sent with every POST.
func HTTP(rawURL string, headers []config.HTTPHeader) Target {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	shown := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		shown = u.Redacted()
	}
	return Target{Name: "url", Send: func(ctx context.Context, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("making the request to %s: %w", shown, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "msgate")
		for _, h := range headers {
			req.Header.Set(h.Name, h.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("posting the alert: %w", err)
		}
		defer resp.Body.Close()
		// Read a little, so that the connection can be used again.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("posting the alert to %s: %s", shown, resp.Status)
		}
		return nil
	}}
}
