package paxos

import "errors"

// Storage errors.
var (
	// ErrForeignData means the data directory belongs to another cell or
	// another replica id. It is never reset.
	ErrForeignData = errors.New("paxos: data directory belongs to another cell or replica")
	// ErrCorruptData means the durable state cannot be read back as written.
	ErrCorruptData = errors.New("paxos: data directory is corrupt")
)

// Identity names the replica a data directory belongs to. A store refuses to
// open a directory whose identity differs from the one asked for.
type Identity struct {
	Cell string
	Node NodeID
}

// Storage is the durable state of one replica: its HardState, its log of
// accepted entries above the snapshot, and the latest snapshot. Every method
// is called from one goroutine (the Node's loop); implementations need not be
// safe for concurrent use.
//
// Durability contract: Save returns only after everything it was given is
// synced to stable storage, in one batch (group commit). Entries given to Save
// overwrite any entry stored for the same slot.
type Storage interface {
	// Load returns what a restarting replica needs: its HardState, the
	// latest snapshot (zero if none) and every stored entry above the
	// snapshot, in slot order. Slices belong to the caller.
	Load() (HardState, Snapshot, []Entry, error)
	// Save durably stores, in one synced batch, the HardState (when hs is
	// not nil), the entries, and the snapshot (when snap is not nil; entries
	// at or below snap.Slot are then removed).
	Save(hs *HardState, entries []Entry, snap *Snapshot) error
	// Compact durably stores snap as the latest snapshot and removes every
	// entry at or below snap.Slot. snap.Slot must not exceed the commit
	// index.
	Compact(snap Snapshot) error
	// Close releases the store. The store is unusable afterwards.
	Close() error
}

// StateMachine is what paxos delivers chosen commands to. Apply is called
// strictly in command-index order, exactly once per index for each life of the
// state machine: after a restart the machine is rebuilt with Restore from the
// latest snapshot and the commands after it are applied again. Index counts
// commands (not slots): a slot with k commands advances it by k. The state
// machine must be deterministic: same commands in, same state and results
// out, on every replica.
type StateMachine interface {
	// Apply applies one command at the given index and returns its result,
	// which is handed to the proposer of the command on the leader.
	Apply(index uint64, cmd []byte) any
	// Snapshot returns an image of the state after the last applied index.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state with a snapshot image.
	Restore(data []byte) error
}
