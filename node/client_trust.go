package node

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
)

// Refused lists what org's verified view refused or parked, with counts
// by reason (limit 0: the server's default).
func (c *Client) Refused(ctx context.Context, org string, limit int) (Refused, error) {
	var out Refused
	p := "/v1/orgs/" + url.PathEscape(org) + "/refused"
	if limit > 0 {
		p += "?limit=" + strconv.Itoa(limit)
	}
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// Revoke hands the node a revocation (printable form, from
// policy.Revocation.String) to store in every organisation it holds.
func (c *Client) Revoke(ctx context.Context, revocation string) (RevokeResult, error) {
	var out RevokeResult
	body, err := json.Marshal(RevokeRequest{Revocation: revocation})
	if err != nil {
		return out, err
	}
	return out, c.do(ctx, http.MethodPost, "/v1/revocations", body, &out)
}
