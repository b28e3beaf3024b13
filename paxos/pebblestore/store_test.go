package pebblestore

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/lockd/lockd/paxos"
)

// step is one call on the store: Compact(*snap) when compact is set,
// Save(hs, entries, snap) otherwise.
type step struct {
	hs      *paxos.HardState
	entries []paxos.Entry
	snap    *paxos.Snapshot
	compact bool
}

func entry(slot, round uint64, node paxos.NodeID, cmds ...string) paxos.Entry {
	e := paxos.Entry{Slot: slot, Ballot: paxos.Ballot{Round: round, Node: node}}
	for _, c := range cmds {
		e.Value = append(e.Value, []byte(c))
	}
	return e
}

func entryRange(lo, hi, round uint64) []paxos.Entry {
	var es []paxos.Entry
	for s := lo; s <= hi; s++ {
		es = append(es, entry(s, round, 1, "cmd"))
	}
	return es
}

func TestSaveLoad(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 200<<10)
	tests := []struct {
		name      string
		bootstrap bool
		steps     []step
		wantHS    paxos.HardState
		wantSnap  paxos.Snapshot
		want      []paxos.Entry
	}{{
		name:      "fresh bootstrap",
		bootstrap: true,
	}, {
		name:   "fresh without bootstrap is recovering",
		wantHS: paxos.HardState{Recovering: true},
	}, {
		name:      "all fields round trip",
		bootstrap: true,
		steps: []step{{
			hs: &paxos.HardState{Promised: paxos.Ballot{Round: math.MaxUint64, Node: math.MaxUint32}, Commit: 5, Recovering: true},
			entries: []paxos.Entry{
				{Slot: 1, Ballot: paxos.Ballot{Round: 7, Node: 3}, Chosen: true},
				{Slot: 2, Ballot: paxos.Ballot{Round: 7, Node: 3}, Value: paxos.Value{}},
				{Slot: 3, Ballot: paxos.Ballot{Round: 7, Node: 3}, Value: paxos.Value{{}}},
				{Slot: 4, Ballot: paxos.Ballot{Round: 8, Node: 1}, Value: paxos.Value{[]byte("a"), nil, []byte("bc"), {}}},
				{Slot: 5, Ballot: paxos.Ballot{Round: math.MaxUint64, Node: math.MaxUint32}, Value: paxos.Value{big}},
				{Slot: math.MaxUint64, Ballot: paxos.Ballot{Round: 1, Node: 1}, Value: paxos.Value{{0, 0xff}}},
			},
		}},
		wantHS: paxos.HardState{Promised: paxos.Ballot{Round: math.MaxUint64, Node: math.MaxUint32}, Commit: 5, Recovering: true},
		want: []paxos.Entry{
			{Slot: 1, Ballot: paxos.Ballot{Round: 7, Node: 3}},
			{Slot: 2, Ballot: paxos.Ballot{Round: 7, Node: 3}},
			{Slot: 3, Ballot: paxos.Ballot{Round: 7, Node: 3}, Value: paxos.Value{{}}},
			{Slot: 4, Ballot: paxos.Ballot{Round: 8, Node: 1}, Value: paxos.Value{[]byte("a"), {}, []byte("bc"), {}}},
			{Slot: 5, Ballot: paxos.Ballot{Round: math.MaxUint64, Node: math.MaxUint32}, Value: paxos.Value{big}},
			{Slot: math.MaxUint64, Ballot: paxos.Ballot{Round: 1, Node: 1}, Value: paxos.Value{{0, 0xff}}},
		},
	}, {
		name: "nil hard state keeps the stored one",
		steps: []step{
			{hs: &paxos.HardState{Promised: paxos.Ballot{Round: 3, Node: 2}, Commit: 1}},
			{entries: entryRange(1, 2, 3)},
		},
		wantHS: paxos.HardState{Promised: paxos.Ballot{Round: 3, Node: 2}, Commit: 1},
		want:   entryRange(1, 2, 3),
	}, {
		name: "overwrite across and within saves",
		steps: []step{
			{entries: []paxos.Entry{entry(1, 1, 1, "a"), entry(2, 1, 1, "b"), entry(3, 1, 1, "c")}},
			{entries: []paxos.Entry{entry(2, 2, 3, "B"), entry(3, 2, 3, "x"), entry(3, 2, 3)}},
		},
		wantHS: paxos.HardState{Recovering: true},
		want:   []paxos.Entry{entry(1, 1, 1, "a"), entry(2, 2, 3, "B"), entry(3, 2, 3)},
	}, {
		name: "compact removes entries at or below the snapshot",
		steps: []step{
			{hs: &paxos.HardState{Commit: 10}, entries: entryRange(1, 12, 1)},
			{snap: &paxos.Snapshot{Slot: 6, Index: 9, Data: []byte("image")}, compact: true},
		},
		wantHS:   paxos.HardState{Commit: 10},
		wantSnap: paxos.Snapshot{Slot: 6, Index: 9, Data: []byte("image")},
		want:     entryRange(7, 12, 1),
	}, {
		name: "save with snapshot removes old and given entries at or below it",
		steps: []step{
			{entries: entryRange(1, 4, 1)},
			{hs: &paxos.HardState{Commit: 8}, entries: entryRange(5, 12, 2), snap: &paxos.Snapshot{Slot: 8, Index: 20}},
		},
		wantHS:   paxos.HardState{Commit: 8},
		wantSnap: paxos.Snapshot{Slot: 8, Index: 20},
		want:     entryRange(9, 12, 2),
	}, {
		name: "entries at or below the stored snapshot are dropped",
		steps: []step{
			{hs: &paxos.HardState{Commit: 6}, entries: entryRange(1, 6, 1)},
			{snap: &paxos.Snapshot{Slot: 6, Index: 6}, compact: true},
			{entries: entryRange(3, 8, 2)},
		},
		wantHS:   paxos.HardState{Commit: 6},
		wantSnap: paxos.Snapshot{Slot: 6, Index: 6},
		want:     entryRange(7, 8, 2),
	}, {
		name: "newer snapshot replaces the older",
		steps: []step{
			{hs: &paxos.HardState{Commit: 9}, entries: entryRange(1, 9, 1)},
			{snap: &paxos.Snapshot{Slot: 3, Index: 3, Data: []byte("old")}, compact: true},
			{snap: &paxos.Snapshot{Slot: 3, Index: 3, Data: []byte("same slot")}, compact: true},
			{snap: &paxos.Snapshot{Slot: 7, Index: 8, Data: []byte("new")}},
		},
		wantHS:   paxos.HardState{Commit: 9},
		wantSnap: paxos.Snapshot{Slot: 7, Index: 8, Data: []byte("new")},
		want:     entryRange(8, 9, 1),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := openStore(t, fs, "/data", Options{Bootstrap: tt.bootstrap})
			for i, st := range tt.steps {
				var err error
				if st.compact {
					err = s.Compact(*st.snap)
				} else {
					err = s.Save(st.hs, st.entries, st.snap)
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			checkLoad(t, s, tt.wantHS, tt.wantSnap, tt.want)
			if got, want := rawEntrySlots(t, s), slots(tt.want); !slices.Equal(got, want) {
				t.Errorf("stored entry slots = %v, want %v", got, want)
			}
			// The bootstrap flag only matters when the store is created.
			mustClose(t, s)
			s = openStore(t, fs, "/data", Options{Bootstrap: !tt.bootstrap})
			checkLoad(t, s, tt.wantHS, tt.wantSnap, tt.want)
		})
	}
}

func TestLoadReturnsCallerOwnedSlices(t *testing.T) {
	s := openStore(t, vfs.NewMem(), "/data", Options{})
	in := []paxos.Entry{entry(1, 1, 1, "abc", "def"), entry(2, 1, 1, "ghi")}
	if err := s.Save(nil, in, nil); err != nil {
		t.Fatal(err)
	}
	in[0].Value[0][0] = 'X' // the store must have copied what it was given
	_, _, got := mustLoad(t, s)
	if string(got[0].Value[0]) != "abc" {
		t.Fatalf("stored command changed with the caller's slice: %q", got[0].Value[0])
	}
	got[0].Value[0] = append(got[0].Value[0], "ZZ"...) // must not spill into the next command
	if string(got[0].Value[1]) != "def" {
		t.Fatalf("appending to one command overwrote the next: %q", got[0].Value[1])
	}
	_, _, again := mustLoad(t, s)
	checkEntry(t, again[0], entry(1, 1, 1, "abc", "def"))
}

func TestReopenOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "replica") // created by Open
	s := openStore(t, vfs.Default, dir, Options{Bootstrap: true})
	meta := s.Metadata()
	if meta.Identity != testID || meta.FormatVersion != formatVersion || meta.Created.IsZero() {
		t.Fatalf("metadata = %+v", meta)
	}
	hs := paxos.HardState{Promised: paxos.Ballot{Round: 4, Node: 2}, Commit: 15}
	steps := []step{
		{hs: &paxos.HardState{Promised: paxos.Ballot{Round: 1, Node: 1}}, entries: entryRange(1, 10, 1)},
		{hs: &hs, entries: entryRange(8, 20, 4)},
		{snap: &paxos.Snapshot{Slot: 5, Index: 5, Data: []byte("snap")}, compact: true},
	}
	for i, st := range steps {
		var err error
		if st.compact {
			err = s.Compact(*st.snap)
		} else {
			err = s.Save(st.hs, st.entries, st.snap)
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := append(entryRange(6, 7, 1), entryRange(8, 20, 4)...)
	mustClose(t, s)

	s = openStore(t, vfs.Default, dir, Options{})
	checkLoad(t, s, hs, paxos.Snapshot{Slot: 5, Index: 5, Data: []byte("snap")}, want)
	if got := s.Metadata(); got != meta {
		t.Errorf("metadata after reopen = %+v, want %+v", got, meta)
	}
}

func TestRefusedRequests(t *testing.T) {
	tests := []struct {
		name string
		call func(s *Store) error
	}{
		{"compact beyond commit", func(s *Store) error { return s.Compact(paxos.Snapshot{Slot: 6}) }},
		{"compact older than stored snapshot", func(s *Store) error { return s.Compact(paxos.Snapshot{Slot: 2}) }},
		{"save older snapshot", func(s *Store) error {
			return s.Save(&paxos.HardState{Commit: 9}, entryRange(3, 9, 9), &paxos.Snapshot{Slot: 2})
		}},
		{"save snapshot at slot 0", func(s *Store) error { return s.Save(nil, nil, &paxos.Snapshot{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, vfs.NewMem(), "/data", Options{Bootstrap: true})
			hs := paxos.HardState{Commit: 5}
			if err := s.Save(&hs, entryRange(1, 8, 1), nil); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(paxos.Snapshot{Slot: 3, Index: 3}); err != nil {
				t.Fatal(err)
			}
			if err := tt.call(s); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("err = %v, want ErrBadSnapshot", err)
			}
			// Nothing was written, and the store is still usable.
			checkLoad(t, s, hs, paxos.Snapshot{Slot: 3, Index: 3}, entryRange(4, 8, 1))
			if err := s.Save(nil, entryRange(9, 9, 1), nil); err != nil {
				t.Fatalf("save after a refused request: %v", err)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	s := openStore(t, vfs.NewMem(), "/data", Options{})
	mustClose(t, s)
	calls := map[string]func() error{
		"save":    func() error { return s.Save(nil, entryRange(1, 1, 1), nil) },
		"compact": func() error { return s.Compact(paxos.Snapshot{Slot: 1}) },
		"load":    func() error { _, _, _, err := s.Load(); return err },
		"close":   s.Close,
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after close: err = %v, want ErrClosed", name, err)
		}
	}
}
