package paxos

import (
	"maps"
	"slices"
	"sync"
)

// MemoryStorage is an in-memory Storage: the reference implementation that
// tests and the simulation use. "Durable" means stored in it: a simulated
// crash keeps the MemoryStorage and loses the Core. It is safe for concurrent
// use.
type MemoryStorage struct {
	mu      sync.Mutex
	hs      HardState
	snap    Snapshot
	entries map[uint64]Entry
	saves   int
}

// NewMemoryStorage returns an empty store. recovering sets the initial
// HardState.Recovering, as a store created without bootstrap would.
func NewMemoryStorage(recovering bool) *MemoryStorage {
	return &MemoryStorage{hs: HardState{Recovering: recovering}, entries: map[uint64]Entry{}}
}

// Load implements Storage.
func (s *MemoryStorage) Load() (HardState, Snapshot, []Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Sorted(maps.Keys(s.entries))
	out := make([]Entry, 0, len(keys))
	for _, k := range keys {
		out = append(out, s.entries[k])
	}
	return s.hs, s.snap, out, nil
}

// Save implements Storage.
func (s *MemoryStorage) Save(hs *HardState, entries []Entry, snap *Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saves++
	if hs != nil {
		s.hs = *hs
	}
	for _, e := range entries {
		e.Chosen = false
		s.entries[e.Slot] = e
	}
	if snap != nil {
		s.compactLocked(*snap)
	}
	return nil
}

// Compact implements Storage.
func (s *MemoryStorage) Compact(snap Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compactLocked(snap)
	return nil
}

func (s *MemoryStorage) compactLocked(snap Snapshot) {
	if snap.Slot <= s.snap.Slot {
		return
	}
	s.snap = snap
	for k := range s.entries {
		if k <= snap.Slot {
			delete(s.entries, k)
		}
	}
}

// Close implements Storage.
func (s *MemoryStorage) Close() error { return nil }
