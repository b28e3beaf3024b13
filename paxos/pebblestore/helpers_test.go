package pebblestore

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/paxos"
)

var testID = paxos.Identity{Cell: "cell-a", Node: 2}

// testLogger routes hclog to t.Log until the test ends; pebble goroutines that
// outlive a test (after an injected failure) are then silenced.
func testLogger(t testing.TB) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Output: w, Level: hclog.Info})
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// openStore opens a store and closes it when the test ends, unless the test
// closed it already.
func openStore(t testing.TB, fs vfs.FS, dir string, opts Options) *Store {
	t.Helper()
	opts.FS = fs
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(dir, testID, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if !s.closed {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return s
}

func mustClose(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustLoad(t testing.TB, s *Store) (paxos.HardState, paxos.Snapshot, []paxos.Entry) {
	t.Helper()
	hs, snap, entries, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return hs, snap, entries
}

// checkLoad compares what s loads with the expected state.
func checkLoad(t testing.TB, s *Store, hs paxos.HardState, snap paxos.Snapshot, entries []paxos.Entry) {
	t.Helper()
	gotHS, gotSnap, gotEntries := mustLoad(t, s)
	checkState(t, gotHS, gotSnap, gotEntries, hs, snap, entries)
}

func checkState(t testing.TB, gotHS paxos.HardState, gotSnap paxos.Snapshot, gotEntries []paxos.Entry,
	hs paxos.HardState, snap paxos.Snapshot, entries []paxos.Entry) {
	t.Helper()
	if gotHS != hs {
		t.Errorf("hard state = %+v, want %+v", gotHS, hs)
	}
	if gotSnap.Slot != snap.Slot || gotSnap.Index != snap.Index || !bytes.Equal(gotSnap.Data, snap.Data) {
		t.Errorf("snapshot = {%d %d %d bytes}, want {%d %d %d bytes}",
			gotSnap.Slot, gotSnap.Index, len(gotSnap.Data), snap.Slot, snap.Index, len(snap.Data))
	}
	if len(gotEntries) != len(entries) {
		t.Errorf("loaded %d entries %v, want %d %v", len(gotEntries), slots(gotEntries), len(entries), slots(entries))
		return
	}
	for i := range entries {
		checkEntry(t, gotEntries[i], entries[i])
	}
}

func checkEntry(t testing.TB, got, want paxos.Entry) {
	t.Helper()
	if got.Slot != want.Slot || got.Ballot != want.Ballot || got.Chosen || !got.Value.Equal(want.Value) {
		t.Errorf("entry = %s, want %s (unchosen)", fmtEntry(got), fmtEntry(want))
	}
}

func fmtEntry(e paxos.Entry) string {
	lens := make([]int, len(e.Value))
	for i, c := range e.Value {
		lens[i] = len(c)
	}
	return fmt.Sprintf("{slot %d ballot %s chosen %t cmd lengths %v}", e.Slot, e.Ballot, e.Chosen, lens)
}

func slots(es []paxos.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Slot
	}
	return out
}

// rawEntrySlots lists the slots stored in the entry space of s, bypassing Load.
func rawEntrySlots(t testing.TB, s *Store) []uint64 {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEntry}, UpperBound: keyEntryEnd})
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for valid := it.First(); valid; valid = it.Next() {
		slot, ok := slotOfKey(it.Key())
		if !ok {
			t.Fatalf("malformed entry key %x", it.Key())
		}
		out = append(out, slot)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rawEdit opens the pebble store in dir directly, bypassing the Store, and
// runs edit on it.
func rawEdit(t testing.TB, fs vfs.FS, dir string, edit func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, FormatMajorVersion: pebbleFormat})
	if err != nil {
		t.Fatalf("raw open: %v", err)
	}
	edit(db)
	if err := db.Close(); err != nil {
		t.Fatalf("raw close: %v", err)
	}
}

func rawGet(t testing.TB, db *pebble.DB, key []byte) []byte {
	t.Helper()
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatalf("raw get %q: %v", key, err)
	}
	out := bytes.Clone(v)
	_ = closer.Close()
	return out
}

func rawSet(t testing.TB, db *pebble.DB, key, val []byte) {
	t.Helper()
	if err := db.Set(key, val, pebble.Sync); err != nil {
		t.Fatalf("raw set %q: %v", key, err)
	}
}

// flipByte returns a copy of rec with one bit of byte i flipped.
func flipByte(rec []byte, i int) []byte {
	out := bytes.Clone(rec)
	out[i] ^= 0x10
	return out
}

// dirImage maps every path under dir (relative) to its content; directories
// map to "<dir>".
func dirImage(t testing.TB, dir string) map[string]string {
	t.Helper()
	img := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			img[rel] = "<dir>"
			return nil
		}
		b, err := os.ReadFile(path)
		img[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func checkDirUnchanged(t testing.TB, dir string, before map[string]string) {
	t.Helper()
	after := dirImage(t, dir)
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s was removed", name)
		case a != b:
			t.Errorf("%s changed: %d bytes, was %d", name, len(a), len(b))
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s was created", name)
		}
	}
}
