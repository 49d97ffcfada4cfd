package node

import (
	"context"
	"net/http"
	"net/url"

	"github.com/examnode/examnode/crdt"
)

// HeldBy asks which peers hold a record (GET /v1/orgs/{org}/held/{key}).
func (c *Client) HeldBy(ctx context.Context, org, key string) (Held, error) {
	var h Held
	if err := crdt.ValidateKey(key); err != nil {
		return h, err
	}
	return h, c.do(ctx, http.MethodGet, "/v1/orgs/"+url.PathEscape(org)+"/held"+key, nil, &h)
}
