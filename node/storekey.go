package node

// Encryption at rest.
//
// A node whose config says "encrypt": true opens its badger store with a
// 32-byte key (AES-256; see crdt.StoreOptions.EncryptionKey). The key comes
// from the environment variable EXAMNODE_STORE_KEY when it is set, else
// from the data directory's store.key file (mode 0600), which `examnode
// init --encrypt` creates when the variable is not set. Both hold the key
// as 64 hexadecimal digits (base64 of the 32 bytes is accepted too).
//
// What it protects: the store's files (a copied disk image, a backup of
// the store directory, a disk that leaves the centre) hold no plaintext.
// The key file sits beside the store, so a copy of the whole data
// directory carries its key; an operator who wants the key off the disk
// keeps it in the environment (a secrets manager, systemd's
// LoadCredential) and deletes store.key.
//
// The key is a local secret: it is read from the file or the environment
// into the store options and nowhere else; it is never written to the
// config, a replica, a log, or an API answer.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/examnode/examnode/crdt"
)

// Where the store's encryption key comes from.
const (
	StoreKeyFile = "store.key"          // in the data directory, mode 0600
	StoreKeyEnv  = "EXAMNODE_STORE_KEY" // overrides the file when set
	StoreKeySize = 32                   // AES-256
)

// ErrStoreKey is returned when the store's encryption key is missing,
// malformed or wrong.
var ErrStoreKey = errors.New("node: store encryption key")

// ParseStoreKey decodes a store key: 64 hexadecimal digits, or the
// standard or URL base64 of 32 bytes (padded or not). Surrounding
// whitespace is ignored.
func ParseStoreKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*StoreKeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == StoreKeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: a store key is 64 hexadecimal digits (or base64 of %d bytes), got %d characters; make one with `openssl rand -hex 32`",
		ErrStoreKey, StoreKeySize, len(s))
}

// EnsureStoreKey prepares the key of a node initialised with encryption:
// with EXAMNODE_STORE_KEY set it only checks that the value parses; else
// it creates <dir>/store.key (0600) with a new random key, keeping one
// that is already there and valid.
func EnsureStoreKey(dir string) (source string, err error) {
	if v, ok := os.LookupEnv(StoreKeyEnv); ok {
		if _, err := ParseStoreKey(v); err != nil {
			return "", fmt.Errorf("%w (in %s)", err, StoreKeyEnv)
		}
		return StoreKeyEnv, nil
	}
	p := filepath.Join(dir, StoreKeyFile)
	b, err := os.ReadFile(p)
	if err == nil {
		if _, err := ParseStoreKey(string(b)); err != nil {
			return "", fmt.Errorf("%w (in %s): remove the file to have a new key made", err, p)
		}
		return p, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: %w", ErrStoreKey, err)
	}
	key := make([]byte, StoreKeySize)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return p, writeFileAtomic(p, []byte(hex.EncodeToString(key)+"\n"), 0o600)
}

// storeKey returns the key to open the store of a node configured with
// cfg (nil when the store is not encrypted), and where it came from.
func storeKey(dir string, cfg Config) (key []byte, source string, err error) {
	env, envSet := os.LookupEnv(StoreKeyEnv)
	if !cfg.Encrypt {
		if envSet {
			return nil, "", fmt.Errorf("%w: %s is set, but this node's store is not encrypted (%s has no \"encrypt\": true); unset %s, or initialise a new data directory with `examnode init --encrypt`",
				ErrStoreKey, StoreKeyEnv, filepath.Join(dir, ConfigFile), StoreKeyEnv)
		}
		return nil, "", nil
	}
	if envSet {
		key, err := ParseStoreKey(env)
		if err != nil {
			return nil, "", fmt.Errorf("%w (in %s)", err, StoreKeyEnv)
		}
		return key, StoreKeyEnv, nil
	}
	p := filepath.Join(dir, StoreKeyFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: this node's store is encrypted but its key is missing: set %s to the key (64 hexadecimal digits), or restore %s from where you keep it",
			ErrStoreKey, StoreKeyEnv, p)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrStoreKey, err)
	}
	if key, err = ParseStoreKey(string(b)); err != nil {
		return nil, "", fmt.Errorf("%w (in %s)", err, p)
	}
	return key, p, nil
}

// explainStoreErr turns the store's "wrong key" into an error that says
// which key was tried and how to fix it.
func explainStoreErr(err error, dir string, cfg Config, source string) error {
	if !errors.Is(err, crdt.ErrWrongStoreKey) {
		return err
	}
	store := filepath.Join(dir, StoreDir)
	if !cfg.Encrypt {
		return fmt.Errorf("%w: the store %s is encrypted, but %s does not say \"encrypt\": true; set it and give the key in %s or %s (%w)",
			ErrStoreKey, store, filepath.Join(dir, ConfigFile), StoreKeyEnv, filepath.Join(dir, StoreKeyFile), crdt.ErrWrongStoreKey)
	}
	return fmt.Errorf("%w: the key from %s does not open the store %s (it was created with another key, or without encryption); give the key it was created with in %s or %s (%w)",
		ErrStoreKey, source, store, StoreKeyEnv, filepath.Join(dir, StoreKeyFile), crdt.ErrWrongStoreKey)
}

// initSecrets prepares, at init, the local secrets the config refers to:
// the store key (when encrypting) and the private-network key file.
func initSecrets(dir string, c Config) error {
	if c.Encrypt {
		if _, err := EnsureStoreKey(dir); err != nil {
			return err
		}
	} else if _, _, err := storeKey(dir, c); err != nil {
		return err
	}
	if c.PnetKey != "" {
		if _, err := LoadPnetKey(dir, c.PnetKey); err != nil {
			return err
		}
	}
	return nil
}
