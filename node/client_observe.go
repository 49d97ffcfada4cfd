package node

import (
	"context"
	"net/http"
	"net/url"
)

// History fetches the sync history and the peers' sync state, optionally
// only those of org and/or peer ("" for all).
func (c *Client) History(ctx context.Context, org, peer string) (History, error) {
	q := url.Values{}
	if org != "" {
		q.Set("org", org)
	}
	if peer != "" {
		q.Set("peer", peer)
	}
	p := "/v1/history"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var h History
	return h, c.do(ctx, http.MethodGet, p, nil, &h)
}

// Metrics fetches the Prometheus exposition text.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, http.MethodGet, "/metrics", nil, &b)
}
