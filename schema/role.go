package schema

import "fmt"

// Role is what a node does in the mesh. One host may carry several roles.
type Role string

const (
	// RoleCentral holds every organisation's replica and writes the
	// authoritative kinds: test centres, users, eligibilities, deliveries.
	RoleCentral Role = "central"
	// RoleVM is an exam machine: it holds only its own organisation and
	// writes executions, results, result logs and LTI users, and the
	// metadata and custody records of the result bundles it holds.
	RoleVM Role = "vm"
	// RoleArchive pins result bundles and writes receipts and retention
	// records for the organisations it archives.
	RoleArchive Role = "archive"
)

// Roles lists every role, in a stable order.
func Roles() []Role { return []Role{RoleCentral, RoleVM, RoleArchive} }

// ParseRole turns "central", "vm" or "archive" into a Role. Anything else
// is an error wrapping ErrUnknownRole.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("%w %q: use central, vm or archive", ErrUnknownRole, s)
}
