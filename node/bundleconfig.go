package node

import (
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// BundleConfig configures result bundles and archive duties (bundles.go).
// Every field is optional; the zero value bundles on VMs, holds copies in
// the centre, archives on archive nodes, keeps everything for ever and
// never drops a copy.
type BundleConfig struct {
	// DropAfterReceipt lets this VM delete its copy of a bundle once an
	// archive's receipt for that exact SHA-256 has replicated to it. Off
	// by default: copies are kept.
	DropAfterReceipt bool `json:"drop_after_receipt,omitempty"`
	// TSA is the URL of an RFC 3161 time-stamping authority (archive
	// nodes): each archived bundle gets a token over its SHA-256. Bundles
	// archived before it was set get one at the next round.
	TSA string `json:"tsa,omitempty"`
	// Retention holds central's retention rules per organisation, as the
	// central operator distributed them: period and whether it is locked.
	Retention map[string]RetentionConfig `json:"retention,omitempty"`
	// LocalRetention is this node's own period per organisation. It may
	// lengthen a locked central rule, never shorten it.
	LocalRetention map[string]Duration `json:"local_retention,omitempty"`
	// Interval is how often the node looks for work on bundles besides
	// reacting to changes; 10s if zero.
	Interval Duration `json:"interval,omitzero"`
	// FetchTimeout bounds one attempt to fetch a bundle's blocks from
	// peers (retried with backoff); 30s if zero.
	FetchTimeout Duration `json:"fetch_timeout,omitzero"`
}

// RetentionConfig is central's rule for one organisation.
type RetentionConfig struct {
	// Period is how long after creation a bundle's payload is kept; "0s"
	// keeps it for ever.
	Period Duration `json:"period"`
	// Locked forbids nodes to shorten it.
	Locked bool `json:"locked,omitempty"`
}

func (c *BundleConfig) validate() error {
	if c.TSA != "" {
		u, err := url.Parse(c.TSA)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: bundles.tsa %q is not an http(s) URL of a time-stamping authority", ErrConfig, c.TSA)
		}
	}
	if c.Interval < 0 || c.FetchTimeout < 0 {
		return fmt.Errorf("%w: bundles: negative interval", ErrConfig)
	}
	for _, org := range c.retentionOrgs() {
		if _, err := c.rule(org); err != nil {
			return fmt.Errorf("%w: bundles retention: %w", ErrConfig, err)
		}
	}
	return nil
}

func (c *BundleConfig) retentionOrgs() []string {
	seen := map[string]bool{}
	for o := range c.Retention {
		seen[o] = true
	}
	for o := range c.LocalRetention {
		seen[o] = true
	}
	out := make([]string, 0, len(seen))
	for o := range seen {
		out = append(out, o)
	}
	sort.Strings(out)
	return out
}

// rule is the retention rule this node applies to org
// (policy.EffectiveRetention): central's, or this node's own where it does
// not shorten a locked central rule. Without any rule, payloads are kept
// for ever.
func (c *BundleConfig) rule(org string) (policy.RetentionRule, error) {
	central := policy.RetentionRule{Org: org, SetBy: schema.RoleCentral}
	if r, ok := c.Retention[org]; ok {
		central.Period, central.Locked = time.Duration(r.Period), r.Locked
	}
	var local *policy.RetentionRule
	if p, ok := c.LocalRetention[org]; ok {
		local = &policy.RetentionRule{Org: org, Period: time.Duration(p), SetBy: schema.RoleArchive}
	}
	return policy.EffectiveRetention(central, local)
}

func (c *BundleConfig) interval() time.Duration {
	if c.Interval > 0 {
		return time.Duration(c.Interval)
	}
	return 10 * time.Second
}

func (c *BundleConfig) fetchTimeout() time.Duration {
	if c.FetchTimeout > 0 {
		return time.Duration(c.FetchTimeout)
	}
	return 30 * time.Second
}
