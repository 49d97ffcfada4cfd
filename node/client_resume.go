package node

import (
	"context"
	"net/http"
	"net/url"
)

// Resume opens the next version of execution id on the daemon's VM
// (POST /v1/orgs/{org}/executions/{id}/resume): see Node.Resume.
func (c *Client) Resume(ctx context.Context, org, id string, force bool) (Resumed, error) {
	var res Resumed
	p := "/v1/orgs/" + url.PathEscape(org) + "/executions/" + url.PathEscape(id) + "/resume"
	if force {
		p += "?force=true"
	}
	return res, c.do(ctx, http.MethodPost, p, nil, &res)
}
