package mesh

import (
	"errors"
	"fmt"
	"strings"
)

// Private networks.
//
// With Options.PrivateNetworkKey set, libp2p wraps every connection in its
// private-network protector (a pre-shared 32-byte key, XSalsa20) before
// the security handshake: a host without the same key reads noise, so the
// handshake fails and the connection closes before either side learns the
// other's peer ID. libp2p accepts a pre-shared key only on transports
// without their own encryption handshake (TCP, websocket); the mesh is
// TCP-only, so nothing else needs turning off.
//
// A failed handshake looks, from the dialling side, like any broken
// connection ("failed to negotiate security protocol", EOF, connection
// reset); libp2p cannot tell a wrong key from a crashed peer. The peer
// book therefore adds the likely cause to a configured peer's dial error
// when the failure is in the handshake (pnetHint).

const pnetKeySize = 32

// ErrHandshake marks a dial that reached the peer but failed in the
// security handshake.
var ErrHandshake = errors.New("mesh: handshake failed")

// pnetHint explains a dial error that failed in the handshake, as a wrong
// or missing private-network key does. Other errors come back unchanged.
func (m *Mesh) pnetHint(err error) error {
	if err == nil || !isHandshakeErr(err) {
		return err
	}
	if len(m.opts.PrivateNetworkKey) > 0 {
		return fmt.Errorf("%w (this node uses a private-network key: the peer must hold the same key file; check \"pnet_key\" on both hosts): %w", ErrHandshake, err)
	}
	return fmt.Errorf("%w (this node uses no private-network key: if the peer's network has one, set \"pnet_key\" to the same key file here): %w", ErrHandshake, err)
}

func isHandshakeErr(err error) bool {
	s := err.Error()
	// libp2p's upgrader returns these untyped (p2p/net/upgrader), so the
	// text is all there is to go by.
	for _, sub := range []string{"failed to negotiate security protocol", "failed to negotiate stream multiplexer"} {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
