package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
)

// ErrNotRunning means no daemon answered at the API address.
var ErrNotRunning = errors.New("node: no examnode daemon answers")

// Client talks to a node's local API.
type Client struct {
	Addr  string // host:port
	Token string
	HTTP  *http.Client
}

// APIError is an error answer of the local API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// ClientFromDir builds a client for the daemon using data directory dir.
func ClientFromDir(dir string) (*Client, error) {
	addr, err := apiAddrFromDir(dir)
	if err != nil {
		return nil, err
	}
	tok, err := ReadToken(dir)
	if errors.Is(err, ErrWeakToken) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("node: read API token: %w (is %s an examnode data directory?)", err, dir)
	}
	return &Client{Addr: addr, Token: tok, HTTP: newHTTPClient()}, nil
}

// newHTTPClient never follows redirects: the API answers none, and
// following one would silently write somewhere else.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = newHTTPClient()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s (start it with `examnode run`): %w", ErrNotRunning, c.Addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var ae apiError
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			ae.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Code: ae.Code, Message: ae.Error}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = b
		return nil
	default:
		return json.Unmarshal(b, out)
	}
}

func rawPath(org, key string) string {
	return "/v1/orgs/" + url.PathEscape(org) + "/raw/" + strings.TrimPrefix(key, "/")
}

// Status fetches the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Peers fetches the peer book.
func (c *Client) Peers(ctx context.Context) ([]mesh.PeerInfo, error) {
	var p []mesh.PeerInfo
	return p, c.do(ctx, http.MethodGet, "/v1/peers", nil, &p)
}

// Sync fetches per-organisation replication state ("" for all).
func (c *Client) Sync(ctx context.Context, org string) ([]OrgSync, error) {
	var out []OrgSync
	p := "/v1/sync"
	if org != "" {
		p += "?org=" + url.QueryEscape(org)
	}
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// Put writes a raw value; it returns once the node made it durable.
func (c *Client) Put(ctx context.Context, org, key string, value []byte) (PutResult, error) {
	var r PutResult
	if err := crdt.ValidateKey(key); err != nil {
		return r, err
	}
	return r, c.do(ctx, http.MethodPut, rawPath(org, key), value, &r)
}

// Get reads a raw value.
func (c *Client) Get(ctx context.Context, org, key string) ([]byte, error) {
	var b []byte
	if err := crdt.ValidateKey(key); err != nil {
		return nil, err
	}
	return b, c.do(ctx, http.MethodGet, rawPath(org, key), nil, &b)
}

// Delete removes a raw value.
func (c *Client) Delete(ctx context.Context, org, key string) error {
	if err := crdt.ValidateKey(key); err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, rawPath(org, key), nil, nil)
}

// List lists raw records under prefix.
func (c *Client) List(ctx context.Context, org, prefix string, values bool, offset, limit int) ([]Entry, error) {
	q := url.Values{}
	q.Set("prefix", prefix)
	q.Set("offset", strconv.Itoa(offset))
	q.Set("limit", strconv.Itoa(limit))
	if values {
		q.Set("values", "1")
	}
	var out []Entry
	return out, c.do(ctx, http.MethodGet, "/v1/orgs/"+url.PathEscape(org)+"/raw?"+q.Encode(), nil, &out)
}
