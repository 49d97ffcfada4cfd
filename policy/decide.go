package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/examnode/examnode/schema"
)

// MayConnect decides whether a peer may stay connected: m is the
// membership it presented (nil: none), after Check. A peer without one, or
// whose membership is outside its validity window at now, is refused
// (ErrNoMembership, ErrNotYetValid, ErrExpired). Check already refuses the
// window; MayConnect repeats it so that a connection checked at hello is
// refused again when its membership lapses.
func MayConnect(m *Membership, now time.Time) error {
	if m == nil {
		return fmt.Errorf("%w: the peer presented no membership of this network; grant it one: run `examnode grant --peer <its peer ID> --org <its organisation> --role vm` on the central host",
			ErrNoMembership)
	}
	return m.window(now)
}

// MayAnnounce is the gossipsub validator's decision for organisation
// org's topic: head announcements are accepted only from a peer whose
// membership m (after Check) covers org. Otherwise ErrNotMember.
func MayAnnounce(m Membership, org string) error {
	if m.Covers(org) {
		return nil
	}
	return fmt.Errorf("%w: peer %s (%s) has no membership for organisation %s, so its announcements there are refused; if it belongs there, run `%s` on the central host",
		ErrNotMember, m.Peer, m.Role, org, m.grantCommand(org))
}

// MayRead decides whether the peer holding m (after Check) may pull
// organisation org's blocks or receive its data: central and archive
// memberships covering org, and a VM of org. Otherwise ErrNotMember: a VM
// receives only its own organisation's data.
func MayRead(m Membership, org string) error {
	if m.Covers(org) {
		return nil
	}
	return fmt.Errorf("%w: peer %s (%s) has no membership for organisation %s and may not receive its data; if it belongs there, run `%s` on the central host",
		ErrNotMember, m.Peer, m.Role, org, m.grantCommand(org))
}

// WriteContext is everything MayWrite needs to decide one write. The crdt
// layer fills it from where the value arrived, the signed record, its
// decoded record and one lookup:
//
//	sr, _ := policy.DecodeSigned(value)
//	m := memberships[sr.Membership]          // then policy.CheckSigned(sr, m, …)
//	rec, _ := schema.Decode(sr.Record)
//	wc := policy.WriteContext{Writer: m, Org: org, Key: key, Record: rec}
//	if id, ok := policy.ExecutionOf(rec); ok {
//		wc.Execution = lookup(org, schema.Key(schema.KindExecutions, id)) // nil if absent
//	}
//	err := policy.MayWrite(wc)
type WriteContext struct {
	// Writer is the membership the signed record was written under, after
	// CheckSigned.
	Writer Membership
	// Org and Key are where the write lands: the organisation's replica
	// and the datastore key (/<kind>/<id>) inside it.
	Org string
	Key string
	// Record is the record written, decoded by schema.Decode. It must be
	// the record of Org at Key. Unused for a delete.
	Record schema.Record
	// Delete marks a deletion of Key rather than a put.
	Delete bool
	// Execution is the stored executions record that ExecutionOf(Record)
	// names, in Org, or nil if none is stored yet. For an execution itself
	// it is the version already stored at Key (nil on the first write).
	// Unused for other kinds.
	Execution *schema.Record
}

// ExecutionOf names the execution that decides who owns rec: for an
// execution its own ID, for a result, result log or bundle the execution
// its body names. ok is false for other kinds, and for records whose body
// does not decode (MayWrite refuses those).
func ExecutionOf(rec schema.Record) (id string, ok bool) {
	switch rec.Kind {
	case schema.KindExecutions:
		return rec.ID, true
	case schema.KindResults, schema.KindResultLogs, schema.KindBundles:
	default:
		return "", false
	}
	b, err := rec.DecodeBody()
	if err != nil {
		return "", false
	}
	switch b := b.(type) {
	case schema.Result:
		return b.Execution, true
	case schema.ResultLog:
		return b.Execution, true
	case schema.BundleMeta:
		return b.Execution, true
	}
	return "", false
}

// MayWrite decides whether w.Writer may write (or delete) w.Record, on the
// node where the record arrives as much as where it was made:
//   - a record counts only at its own key in its own organisation
//     (ErrMisplaced), so a signed record cannot be copied elsewhere;
//   - nobody writes into an organisation their membership does not cover
//     (ErrNotMember);
//   - each role writes only its kinds, and only central deletes
//     (ErrRoleMayNotWrite, also wrapping schema's sentinel): a VM may not
//     write central kinds, an archive writes only receipts and retention
//     records;
//   - a VM writes executions only as the VM named in them, and never takes
//     over an execution stored with another VM; results, result logs and
//     bundles only for executions it runs (ErrNotOwner), and for a bundle
//     only as its signer; custody only as the holder; an archive writes
//     receipts only as the receipt's archive (ErrNotOwner);
//   - a result, log or bundle whose execution is not stored yet is
//     ErrUnknownExecution: park it and decide again when the execution
//     arrives;
//   - a record that does not validate, or a bad Org or Key, is ErrInvalid.
//
// It does not apply schema.CheckWrite (append-only, reactivation rules):
// the caller does, with the record stored at the key.
func MayWrite(w WriteContext) error {
	m, rec := w.Writer, w.Record
	kind, _, err := schema.ParseKey(w.Key)
	if err != nil {
		return fmt.Errorf("%w: write from peer %s: %w", ErrInvalid, m.Peer, err)
	}
	if err := schema.ValidateOrgID(w.Org); err != nil {
		return fmt.Errorf("%w: write from peer %s: %w", ErrInvalid, m.Peer, err)
	}
	if w.Delete {
		rec = schema.Record{Kind: kind, Org: w.Org}
	} else if rec.Org != w.Org || rec.Key() != w.Key {
		return fmt.Errorf("%w: peer %s's record %s of organisation %s arrived at %s in %s: a signed record is valid only at its own key; refused",
			ErrMisplaced, m.Peer, rec.Key(), rec.Org, w.Key, w.Org)
	}
	what := fmt.Sprintf("%s in %s", w.Key, w.Org)
	if !m.Covers(w.Org) {
		return fmt.Errorf("%w: peer %s (%s) wrote %s but has no membership for organisation %s: refused; if it belongs there, run `%s` on the central host",
			ErrNotMember, m.Peer, m.Role, what, w.Org, m.grantCommand(w.Org))
	}
	check := schema.CanWrite
	verb := "write"
	if w.Delete {
		check, verb = schema.CanDelete, "delete"
	}
	if err := check(m.Role, rec.Kind); err != nil {
		return fmt.Errorf("%w: peer %s may not %s %s: %w", ErrRoleMayNotWrite, m.Peer, verb, what, err)
	}
	if w.Delete {
		return nil
	}
	body, err := rec.DecodeBody()
	if err != nil {
		return fmt.Errorf("%w: %s from peer %s: %w", ErrInvalid, what, m.Peer, err)
	}
	notOwner := func(format string, args ...any) error {
		return fmt.Errorf("%w: peer %s may not write %s: %s", ErrNotOwner, m.Peer, what, fmt.Sprintf(format, args...))
	}
	switch b := body.(type) {
	case schema.Execution:
		if b.VM != m.Peer {
			return notOwner("the execution names VM %s; a VM writes only the executions it runs", b.VM)
		}
		if w.Execution != nil {
			stored, err := storedExecution(w.Execution, rec.Org, rec.ID)
			if err != nil {
				return err
			}
			if stored.VM != m.Peer {
				return notOwner("execution %s runs on VM %s; to continue it on another VM a proctor reactivates it as a new version", rec.ID, stored.VM)
			}
		}
	case schema.Result:
		return ownExecution(w, b.Execution, what, "a result is written by the VM that ran the execution")
	case schema.ResultLog:
		return ownExecution(w, b.Execution, what, "result logs are written by the VM that runs the execution")
	case schema.BundleMeta:
		if b.Signer != m.Peer {
			return notOwner("the bundle's manifest is signed by %s; a VM records only bundles it signed", b.Signer)
		}
		return ownExecution(w, b.Execution, what, "a bundle is made by the VM that ran the execution")
	case schema.Custody:
		if b.Holder != m.Peer {
			return notOwner("the custody record names holder %s; each VM records only its own custody", b.Holder)
		}
	case schema.BundleReceipt:
		if b.Archive != m.Peer {
			return notOwner("the receipt names archive %s; an archive writes only its own receipts", b.Archive)
		}
	}
	return nil
}

func ownExecution(w WriteContext, execID, what, why string) error {
	if w.Execution == nil {
		return fmt.Errorf("%w: %s from peer %s belongs to execution %s, which has not arrived here yet; keep the record and decide again when %s arrives",
			ErrUnknownExecution, what, w.Writer.Peer, execID, schema.Key(schema.KindExecutions, execID))
	}
	e, err := storedExecution(w.Execution, w.Record.Org, execID)
	if err != nil {
		return err
	}
	if e.VM != w.Writer.Peer {
		return fmt.Errorf("%w: peer %s may not write %s: execution %s runs on VM %s; %s",
			ErrNotOwner, w.Writer.Peer, what, execID, e.VM, why)
	}
	return nil
}

// storedExecution decodes the looked-up execution and checks it is the
// one asked for.
func storedExecution(rec *schema.Record, org, id string) (schema.Execution, error) {
	if rec.Kind != schema.KindExecutions || rec.Org != org || rec.ID != id {
		return schema.Execution{}, fmt.Errorf("%w: WriteContext.Execution is %s in %s, but the record needs %s in %s",
			ErrInvalid, rec.Key(), rec.Org, schema.Key(schema.KindExecutions, id), org)
	}
	b, err := rec.DecodeBody()
	if err != nil {
		return schema.Execution{}, fmt.Errorf("%w: stored execution %s in %s: %w", ErrInvalid, id, org, err)
	}
	return b.(schema.Execution), nil
}

// SealRecipients lists the peers a result body or bundle of org is sealed
// to: the peers of central and archive memberships covering org, sorted and
// without duplicates. VMs hold sealed copies for redundancy but are never
// recipients. members are the memberships the node currently trusts (each
// passed Check); an empty answer means nothing can be sealed yet.
func SealRecipients(org string, members []Membership) []string {
	var out []string
	for _, m := range members {
		if (m.Role == schema.RoleCentral || m.Role == schema.RoleArchive) && m.Covers(org) {
			out = append(out, m.Peer)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ResultRecipients lists the peers a result's variables are sealed to when
// writer writes it in org: SealRecipients plus the writer itself (so that
// it can read its own result, bundle it, and compare a re-write), sorted
// and without duplicates. It is nil when members hold no central or archive
// recipient of org other than the writer: the result can then be read by
// nobody else, and the caller stores it in clear rather than lose it
// (and says so).
func ResultRecipients(org, writer string, members []Membership) []string {
	out := SealRecipients(org, members)
	if !slices.ContainsFunc(out, func(p string) bool { return p != writer }) {
		return nil
	}
	out = append(out, writer)
	slices.Sort(out)
	return slices.Compact(out)
}

// MayStoreProperty refuses (ErrForbiddenProperty, also wrapping
// schema.ErrForbiddenProperty) a property name that must never enter a
// replicated store: passwords, secrets, application and private keys, API
// tokens, the authority key (schema.IsExcludedProperty).
func MayStoreProperty(name string) error {
	if !schema.IsExcludedProperty(name) {
		return nil
	}
	return fmt.Errorf("%w: %w: property %q must never be stored: passwords, secrets and keys stay out of the replicated store; remove it",
		ErrForbiddenProperty, schema.ErrForbiddenProperty, name)
}

// CheckPeerVersion decides whether a peer that speaks protocol version
// peerProto and writes record schema version peerSchema can join: the
// protocol must be ours, and we must read its schema version. The error
// (ErrUnsupportedVersion) names both versions and which side to upgrade.
func CheckPeerVersion(peerProto, peerSchema, ourProto int, ourSchemas []int) error {
	if peerProto != ourProto {
		older := "the peer"
		if peerProto > ourProto {
			older = "this node"
		}
		return fmt.Errorf("%w: the peer speaks examnode protocol version %d, this node speaks %d; upgrade examnode on %s",
			ErrUnsupportedVersion, peerProto, ourProto, older)
	}
	if slices.Contains(ourSchemas, peerSchema) {
		return nil
	}
	reads := make([]string, len(ourSchemas))
	for i, v := range ourSchemas {
		reads[i] = strconv.Itoa(v)
	}
	older := "the peer"
	if len(ourSchemas) == 0 || peerSchema > slices.Max(ourSchemas) {
		older = "this node"
	}
	return fmt.Errorf("%w: the peer writes record schema version %d, this node reads %s; upgrade examnode on %s",
		ErrUnsupportedVersion, peerSchema, orNone(strings.Join(reads, ", ")), older)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
