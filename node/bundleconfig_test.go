package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

func TestBundleConfigRetention(t *testing.T) {
	day := Duration(24 * time.Hour)
	tests := []struct {
		name    string
		cfg     BundleConfig
		want    time.Duration
		wantErr error
	}{
		{name: "nothing: keep for ever", cfg: BundleConfig{}, want: 0},
		{name: "central only", cfg: BundleConfig{Retention: map[string]RetentionConfig{"C1": {Period: 30 * day, Locked: true}}}, want: 30 * 24 * time.Hour},
		{name: "local lengthens a locked rule", cfg: BundleConfig{
			Retention:      map[string]RetentionConfig{"C1": {Period: 30 * day, Locked: true}},
			LocalRetention: map[string]Duration{"C1": 60 * day}}, want: 60 * 24 * time.Hour},
		{name: "local shortens an unlocked rule", cfg: BundleConfig{
			Retention:      map[string]RetentionConfig{"C1": {Period: 30 * day}},
			LocalRetention: map[string]Duration{"C1": day}}, want: 24 * time.Hour},
		{name: "local may not shorten a locked rule", cfg: BundleConfig{
			Retention:      map[string]RetentionConfig{"C1": {Period: 30 * day, Locked: true}},
			LocalRetention: map[string]Duration{"C1": day}}, wantErr: policy.ErrRetentionLocked},
		{name: "local may not shorten a locked for-ever rule", cfg: BundleConfig{
			Retention:      map[string]RetentionConfig{"C1": {Period: 0, Locked: true}},
			LocalRetention: map[string]Duration{"C1": day}}, wantErr: policy.ErrRetentionLocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Roles: []schema.Role{schema.RoleArchive}, Bundles: tt.cfg}
			err := c.Validate()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrConfig) {
					t.Fatalf("Validate: %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r, err := tt.cfg.rule("C1")
			if err != nil || r.Period != tt.want {
				t.Fatalf("rule = %+v, %v; want period %v", r, err, tt.want)
			}
		})
	}
}

func TestBundleConfigRefusesBadTSA(t *testing.T) {
	for _, u := range []string{"ftp://tsa", "tsa.example", "http://"} {
		c := Config{Roles: []schema.Role{schema.RoleArchive}, Bundles: BundleConfig{TSA: u}}
		if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "tsa") {
			t.Errorf("TSA %q: %v", u, err)
		}
	}
}
