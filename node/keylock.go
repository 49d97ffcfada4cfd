package node

import "sync"

// keyLocks serialises work on one key: the read-check-write of a record,
// so that two concurrent writes to an append-only record cannot both pass
// CheckWrite; the resumption of one execution; the attachments of one
// execution; the on-demand export of one bundle. (Writes arriving from
// other peers are the CRDT's to merge; keys are laid out so that
// concurrent writers rarely share one.)
//
// Each Node has its own (Node.locks); an entry lives only while someone
// holds or waits for its lock. The zero value is ready to use.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// lock takes key's lock and returns the function that releases it.
func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// held is the number of keys locked or waited for (tests).
func (k *keyLocks) held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}

// The lock namespaces: each starts with its own word, so keys of two
// namespaces never meet.

// lockRecord serialises the local writes to one record (records.go,
// bundles.go).
func (n *Node) lockRecord(org, key string) func() {
	return n.locks.lock("record/" + org + key)
}

// lockExport serialises the on-demand exports of one bundle
// (bundles_api.go).
func (n *Node) lockExport(root string) func() {
	return n.locks.lock("export/" + root)
}

// lockResume serialises the resumptions of one execution (resume.go).
func (n *Node) lockResume(org, base string) func() {
	return n.locks.lock("resume/" + org + "/" + base)
}

// lockAttachments serialises the attachments of one execution
// (attachments.go).
func (n *Node) lockAttachments(org, exec string) func() {
	return n.locks.lock("attachments/" + org + "/" + exec)
}
