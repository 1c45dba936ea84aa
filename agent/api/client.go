package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/flockerha/flocker/agent"
)

// Errors of the client besides agent.ErrRefused and agent.ErrNotFound.
var (
	// ErrAuth: the agent refused the credentials (401 or 403).
	ErrAuth = errors.New("not authorized")
	// ErrNotImplemented: the agent takes no operator requests (501).
	ErrNotImplemented = errors.New("not implemented by this agent")
	// ErrSchema: the status document has a schema version this client does
	// not read.
	ErrSchema = errors.New("unknown status schema version")
)

// Error is an error answer of the agent.
type Error struct {
	Code    int    // HTTP status
	Message string // the agent's "error"
	Via     string // where the request went
}

func (e *Error) Error() string {
	return fmt.Sprintf("agent at %s answered %d %s: %s", e.Via, e.Code, http.StatusText(e.Code), e.Message)
}

// Unwrap maps the status back to the error kinds of agent.Controller.
func (e *Error) Unwrap() error {
	switch e.Code {
	case http.StatusConflict:
		return agent.ErrRefused
	case http.StatusNotFound:
		return agent.ErrNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrAuth
	case http.StatusNotImplemented:
		return ErrNotImplemented
	}
	return nil
}

// Client calls one agent's API. It implements agent.Controller, so an
// operator command runs the same code against the local agent as the agent
// runs itself. Every call ends with its ctx.
type Client struct {
	hc    *http.Client
	base  string
	token string
	via   string
}

var _ agent.Controller = (*Client)(nil)

// NewUnixClient talks over the admin socket at path (root: every route).
func NewUnixClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://flocker-admin", via: "unix:" + path}
}

// NewHTTPClient talks to [node] status at addr, presenting token (may be
// empty: then only the read-only routes work). An unspecified address
// (0.0.0.0, ::) is reached on loopback.
func NewHTTPClient(addr netip.AddrPort, token string) *Client {
	ip := addr.Addr()
	if ip.IsUnspecified() {
		ip = netip.IPv6Loopback()
		if addr.Addr().Is4() {
			ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	}
	base := "http://" + netip.AddrPortFrom(ip, addr.Port()).String()
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	return &Client{hc: &http.Client{Transport: tr}, base: base, token: token, via: base}
}

// NewURLClient talks to an agent's status listener at rawURL ("http://HOST:PORT"
// or "HOST:PORT"), presenting token (may be empty).
func NewURLClient(rawURL, token string) (*Client, error) {
	if !strings.Contains(rawURL, "://") {
		rawURL = "http://" + rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("agent URL %q: %w", rawURL, err)
	}
	if u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("agent URL %q: want http://HOST:PORT", rawURL)
	}
	base := "http://" + u.Host
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	return &Client{hc: &http.Client{Transport: tr}, base: base, token: token, via: base}, nil
}

// Via is where the client sends its requests, for messages.
func (c *Client) Via() string { return c.via }

// Status fetches the /status document. Fields this client does not know
// are ignored (a newer agent may add some); another schema version is
// ErrSchema.
func (c *Client) Status(ctx context.Context) (*Document, error) {
	var doc Document
	if err := c.do(ctx, http.MethodGet, "/status", nil, &doc); err != nil {
		return nil, err
	}
	if doc.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("%w: %d from %s, this flocker reads %d", ErrSchema, doc.SchemaVersion, c.via, SchemaVersion)
	}
	return &doc, nil
}

// Promote asks the agent to become master (agent.Controller).
func (c *Client) Promote(ctx context.Context, force bool) (agent.RoleResult, error) {
	var res agent.RoleResult
	err := c.do(ctx, http.MethodPost, "/v1/promote", promoteRequest{Force: force}, &res)
	return res, err
}

// Demote asks the agent to become slave (agent.Controller).
func (c *Client) Demote(ctx context.Context) (agent.RoleResult, error) {
	var res agent.RoleResult
	err := c.do(ctx, http.MethodPost, "/v1/demote", struct{}{}, &res)
	return res, err
}

// Handoff asks the master for a planned switchover (agent.Controller).
func (c *Client) Handoff(ctx context.Context) (agent.HandoffResult, error) {
	var res agent.HandoffResult
	err := c.do(ctx, http.MethodPost, "/v1/handoff", struct{}{}, &res)
	return res, err
}

// Stashes lists the agent's stashes (agent.Controller).
func (c *Client) Stashes(ctx context.Context) ([]agent.Stash, error) {
	var res []agent.Stash
	err := c.do(ctx, http.MethodGet, "/v1/stashes", nil, &res)
	return res, err
}

// RemoveStash destroys one stash (agent.Controller).
func (c *Client) RemoveStash(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("removing a stash: empty name")
	}
	return c.do(ctx, http.MethodDelete, "/v1/stashes/"+url.PathEscape(name), nil, &struct{}{})
}

// do sends one request and decodes the answer into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the agent at %s: %w", c.via, unwrapURL(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the agent's answer from %s: %w", c.via, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(data))
		}
		return &Error{Code: resp.StatusCode, Message: eb.Error, Via: c.via}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the agent's answer to %s %s from %s: %w", method, path, c.via, err)
	}
	return nil
}

// unwrapURL drops net/http's "Get \"http://...\":" prefix, which names a
// made-up host for the unix socket.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
