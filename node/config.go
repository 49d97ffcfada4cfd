package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// Files in a node's data directory.
const (
	ConfigFile   = "config.json" // the node's configuration (this package's Config)
	IdentityFile = "identity.key"
	TokenFile    = "api.token" // bearer token for the local API, mode 0600
	APIAddrFile  = "api.addr"  // the API's actual address, written by Start
	StoreDir     = "store"     // the badger database
)

// DefaultAPIAddr is where the local API listens unless configured.
const DefaultAPIAddr = "127.0.0.1:7411"

// Duration is a time.Duration written as "1.5s" in the config file.
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string such as "500ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config is a node's configuration, kept in <data dir>/config.json.
type Config struct {
	// Roles this node carries: central, vm, archive (one or several).
	Roles []schema.Role `json:"roles"`
	// Orgs are the organisation IDs whose replicas the node holds. A VM
	// holds exactly one; a central node also opens the replica of every
	// organisation a peer presents.
	Orgs []string `json:"orgs"`
	// Network names the mesh; nodes of different networks refuse each other.
	Network string `json:"network"`
	// Listen are libp2p multiaddrs to listen on.
	Listen []string `json:"listen"`
	// Peers are multiaddrs (ending in /p2p/<id>) to keep connected to.
	Peers []string `json:"peers,omitempty"`
	// API is the local HTTP API's address: a loopback address (127.0.0.1,
	// ::1, localhost), or "off". Any other address is refused unless
	// APIAllowNonLoopback says so.
	API string `json:"api"`
	// APIAllowNonLoopback lets the local API listen on an address other
	// than loopback (every interface, a LAN address). Off by default:
	// anyone who reaches the port can try the token, and the API holds
	// every organisation's data.
	APIAllowNonLoopback bool `json:"api_allow_non_loopback,omitempty"`
	// APIMaxConnections caps the local API's open connections
	// (DefaultAPIMaxConnections if 0; at most half the open-file limit).
	// At the cap, a new connection closes the one idle the longest
	// (apiconn.go).
	APIMaxConnections int `json:"api_max_connections,omitempty"`
	// LANDiscovery finds and connects peers of the same network on the
	// local network by mDNS (the VMs of a centre, with or without central).
	LANDiscovery bool `json:"lan_discovery"`
	// Authority is the network authority's public key in printable form
	// ("examnode-authority:…", from `examnode authority init`). Empty: the
	// node runs open, accepting any peer of its network (demos, tests,
	// benchmarks); set: only peers with a membership it signed.
	Authority string `json:"authority,omitempty"`
	// Membership is this node's own membership in printable form
	// ("examnode-membership:…", from `examnode grant` on the central
	// host). Required when Authority is set; it must name this node's peer
	// ID, network and role.
	Membership string `json:"membership,omitempty"`
	// Encrypt says the badger store is encrypted at rest (see storekey.go):
	// its key comes from EXAMNODE_STORE_KEY, else from <data dir>/store.key.
	// Set by `examnode init --encrypt`; a store keeps the encryption it was
	// created with.
	Encrypt bool `json:"encrypt,omitempty"`
	// PnetKey is the path of a libp2p private-network key (a swarm.key file,
	// see pnet.go), relative to the data directory unless absolute. Set:
	// only peers holding the same key can complete a handshake with this
	// node. Empty: no private network.
	PnetKey string `json:"pnet_key,omitempty"`
	// Debug turns on the debugging aids: the raw routes
	// (/v1/orgs/{org}/raw/...) and the CLI's raw verbs (put, get, ls, rm).
	// They bypass the record schema and, on an open node, every role
	// check; off, they answer 404 raw_off. Set by `examnode init --debug`;
	// never on a production node.
	Debug bool `json:"debug,omitempty"`
	// Pprof serves Go's profiles (net/http/pprof) on the local API under
	// /debug/pprof/, behind the API token like every other route; off,
	// they answer 404 pprof_off (pprof.go). Safe on a production node,
	// which is what it is for: a CPU profile costs a few percent of CPU
	// while it runs, at most 60 s per request.
	Pprof bool `json:"pprof,omitempty"`
	// Tuning holds intervals that tests and benchmarks shorten.
	Tuning Tuning `json:"tuning,omitzero"`
	// Bundles configures result bundles and archive duties (bundleconfig.go).
	Bundles BundleConfig `json:"bundles,omitzero"`
}

// Tuning holds the intervals of replication. Zero means the default.
type Tuning struct {
	ExchangeInterval    Duration `json:"exchange_interval,omitzero"`
	RebroadcastInterval Duration `json:"rebroadcast_interval,omitzero"`
	RedialMax           Duration `json:"redial_max,omitzero"`
	GroupWindow         Duration `json:"group_window,omitzero"`
	// HeadsPush is how often the heads watcher looks for replicas whose
	// heads changed and tells peers at once (held.go): 100ms by default.
	// Negative turns the push off: peers then learn new heads at the next
	// exchange (the sampler's reconciling one, within seconds, or the
	// periodic one).
	HeadsPush Duration `json:"heads_push,omitzero"`
	// Byte budgets for blocks stored from bulk pulls (pullguard.go): each
	// peer and each organisation has a token bucket of Budget bytes,
	// refilled at Rate bytes a second. A pull that would store more stops
	// and is counted ("block byte budget exceeded"); bitswap fetches what
	// is still missing. Zero means the default; a negative budget means
	// no limit, a negative rate the default.
	// Defaults: 512 MiB and 1 MiB/s per peer, 1 GiB and 2 MiB/s per
	// organisation: a fresh VM catching up on 100,000 records stores a few
	// hundred MiB from one peer and is never limited, while one member can
	// make the node store at most that burst and then about 3.5 GiB an
	// hour.
	PullPeerBudget int64 `json:"pull_peer_budget,omitempty"`
	PullPeerRate   int64 `json:"pull_peer_rate,omitempty"`
	PullOrgBudget  int64 `json:"pull_org_budget,omitempty"`
	PullOrgRate    int64 `json:"pull_org_rate,omitempty"`
	// PullMaxBytes bounds the block bytes one pull reads, stored or not
	// (default 1 GiB; crdt.PullMaxTotalBytes).
	PullMaxBytes int64 `json:"pull_max_bytes,omitempty"`
}

// DefaultConfig returns a configuration for one role and organisation.
func DefaultConfig(role schema.Role, orgs ...string) Config {
	return Config{
		Roles:   []schema.Role{role},
		Orgs:    orgs,
		Network: "examnode",
		Listen:  []string{"/ip4/0.0.0.0/tcp/4001"},
		API:     DefaultAPIAddr,

		LANDiscovery: true,
	}
}

// Errors about configuration.
var (
	ErrConfig      = errors.New("node: invalid configuration")
	ErrNoConfig    = errors.New("node: no configuration")
	ErrInitialised = errors.New("node: data directory is already initialised")
)

// Validate fills defaults and rejects bad combinations.
func (c *Config) Validate() error {
	if len(c.Roles) == 0 {
		return fmt.Errorf("%w: no role; give one of central, vm, archive", ErrConfig)
	}
	for _, r := range c.Roles {
		if _, err := schema.ParseRole(string(r)); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	for _, o := range c.Orgs {
		if err := crdt.ValidateOrg(o); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if c.Has(schema.RoleVM) && !c.Has(schema.RoleCentral) && len(c.Orgs) != 1 {
		return fmt.Errorf("%w: a vm holds exactly one organisation (its test centre's), got %d", ErrConfig, len(c.Orgs))
	}
	if c.Network == "" {
		c.Network = "examnode"
	}
	if c.API == "" {
		c.API = DefaultAPIAddr
	}
	if err := c.checkAPIAddr(); err != nil {
		return err
	}
	if len(c.Listen) == 0 {
		c.Listen = []string{"/ip4/0.0.0.0/tcp/4001"}
	}
	for _, p := range c.Peers {
		if _, err := mesh.ParsePeerAddr(p); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if c.Authority != "" {
		if _, err := policy.ParseAuthorityKey(c.Authority); err != nil {
			return fmt.Errorf("%w: authority: %w", ErrConfig, err)
		}
	} else if c.Membership != "" {
		return fmt.Errorf("%w: a membership without the authority key that signed it; set both (`examnode init --authority … --membership …`)", ErrConfig)
	}
	if c.Membership != "" {
		if _, err := policy.ParseMembership(c.Membership); err != nil {
			return fmt.Errorf("%w: membership: %w", ErrConfig, err)
		}
	}
	return c.Bundles.validate()
}

// checkAPIAddr refuses an API address that is not host:port, and one off
// loopback unless APIAllowNonLoopback is set.
func (c *Config) checkAPIAddr() error {
	if c.API == "off" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.API)
	if err != nil {
		return fmt.Errorf("%w: api %q: %w; give host:port, e.g. %q", ErrConfig, c.API, err, DefaultAPIAddr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if c.APIAllowNonLoopback {
		return nil
	}
	where := "on " + host
	if host == "" || host == "0.0.0.0" || host == "::" {
		where = "on every interface"
	}
	return fmt.Errorf("%w: api %q would listen %s, not only on loopback: anyone who reaches that port could try the API token; use %q, or, if the API must be reached from another host, also set \"api_allow_non_loopback\": true in %s",
		ErrConfig, c.API, where, DefaultAPIAddr, ConfigFile)
}

// Trust returns what the node trusts, or nil when it runs open (no
// authority configured).
func (c *Config) Trust() (*policy.Trust, error) {
	if c.Authority == "" {
		return nil, nil
	}
	k, err := policy.ParseAuthorityKey(c.Authority)
	if err != nil {
		return nil, fmt.Errorf("%w: authority: %w", ErrConfig, err)
	}
	return &policy.Trust{Network: c.Network, Authority: k, ClockSkew: time.Minute}, nil
}

// CheckMembership verifies, for a gated node, that its own membership is
// signed by the configured authority, valid at now, and names this node's
// peer ID, network and one of its roles. It returns the membership (nil
// when the node runs open).
func (c *Config) CheckMembership(id peer.ID, now time.Time) (*policy.Membership, error) {
	tr, err := c.Trust()
	if err != nil {
		return nil, err
	}
	return c.checkMembership(tr, id, now)
}

// checkMembership is CheckMembership against tr, the authority Trust
// parsed (nil: open).
func (c *Config) checkMembership(tr *policy.Trust, id peer.ID, now time.Time) (*policy.Membership, error) {
	if tr == nil {
		return nil, nil
	}
	if c.Membership == "" {
		return nil, fmt.Errorf("%w: an authority is configured but this node has no membership; on the central host run `examnode grant --peer %s --role %s%s --network %s`, and put the printed examnode-membership:… in %s (\"membership\")",
			ErrConfig, id, c.Roles[0], orgFlags(c.Orgs), c.Network, ConfigFile)
	}
	m, err := policy.ParseMembership(c.Membership)
	if err != nil {
		return nil, fmt.Errorf("%w: membership: %w", ErrConfig, err)
	}
	if err := policy.Check(m, policy.RevocationSet{}, *tr, now); err != nil {
		return nil, fmt.Errorf("%w: this node's membership: %w", ErrConfig, err)
	}
	if m.Peer != id.String() {
		return nil, fmt.Errorf("%w: the configured membership is for peer %s, but this node is %s; grant this node its own: `examnode grant --peer %s …`",
			ErrConfig, m.Peer, id, id)
	}
	if !c.Has(m.Role) {
		return nil, fmt.Errorf("%w: the membership grants role %s, but this node is configured as %v; grant the right role or fix the config",
			ErrConfig, m.Role, c.Roles)
	}
	for _, o := range c.Orgs {
		if !m.Covers(o) {
			return nil, fmt.Errorf("%w: this node holds organisation %s, but its membership does not cover it (%s); grant it with --org %s",
				ErrConfig, o, m.Describe(), o)
		}
	}
	return &m, nil
}

func orgFlags(orgs []string) string {
	var s string
	for _, o := range orgs {
		s += " --org " + o
	}
	return s
}

// Has reports whether the node carries role r.
func (c *Config) Has(r schema.Role) bool { return slices.Contains(c.Roles, r) }

// LoadConfig reads <dir>/config.json.
func LoadConfig(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("%w in %s: run `examnode init --dir %s` first", ErrNoConfig, dir, dir)
	}
	if err != nil {
		return c, err
	}
	return DecodeConfig(b, filepath.Join(dir, ConfigFile))
}

// DecodeConfig decodes and validates a config file's content; name is the
// file's name, for errors.
func DecodeConfig(b []byte, name string) (Config, error) {
	var c Config
	if err := checkDuplicateKeys(b); err != nil {
		return c, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	return c, c.Validate()
}

// checkDuplicateKeys refuses JSON in which an object, at any depth, holds
// the same key twice: encoding/json keeps the last one silently, so a
// second "api" further down would win over the one the reader saw first.
// Keys of the top-level object are compared as encoding/json matches them
// to Config's fields, case insensitively ("API" and "api" are the same
// field); deeper ones exactly (some are maps keyed by organisation).
func checkDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var walk func(path string) error
	walk = func(path string) error {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'):
			seen := map[string]string{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				fold := k
				if path == "" {
					fold = strings.ToLower(k)
				}
				if first, ok := seen[fold]; ok {
					return fmt.Errorf("key %q appears twice in %s (as %q and %q): only one may stay; delete the other", k, jsonPath(path), first, k)
				}
				seen[fold] = k
				if err := walk(path + "." + k); err != nil {
					return err
				}
			}
			_, err = dec.Token() // '}'
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ']'
			return err
		}
		return nil
	}
	if err := walk(""); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil // json.Unmarshal reports it, with its offset
		}
		return err
	}
	return nil
}

func jsonPath(p string) string {
	if p == "" {
		return "the top-level object"
	}
	return "object " + strings.TrimPrefix(p, ".")
}

// Init creates a data directory: the config file, the node's identity and
// the API token. It refuses a directory that already has a config.
func Init(dir string, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return fmt.Errorf("%w: %s (remove it to start over; this loses the node's identity and data)", ErrInitialised, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := mesh.LoadOrCreateKey(filepath.Join(dir, IdentityFile))
	if err != nil {
		return err
	}
	if c.Membership != "" {
		// Refuse a membership of another node before writing the config;
		// the identity stays, so running init again keeps the peer ID.
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return err
		}
		if _, err := c.CheckMembership(id, time.Now()); err != nil {
			return err
		}
	}
	if _, err := loadOrCreateToken(dir); err != nil {
		return err
	}
	if err := initSecrets(dir, c); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o600)
}

// MinTokenLength is the shortest API token the daemon and the CLI accept;
// a generated one has 64 hex digits.
const MinTokenLength = 32

// ErrWeakToken means <dir>/api.token holds a token too short or too
// repetitive to keep other local processes off the API.
var ErrWeakToken = errors.New("node: weak API token")

// ReadToken reads the API bearer token of data directory dir, trimmed of
// surrounding white space (an editor's trailing newline), and refuses a
// weak one. The daemon and the CLI both read it here, so they agree on it.
func ReadToken(dir string) (string, error) {
	p := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if err := checkToken(tok); err != nil {
		return "", fmt.Errorf("%w in %s: %w; delete the file and run `examnode run` (or `examnode init`) again to generate a new one, then give the new token to the exam platform", ErrWeakToken, p, err)
	}
	return tok, nil
}

// checkToken refuses a token shorter than MinTokenLength, one with white
// space or control characters inside, or one of fewer than 8 distinct
// characters ("aaaa…", "abababab…").
func checkToken(tok string) error {
	if len(tok) < MinTokenLength {
		return fmt.Errorf("the token has %d characters, at least %d are needed", len(tok), MinTokenLength)
	}
	distinct := map[rune]bool{}
	for _, r := range tok {
		if r <= ' ' || r == 0x7f {
			return errors.New("the token holds white space or a control character")
		}
		distinct[r] = true
	}
	if len(distinct) < 8 {
		return fmt.Errorf("the token uses only %d distinct characters, at least 8 are needed", len(distinct))
	}
	return nil
}

// loadOrCreateToken returns the API bearer token (ReadToken), creating it
// if the file is missing or empty.
func loadOrCreateToken(dir string) (string, error) {
	p := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(p)
	if err == nil && len(bytes.TrimSpace(b)) > 0 {
		return ReadToken(dir)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	return tok, writeFileAtomic(p, []byte(tok), 0o600)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
