// Package lockservice is the deterministic state machine of lockd: the
// namespace of nodes, the reader/writer lock on every node, sessions, and
// the event history that watches read. Paxos hands it committed commands in
// index order (Apply); every replica that applies the same commands reaches
// the same state and returns the same results. It knows nothing of Paxos,
// HTTP or clocks.
//
// # Use
//
//	m, _ := lockservice.New(lockservice.Config{Cell: "local"})
//	cmd, _ := lockservice.Encode(lockservice.Command{Kind: lockservice.KindCreateSession, NowMs: now})
//	// ... propose cmd through paxos; on every replica, in order:
//	res := m.Apply(index, cmd).(lockservice.Result)
//	if res.Err != nil { code := lockservice.Code(res.Err) ... }
//
// The API layer validates with Command.Validate (and ValidatePath) before
// proposing, proposes, and answers from the Result that Apply returned on the
// leader. A queued acquire (Result.Waiting) is awaited with AwaitAcquire;
// watches use EventsSince / WatchEvents; linearizable reads after a write use
// WaitIndex. The session layer proposes KindExpireSession when a lease runs
// out, reads LiveSessions to rebuild its timers, and the leader proposes a
// KindTick whenever NextDeadline passes.
//
// # Contract
//
//   - Threading: Apply, ApplyCommand, Snapshot and Restore are called from
//     one goroutine. Every read (GetNode, GetLock, CheckSequencer, ...) is
//     safe concurrently with them; state is behind a sync.RWMutex and reads
//     return copies.
//   - Determinism: Apply reads no clock, no randomness, and never lets map
//     order reach results, events or snapshots (keys are sorted). Time comes
//     only from Command.NowMs, stamped by the leader; the machine's clock is
//     the highest NowMs applied so far, so a leader change with a slower
//     clock never moves time backwards.
//   - Index: every Apply must be above the applied index (else it is
//     refused and changes nothing). The applied index advances even for a
//     rejected or undecodable command.
//   - Rejection: a command whose Result.Err is set changed nothing of its
//     own: no node, generation, lock, session or request-id record. (Time
//     still advanced, see below, and a refused try-acquire emits
//     lock_conflict to tell the holder someone wants the lock.)
//   - Time first: before the command itself, every command runs what its
//     time makes due, in this order: waits whose deadline is at or before now
//     fail (ErrLockHeld); lock-delays that ended are lifted; the touched locks
//     hand over to their queues. So no wait is ever granted at or after its
//     deadline, and KindTick is just a command with nothing else to do.
//
// # Identifiers and generations
//
//   - Session ids are the index of the CreateSession command, as 16 hex
//     digits ("000000000000002a"). Clients treat them as opaque.
//   - A wait's id (Result.WaitID) is the index of the acquire that queued it.
//   - Node instance numbers come from a cell-wide counter: a node deleted
//     and re-created has a new, higher instance.
//   - Content generation starts at 1 and rises by exactly 1 per write.
//   - Lock generation: every exclusive hold takes the next value of a
//     cell-wide counter. So it rises each time an exclusive hold starts, is
//     unique among all exclusive holds of the cell, and never goes back, not
//     even when the node is deleted and re-created, or when two holds start
//     and end in one command (a per-index number could repeat there). A
//     fencing resource that remembers the highest generation it saw is safe.
//   - A new node's lock generation starts at the current value of that
//     counter (not 0), so the lock generation of a path never goes down,
//     even across delete and re-create.
//   - Shared holds carry the current generation (that of the last exclusive
//     hold, or the node's starting value if none). Readers cannot overlap a writer, so a shared
//     sequencer stays valid for the reader's whole hold, and stops being
//     valid (and compares lower) as soon as any writer has held the lock
//     since: the change that matters to a reader. Readers that hold in turn
//     with no writer between them share a generation, which is harmless:
//     nothing was written in between.
//   - A sequencer is "v1:" + base64url(mode, generation, path, session).
//     CheckSequencer says valid exactly while that session holds that lock in
//     that mode at that generation.
//
// # Namespace
//
// Paths are /ls/<cell>/... (ValidatePath); /ls/<cell> is the root
// directory, always present, never written, deleted or locked. Missing
// parents are created as permanent directories by puts and acquires; an
// existing ancestor that is a file makes the command fail with
// ErrPreconditionFailed. Ephemeral nodes are files owned by a live session
// and are deleted when it ends or expires. Writing a file over a directory
// (or the reverse) is ErrPreconditionFailed; {dir: true} on a directory is a
// no-op success. A node that has lock holders or waiters cannot be deleted
// (ErrPreconditionFailed): a lock is lost only by release or session end.
// The one exception is an ephemeral node whose owner ends: it is deleted
// even if others hold or await its lock, and the lock lives on; a later
// grant from the queue re-creates the file.
//
// # Locks
//
//   - Exclusive (one holder) or shared (many). Waiters queue FIFO; nobody
//     overtakes the head, so a shared acquire waits behind a queued
//     exclusive one even while readers hold the lock (no writer
//     starvation). A release, expiry, end of a delay or failed head wait
//     hands the lock to the head in the same command: a run of shared
//     waiters together, or one exclusive waiter. No thundering herd.
//   - A try (wait_ms 0) fails with ErrLockHeld when the lock is held
//     incompatibly or anyone is queued, and with ErrLockDelayed
//     (RetryAfterMs) when only a lock-delay is in the way.
//   - A session holds a lock in one mode; re-acquiring in that mode returns
//     the existing grant, in the other mode is ErrLockHeld. A session waits
//     at most once per lock: a repeated acquire joins its wait (another mode
//     is ErrPreconditionFailed).
//   - Lock-delay: when a session EXPIRES holding a lock, the lock is held
//     back for the session's lock_delay_ms: nothing is granted until a
//     command at or after the end is applied (queued waits go on through
//     it). When the expired holder was shared, only exclusive grants are held
//     back (other readers could not conflict with it). EndSession releases
//     without lock-delay.
//   - Contents given with an acquire are written in the command that grants
//     it, also when the grant comes later from the queue. When the acquire
//     creates the node and is granted at once, the node is created with them
//     (content generation 1).
//
// # Idempotency
//
// An acquire or release with a request_id is remembered per session (its
// newest RequestIDsPerSession, for the session's life). A repeat returns the
// first answer (Result.Duplicate); a repeat of an acquire still queued
// returns Waiting and the same WaitID. Only successful commands are
// remembered: a refused try is tried afresh by its repeat. A request id
// reused for another kind or path is ErrInvalidArgument. Release names the
// generation it releases: any other generation is ErrNotHolder, so a late
// retry cannot release a later hold of the same session.
//
// # Sessions
//
// Unknown session ids are ErrNotFound; ended or expired ones are
// ErrSessionExpired, for the newest MaxEndedSessions of them (older ones
// fall back to ErrNotFound).
//
// # Events and watches
//
// Every change emits Events stamped with the command's index (see Event for
// which generation each type carries). The machine keeps the newest
// Config.EventHistory events in a ring; EventsSince fails with ErrCompacted
// when the asked-for index is below what is retained, and after Restore
// everything up to the snapshot index counts as compacted. Snapshots do not
// hold events.
//
// # Access control
//
// ACL rules live in the replicated state, as Chubby keeps ACLs in files:
// KindSetACL sets the rule for a principal (a name, or Everyone "*") at a
// prefix (a node path, the root included) to a set of permissions (read,
// write, lock, admin; none is a rule that denies); KindDeleteACL deletes
// it. Machine.Permissions resolves what a principal may do at a path: the
// rule for it, else for Everyone, at the longest prefix of the path that has
// one (segment-wise: /ls/c/a covers /ls/c/a and /ls/c/a/b, not /ls/c/ab);
// a StaticACL (the configuration's bootstrap rules) counts at the same
// prefix after the replicated rules. No rule is no permission. admin implies
// the rest. So a rule for one principal never changes another's
// permissions, and a deeper rule can narrow a grant.
//
// A node's acl_generation is the index of the last ACL change at any prefix
// of its path (0 if none): it changes whenever a rule that may govern the
// node changes, and never goes back (a prefix whose rules are all deleted
// keeps its index). The machine does not enforce rules; the API authorizes
// every request before proposing or reading.
//
// CreateSession carries the Principal that creates the session; it is part
// of the session (and of snapshots) and never changes. UsageOf counts a
// principal's live sessions and their queued waits, for quotas.
//
// # Snapshots
//
// Snapshot is deterministic JSON of the whole state Apply depends on; Restore
// checks its consistency before replacing anything.
package lockservice
