package bench

import (
	"fmt"
	"sort"
	"sync"
)

// Baseline is the name under which the raw go-ds-crdt stack is registered,
// and the stack every other one is compared with in the report.
const Baseline = "raw"

var registry = struct {
	sync.RWMutex
	factories map[string]Factory
}{factories: make(map[string]Factory)}

func init() {
	Register(Baseline, RawFactory(RawOptions{}))
}

// Register makes a stack available to Run and RunChild under name. It is
// meant to be called from an init function or from main before the bench
// runs, in every binary that may run as a bench child: children look stacks
// up by name. Register panics if name is empty or taken, or f is nil, as
// database/sql.Register does: those are programming errors.
func Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("bench: Register needs a name and a non-nil Factory")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.factories[name]; dup {
		panic(fmt.Sprintf("bench: Register called twice for stack %q", name))
	}
	registry.factories[name] = f
}

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, bool) {
	registry.RLock()
	defer registry.RUnlock()
	f, ok := registry.factories[name]
	return f, ok
}

// Stacks returns the registered stack names: the baseline first, then the
// others in lexical order.
func Stacks() []string {
	registry.RLock()
	names := make([]string, 0, len(registry.factories))
	for name := range registry.factories {
		if name != Baseline {
			names = append(names, name)
		}
	}
	_, hasBaseline := registry.factories[Baseline]
	registry.RUnlock()
	sort.Strings(names)
	if hasBaseline {
		names = append([]string{Baseline}, names...)
	}
	return names
}

// lookupAll resolves every name, or says which one is not registered.
func lookupAll(names []string) error {
	for _, name := range names {
		if _, ok := Lookup(name); !ok {
			return fmt.Errorf("%w: %q (registered: %v); register it with bench.Register before running",
				ErrUnknownStack, name, Stacks())
		}
	}
	return nil
}
