// Package paxos orders opaque commands for a fixed cell of replicas with
// Multi-Paxos and delivers them, chosen and in order, to a state machine.
//
// # Layers
//
// Core is the protocol: proposer, acceptor and learner of one replica, as a
// deterministic state machine with no goroutines, clock, disk or sockets. It
// takes logical ticks (Tick), peer messages (Step) and commands (Propose) and
// answers with a Ready batch. Node is the driver around it: one goroutine
// that owns a Core, a Storage (pebblestore in production, MemoryStorage in
// tests), a Transport (tcptransport, or MemNetwork) and the StateMachine.
//
// A Ready is handled in this order, and the order is the durability rule:
//
//  1. send Ready.Early (the leader's Accepts and Heartbeats; the ballot they
//     carry was made durable by Phase 1, so they may go before the sync);
//  2. persist HardState, Entries and Snapshot with one synced write (group
//     commit: everything that arrived since the last Ready shares it). A
//     Ready whose only change is a higher HardState.Commit needs no write of
//     its own: a commit index that lags on disk is still true after a crash
//     (every slot at or below it is chosen and in the durable log), and the
//     slots above it are learned again. Node keeps it for the next synced
//     write (or writes it after a few idle ticks, and before compacting);
//     Accepts carry the commit index before any sync anyway;
//  3. send Ready.Messages: promises, accepts, and every other reply, which
//     must never leave before the sync that covers them;
//  4. restore the state machine from Ready.Snapshot, if set;
//  5. apply Ready.Committed in slot order;
//  6. call Advance. Only now do the replica's votes for itself count.
//
// # Protocol
//
// Ballots are (round, replica id). A replica that hears no leader for a
// randomized election timeout first asks for pre-votes (no state changes, so
// a replica that was cut off cannot disrupt a healthy leader when it
// returns), then runs Phase 1 once with a ballot above anything it promised,
// covering every slot above its commit index. From a majority of promises it
// re-proposes, per slot, the value of the highest ballot (or the value a
// promiser knows was chosen) and fills holes with no-ops. It is then the
// distinguished proposer: new commands go straight to Phase 2, many per slot
// (batching) and many slots in flight (pipelining), until a higher ballot
// appears, when it steps down at once and reports its in-flight commands as
// having an unknown outcome.
//
// The commit index travels on Accepts and Heartbeats. Learning is per ballot:
// a follower applies its own copy of a committed slot only if it accepted it
// under the ballot of the leader that says it is committed; otherwise it
// fetches the chosen value. A lagging replica fetches chosen entries, or a
// snapshot when they were compacted.
//
// Leases: an acceptor that hears the leader refuses other Prepares for
// LeaseTicks on its own clock (and for LeaseTicks after it boots, since it
// may have granted one before a crash). The leader counts its lease from the
// send time of the newest message a majority acknowledged, minus DriftTicks.
// Under the lease, LinearizableRead needs no log round.
//
// A replica whose data directory was created empty without bootstrap is
// Recovering: it has forgotten its promises, so it neither votes nor
// campaigns. It catches up, then asks the leader to run Phase 1 again under a
// new ballot without it; only then does it vote.
//
// See docs/paxos.md for the flow as a sequence diagram and the comparison
// with Raft.
package paxos
