package node

import (
	"bufio"
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
)

// RecordError is an error answer of the record and feed routes: an
// APIError plus the field and rule the request broke (errors.As finds the
// APIError inside).
type RecordError struct {
	APIError
	Field string
	Rule  string
}

func (e *RecordError) Error() string { return e.Message }

// Unwrap returns the APIError.
func (e *RecordError) Unwrap() error { return &e.APIError }

// RecordQuery selects a page of a record listing.
type RecordQuery struct {
	Offset, Limit int               // Limit 0: the server's default (100)
	Filters       map[string]string // test_taker, delivery, state, execution
}

func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, body []byte, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s (start it with `examnode run`): %w", ErrNotRunning, c.Addr, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var re recordError
		if json.Unmarshal(b, &re) != nil || re.Error == "" {
			re.Error = strings.TrimSpace(string(b))
		}
		return nil, &RecordError{APIError: APIError{Status: resp.StatusCode, Code: re.Code, Message: re.Error}, Field: re.Field, Rule: re.Rule}
	}
	return resp, nil
}

func (c *Client) doRecords(ctx context.Context, method, path string, body []byte, out any) error {
	hc := c.HTTP
	if hc == nil {
		hc = newHTTPClient()
	}
	resp, err := c.send(ctx, hc, method, path, body, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func recordsPath(org, kind, id string) string {
	p := "/v1/orgs/" + url.PathEscape(org) + "/" + url.PathEscape(kind)
	if id != "" {
		p += "/" + url.PathEscape(id)
	}
	return p
}

// PutRecord writes the record kind/id of org with body (the kind's JSON
// body); it returns once the node made it durable.
func (c *Client) PutRecord(ctx context.Context, org, kind, id string, body []byte) (RecordResult, error) {
	var r RecordResult
	if id == "" {
		return r, errors.New("node: a record needs an ID")
	}
	if body == nil {
		body = []byte{}
	}
	return r, c.doRecords(ctx, http.MethodPut, recordsPath(org, kind, id), body, &r)
}

// GetRecord reads one record, as the node serves it (a sealed result in
// clear where the node is one of its recipients).
func (c *Client) GetRecord(ctx context.Context, org, kind, id string) (RecordView, error) {
	var r RecordView
	if id == "" {
		return r, errors.New("node: a record needs an ID")
	}
	return r, c.doRecords(ctx, http.MethodGet, recordsPath(org, kind, id), nil, &r)
}

// DeleteRecord deletes one record of a deletable kind.
func (c *Client) DeleteRecord(ctx context.Context, org, kind, id string) (RecordResult, error) {
	var r RecordResult
	if id == "" {
		return r, errors.New("node: a record needs an ID")
	}
	return r, c.doRecords(ctx, http.MethodDelete, recordsPath(org, kind, id), nil, &r)
}

// ListRecords lists one page of org's records of kind.
func (c *Client) ListRecords(ctx context.Context, org, kind string, q RecordQuery) (RecordList, error) {
	v := url.Values{}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	for k, f := range q.Filters {
		v.Set(k, f)
	}
	p := recordsPath(org, kind, "")
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	var l RecordList
	return l, c.doRecords(ctx, http.MethodGet, p, nil, &l)
}

func changesPath(org, since string, limit int, wait time.Duration) string {
	v := url.Values{}
	if since != "" {
		v.Set("since", since)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	if wait > 0 {
		v.Set("wait", wait.String())
	}
	p := "/v1/orgs/" + url.PathEscape(org) + "/changes"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return p
}

// Changes reads org's change feed after the cursor since ("" or "0": from
// the beginning), waiting up to wait for something new. Pass the answer's
// Next as the following call's since.
func (c *Client) Changes(ctx context.Context, org, since string, limit int, wait time.Duration) (Changes, error) {
	var ch Changes
	hc := c.HTTP
	if hc == nil {
		hc = newHTTPClient()
	}
	if hc.Timeout > 0 && hc.Timeout < wait+10*time.Second {
		cp := *hc
		cp.Timeout = wait + 10*time.Second
		hc = &cp
	}
	resp, err := c.send(ctx, hc, http.MethodGet, changesPath(org, since, limit, wait), nil, "")
	if err != nil {
		return ch, err
	}
	defer resp.Body.Close()
	return ch, json.NewDecoder(resp.Body).Decode(&ch)
}

// FollowChanges streams org's change feed after since (server-sent events)
// and calls fn for each change until ctx ends, fn fails, or the node goes
// away. It returns ctx's error or fn's.
func (c *Client) FollowChanges(ctx context.Context, org, since string, fn func(Change) error) error {
	hc := &http.Client{CheckRedirect: newHTTPClient().CheckRedirect}
	if c.HTTP != nil && c.HTTP.Transport != nil {
		hc.Transport = c.HTTP.Transport
	}
	resp, err := c.send(ctx, hc, http.MethodGet, changesPath(org, since, 0, 0), nil, "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			if event == "error" {
				return fmt.Errorf("node: change feed: %s", data)
			}
			var ch Change
			if err := json.Unmarshal([]byte(data), &ch); err != nil {
				return fmt.Errorf("node: change feed: bad event %q: %w", data, err)
			}
			if err := fn(ch); err != nil {
				return err
			}
		case line == "":
			event = ""
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: the change feed ended (the daemon stopped)", ErrNotRunning)
}
