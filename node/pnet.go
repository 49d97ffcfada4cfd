package node

// The private-network key (libp2p pnet).
//
// With Config.PnetKey set, every connection of the mesh is wrapped in
// libp2p's private-network protector (XSalsa20 keyed by a 32-byte
// pre-shared key) before the security handshake: a host without the same
// key cannot complete a handshake, so a stranger learns nothing, not even
// this node's peer ID. It complements memberships (which decide what a
// connected peer may do) and works on TCP only, the mesh's one transport
// (QUIC refuses a pre-shared key).
//
// The file is the format go-ipfs, kubo and ipfs-cluster call swarm.key:
//
//	/key/swarm/psk/1.0.0/
//	/base16/
//	<64 hexadecimal digits>
//
// `examnode pnet-key new FILE` writes one; copy the same file to every
// host of the network.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// ErrPnetKey is returned for a missing or malformed private-network key.
var ErrPnetKey = errors.New("node: private-network key")

// DecodePnetKey decodes a swarm.key file's content.
func DecodePnetKey(b []byte) ([]byte, error) {
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: not a swarm key (%v); it must read \"/key/swarm/psk/1.0.0/\", \"/base16/\" and 64 hexadecimal digits on three lines: make one with `examnode pnet-key new FILE`",
			ErrPnetKey, err)
	}
	return psk, nil
}

// LoadPnetKey reads the private-network key file at path (relative to the
// data directory dir unless absolute).
func LoadPnetKey(dir, path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w; copy the network's key file there (the same file on every host), or remove \"pnet_key\" from %s",
			ErrPnetKey, err, filepath.Join(dir, ConfigFile))
	}
	psk, err := DecodePnetKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return psk, nil
}

// NewPnetKey writes a new random private-network key to path (mode 0600).
// It refuses to overwrite a file.
func NewPnetKey(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPnetKey, err)
	}
	_, err = fmt.Fprintf(f, "/key/swarm/psk/1.0.0/\n/base16/\n%s\n", hex.EncodeToString(key))
	return errors.Join(err, f.Sync(), f.Close())
}
