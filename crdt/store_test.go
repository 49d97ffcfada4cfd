package crdt

import (
	"bytes"
	"context"
	"errors"
	"testing"

	ds "github.com/ipfs/go-datastore"
)

// A store keeps the encryption it was created with: another key, no key,
// or a key for a plain store are each refused with ErrWrongStoreKey (and,
// checked by TestMain's goleak, without leaving badger's goroutines behind).
func TestStoreRefusesAnotherEncryption(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{1}, 32)
	enc, plain := t.TempDir(), t.TempDir()
	for dir, k := range map[string][]byte{enc: key, plain: nil} {
		s, err := OpenStore(dir, StoreOptions{EncryptionKey: k})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Datastore().Put(ctx, ds.NewKey("/x"), []byte("y")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		dir  string
		key  []byte
	}{
		{"another key", enc, bytes.Repeat([]byte{2}, 32)},
		{"no key", enc, nil},
		{"a key for a plain store", plain, key},
	} {
		if _, err := OpenStore(c.dir, StoreOptions{EncryptionKey: c.key}); !errors.Is(err, ErrWrongStoreKey) {
			t.Errorf("%s: %v; want ErrWrongStoreKey", c.name, err)
		}
	}
	if _, err := OpenStore(t.TempDir(), StoreOptions{EncryptionKey: []byte("short")}); !errors.Is(err, ErrBadStoreKey) {
		t.Errorf("a 5-byte key: %v; want ErrBadStoreKey", err)
	}
	s, err := OpenStore(enc, StoreOptions{EncryptionKey: key})
	if err != nil {
		t.Fatalf("the right key: %v", err)
	}
	defer s.Close()
	if v, err := s.Datastore().Get(ctx, ds.NewKey("/x")); err != nil || string(v) != "y" {
		t.Fatalf("read back: %q %v", v, err)
	}
}

func TestInMemoryStoreSyncs(t *testing.T) {
	s, err := OpenStore("", StoreOptions{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A value over the on-disk value threshold (512 bytes) stays in memory
	// (badger v4.5.1 panicked on it; found by FuzzFeedState).
	big := bytes.Repeat([]byte("v"), 64<<10)
	if err := s.Datastore().Put(context.Background(), ds.NewKey("/big"), big); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Datastore().Get(context.Background(), ds.NewKey("/big")); err != nil || !bytes.Equal(v, big) {
		t.Fatalf("read back %d bytes, %v", len(v), err)
	}
}
