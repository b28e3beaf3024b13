package paxos

import (
	"bytes"
	"fmt"
)

// NodeID names a replica of the cell. IDs are small positive integers fixed by
// configuration (1..N); 0 means "none".
type NodeID uint32

// None is the zero NodeID: no replica.
const None NodeID = 0

// Ballot orders proposals: round first, then replica id. Ballots are unique by
// construction because a replica only ever proposes with its own id.
type Ballot struct {
	Round uint64
	Node  NodeID
}

// Less reports whether b orders strictly before o.
func (b Ballot) Less(o Ballot) bool {
	if b.Round != o.Round {
		return b.Round < o.Round
	}
	return b.Node < o.Node
}

// IsZero reports whether b is the zero ballot, lower than every real one.
func (b Ballot) IsZero() bool { return b.Round == 0 && b.Node == None }

// String formats b as round.node.
func (b Ballot) String() string { return fmt.Sprintf("%d.%d", b.Round, b.Node) }

// Value is what one slot holds: a batch of opaque client commands, applied in
// order. A Value with no commands is a no-op (used to fill holes).
type Value [][]byte

// IsNoop reports whether v carries no command.
func (v Value) IsNoop() bool { return len(v) == 0 }

// Equal reports whether two values hold the same commands.
func (v Value) Equal(o Value) bool {
	if len(v) != len(o) {
		return false
	}
	for i := range v {
		if !bytes.Equal(v[i], o[i]) {
			return false
		}
	}
	return true
}

// Size is the number of command bytes in v.
func (v Value) Size() int {
	n := 0
	for _, c := range v {
		n += len(c)
	}
	return n
}

// Entry is one slot of a replica's log: the value it accepted for Slot, and the
// ballot it accepted it under. Chosen marks an entry the sender knows to be
// chosen (it is at or below the sender's commit index); it is never persisted,
// because a replica's HardState.Commit says the same for its own log.
type Entry struct {
	Slot   uint64
	Ballot Ballot
	Value  Value
	Chosen bool
}

// HardState is the part of a replica's state that must survive a crash before
// any message that depends on it is sent.
type HardState struct {
	// Promised is the highest ballot this acceptor promised (or used itself as
	// a proposer). A restarted replica proposes only above it (trap 2).
	Promised Ballot
	// Commit is the highest slot such that every slot at or below it holds
	// its chosen value in this replica's durable log (or is covered by the
	// snapshot).
	Commit uint64
	// Recovering is set on a replica whose data directory was created empty
	// without bootstrap: it has forgotten whatever it promised before, so it
	// does not vote until the leader completes a fresh Phase 1 after it
	// rejoined (trap 4).
	Recovering bool
}

// Snapshot is a state-machine image covering every slot up to Slot. Index is
// the command index (see StateMachine) of the last command at or below Slot.
type Snapshot struct {
	Slot  uint64
	Index uint64
	Data  []byte
}

// IsZero reports whether s is empty (no snapshot).
func (s Snapshot) IsZero() bool { return s.Slot == 0 }

// MsgType is the kind of a protocol message.
type MsgType uint8

// Message types. The names follow Paxos Made Simple; Heartbeat is an Accept
// with nothing to accept that carries the commit index and renews the lease.
const (
	MsgPreVote       MsgType = iota + 1 // would you promise a higher ballot now? (no state change)
	MsgPreVoteResp                      // Reject=true: I still hear a leader
	MsgPrepare                          // Phase 1a: Ballot, Slot = first slot asked for
	MsgPromise                          // Phase 1b: Entries = accepted entries >= Slot
	MsgAccept                           // Phase 2a: Entries to accept under Ballot, Commit
	MsgAccepted                         // Phase 2b: Slots accepted under Ballot
	MsgHeartbeat                        // leader liveness, lease renewal and Commit
	MsgHeartbeatResp                    // ack of a heartbeat (Tick echoed)
	MsgNack                             // rejection: Ballot = the higher ballot promised
	MsgFetch                            // catch-up request: chosen entries from Slot up to Commit
	MsgFetchResp                        // chosen entries (Entries) or a Snapshot
	MsgRejoin                           // a recovering replica asks the leader for a fresh Phase 1
	MsgRejoinOK                         // the leader's fresh ballot, now safe to vote in
)

var msgNames = map[MsgType]string{
	MsgPreVote: "prevote", MsgPreVoteResp: "prevote_resp", MsgPrepare: "prepare",
	MsgPromise: "promise", MsgAccept: "accept", MsgAccepted: "accepted",
	MsgHeartbeat: "commit", MsgHeartbeatResp: "commit_ack", MsgNack: "nack",
	MsgFetch: "fetch", MsgFetchResp: "fetch_resp", MsgRejoin: "rejoin", MsgRejoinOK: "rejoin_ok",
}

// String names the message type as the operator flow view shows it.
func (t MsgType) String() string {
	if s, ok := msgNames[t]; ok {
		return s
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

// NackReason says why a message was refused.
type NackReason uint8

// Reasons for a MsgNack.
const (
	NackBallot     NackReason = iota + 1 // a higher ballot was promised
	NackLease                            // I granted a lease to another leader that has not run out
	NackCompacted                        // I compacted slots you asked for: catch up first
	NackRecovering                       // I lost my disk and may not vote yet
)

// Message is one protocol message between replicas. Which fields are used
// depends on Type; unused fields are zero.
type Message struct {
	Type   MsgType
	From   NodeID
	To     NodeID
	Ballot Ballot
	// Slot is the first slot a Prepare or Fetch covers.
	Slot uint64
	// Commit is the sender's commit index.
	Commit uint64
	// Tick is the leader's clock when it sent an Accept or Heartbeat; replies
	// echo it so the leader can time its lease from the send.
	Tick    uint64
	Entries []Entry
	// Slots lists what an Accepted acknowledges.
	Slots    []uint64
	Reject   bool
	Reason   NackReason
	Snapshot *Snapshot
}

// Role is a replica's part in the protocol right now.
type Role uint8

// Roles.
const (
	Follower Role = iota
	Candidate
	Leader
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return "unknown"
}
