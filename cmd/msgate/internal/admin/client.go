package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/msgate/msgate/policy/feedback"
)

// ErrUnreachable reports that no daemon answered on the admin socket.
var ErrUnreachable = errors.New("msgate serve is not reachable")

// Client talks to a running msgate serve over its admin socket.
type Client struct {
	http *http.Client
	base string
	addr string
}

// NewClient returns a client for an admin socket given as a network
// ("unix" or "tcp") and an address.
func NewClient(network, address string, timeout time.Duration) *Client {
	dialer := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address)
		},
	}
	return &Client{http: &http.Client{Transport: tr, Timeout: timeout}, base: "http://msgate", addr: address}
}

func (c *Client) do(method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		return err
	}
	return c.send(req, out)
}

func (c *Client) send(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.addr, oe.Err)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("admin API answered %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Status fetches the daemon's status with the top n accounts.
func (c *Client) Status(top int) (Status, error) {
	var s Status
	err := c.do(http.MethodGet, fmt.Sprintf("/v1/status?top=%d", top), nil, &s)
	return s, err
}

// Account fetches one account's standing.
func (c *Client) Account(name string) (AccountStatus, error) {
	var a AccountStatus
	err := c.do(http.MethodGet, "/v1/accounts/"+url.PathEscape(name), nil, &a)
	return a, err
}

// Flag flags an account by hand.
func (c *Client) Flag(name, action, note string) error {
	var out map[string]any
	return c.do(http.MethodPut, "/v1/accounts/"+url.PathEscape(name)+"/flag", FlagRequest{Action: action, Note: note}, &out)
}

// Unflag clears an account's flag.
func (c *Client) Unflag(name string) error {
	var out map[string]any
	return c.do(http.MethodDelete, "/v1/accounts/"+url.PathEscape(name)+"/flag", nil, &out)
}

// Report hands one complaint report to the daemon.
func (c *Client) Report(raw []byte) (feedback.Result, error) {
	var res feedback.Result
	req, err := http.NewRequest(http.MethodPost, c.base+"/v1/reports", bytes.NewReader(raw))
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "message/rfc822")
	return res, c.send(req, &res)
}
