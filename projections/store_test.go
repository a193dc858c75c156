package projections_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/projections"
)

func TestOpenCreatesAPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	mustOpen(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("file mode %v, want no group or other access", perm)
	}
}

func TestOpenFailsFastWhenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	mustOpen(t, path)
	for _, opts := range []projections.Options{{Timeout: 100 * time.Millisecond}, {ReadOnly: true, Timeout: 100 * time.Millisecond}} {
		start := time.Now()
		_, err := projections.Open(path, opts)
		if !errors.Is(err, projections.ErrLocked) {
			t.Errorf("second Open(%+v): %v, want ErrLocked", opts, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("second Open took %v", d)
		}
	}
}

func TestOpenRefusesAnotherSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := projections.Open(path, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 99))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := projections.Open(path, projections.Options{}); !errors.Is(err, projections.ErrSchema) {
		t.Errorf("Open: %v, want ErrSchema", err)
	}
}

func TestOpenReadOnlyNeedsAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	if _, err := projections.Open(path, projections.Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open read-only: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Error("read-only Open created the file")
	}
}

func TestClosedStore(t *testing.T) {
	s, err := projections.Open(filepath.Join(t.TempDir(), "p.db"), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transfer("x"); !errors.Is(err, projections.ErrClosed) {
		t.Errorf("Transfer after Close: %v, want ErrClosed", err)
	}
	if _, err := s.List(projections.Filter{}); !errors.Is(err, projections.ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
