package paxos

import (
	"math/rand"
	"slices"
)

// Core is the deterministic Multi-Paxos state machine of one replica: proposer,
// acceptor and learner in one. It does no I/O and reads no clock: the caller
// feeds it ticks (Tick), peer messages (Step) and commands (Propose), then takes
// a Ready batch, persists and sends what it says, applies its committed
// entries, and confirms with Advance. Core is not safe for concurrent use.
type Core struct {
	cfg    Config
	rnd    *rand.Rand
	quorum int
	now    uint64

	// Durable state, mirrored. hsDirty marks an unsaved HardState.
	hs      HardState
	hsDirty bool
	log     map[uint64]*Entry // entries above snap.Slot
	last    uint64            // highest slot in log (or snap.Slot)
	snap    Snapshot

	role   Role
	leader NodeID
	ballot Ballot // our own ballot while candidate or leader

	// Acceptor side: the lease we granted and when we last heard a leader.
	leaseGranted     uint64 // refuse other Prepares until now >= this
	leaseHolder      NodeID // the leader the lease was granted to (None: unknown)
	lastHeard        uint64
	electionDeadline uint64
	backoff          int

	cand   candidateState
	lead   leaderState
	learn  learnerState
	rejoin rejoinState

	// Ready accumulators.
	early     []Message // may be sent before persisting
	late      []Message // sent only after the persist that covers them
	unstable  []Entry   // entries to persist
	install   *Snapshot
	applied   uint64 // last slot handed out to apply
	applyIdx  uint64 // command index of the last command handed out
	lostLead  bool
	roleDirty bool
	// Self votes that count only once the Ready that persists them is done.
	selfPromise bool
	selfAccepts []uint64
}

// Ready is a batch of work for the driver. Handle it in this order:
//  1. send Early (leader Accepts and Heartbeats: the ballot they carry is already durable);
//  2. persist HardState, Entries and Snapshot in one synced batch;
//  3. send Messages (replies that promise or accept: never before the sync);
//  4. if Snapshot is set, restore the state machine from it;
//  5. apply Committed in order;
//  6. call Advance(rd).
type Ready struct {
	HardState *HardState
	Entries   []Entry
	Snapshot  *Snapshot
	Early     []Message
	Messages  []Message
	// Committed holds chosen entries to apply, in slot order. FirstIndex is
	// the command index of the first command among them.
	Committed  []Entry
	FirstIndex uint64
	// Status is set when the role or known leader changed.
	Status *Status
	// LostLeadership is set when this replica stopped being the leader:
	// every command it proposed and has not seen applied has an unknown
	// outcome.
	LostLeadership bool
}

// IsEmpty reports whether the batch has nothing to do.
func (rd *Ready) IsEmpty() bool {
	return rd.HardState == nil && len(rd.Entries) == 0 && rd.Snapshot == nil && len(rd.Early) == 0 &&
		len(rd.Messages) == 0 && len(rd.Committed) == 0 && rd.Status == nil && !rd.LostLeadership
}

// Status is a summary of a replica's protocol state.
type Status struct {
	ID         NodeID
	Role       Role
	Leader     NodeID
	Ballot     Ballot // the leader's ballot as far as this replica knows (promised)
	Commit     uint64
	Applied    uint64
	Snapshot   uint64
	LastSlot   uint64
	Recovering bool
	// LeaseRemaining is, on a leader, how many ticks its lease still holds.
	LeaseRemaining uint64
}

// NewCore builds the core of a replica from its durable state as Storage.Load
// returned it. Entries above the snapshot and at or below hs.Commit are
// handed out for apply again by the first Ready (the state machine is rebuilt
// from the snapshot before that).
func NewCore(cfg Config, hs HardState, snap Snapshot, entries []Entry) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.New(rand.NewSource(int64(cfg.ID)))
	}
	c := &Core{
		cfg:    cfg,
		rnd:    rnd,
		quorum: len(cfg.Peers)/2 + 1,
		hs:     hs,
		log:    make(map[uint64]*Entry, len(entries)),
		snap:   snap,
		last:   snap.Slot,
	}
	for i := range entries {
		e := entries[i]
		if e.Slot <= snap.Slot {
			continue
		}
		e.Chosen = false
		c.log[e.Slot] = &e
		c.last = max(c.last, e.Slot)
	}
	if c.hs.Commit < snap.Slot {
		c.hs.Commit = snap.Slot
	}
	c.applied = snap.Slot
	c.applyIdx = snap.Index
	// We may have granted a lease just before we crashed and cannot know to
	// whom: refuse other Prepares for one lease from boot (trap 8).
	c.leaseGranted = uint64(cfg.LeaseTicks)
	c.resetElectionTimer()
	c.roleDirty = true
	return c, nil
}

// ID returns this replica's id.
func (c *Core) ID() NodeID { return c.cfg.ID }

// Role returns the replica's current role.
func (c *Core) Role() Role { return c.role }

// Leader returns the leader this replica knows of, or None.
func (c *Core) Leader() NodeID { return c.leader }

// Now returns the replica's logical clock.
func (c *Core) Now() uint64 { return c.now }

// Status returns a summary of the replica's state.
func (c *Core) Status() Status {
	st := Status{
		ID: c.cfg.ID, Role: c.role, Leader: c.leader, Ballot: c.hs.Promised,
		Commit: c.hs.Commit, Applied: c.applied, Snapshot: c.snap.Slot, LastSlot: c.last,
		Recovering: c.hs.Recovering,
	}
	if c.role == Leader && c.lead.leaseUntil > c.now {
		st.LeaseRemaining = c.lead.leaseUntil - c.now
	}
	return st
}

// Tick advances the logical clock by one and fires whatever timers are due.
func (c *Core) Tick() {
	c.now++
	switch c.role {
	case Leader:
		c.tickLeader()
	default:
		if c.now >= c.electionDeadline {
			c.campaignTimeout()
		}
	}
	c.tickLearner()
}

// TickBy advances the logical clock by n ticks at once and fires whatever
// timers are due then: the catch-up after the process could not tick (it was
// stopped, or starved), so that a lease or timeout that ran out meanwhile is
// seen as run out (trap 8).
func (c *Core) TickBy(n uint64) {
	if n == 0 {
		return
	}
	c.now += n - 1
	c.Tick()
}

// Step feeds one message from a peer into the core. Stale, duplicated and
// reordered messages are harmless: every handler checks ballots and slots.
func (c *Core) Step(m Message) {
	if m.To != c.cfg.ID || m.From == c.cfg.ID || !c.isPeer(m.From) {
		return
	}
	switch m.Type {
	case MsgPreVote:
		c.onPreVote(m)
	case MsgPreVoteResp:
		c.onPreVoteResp(m)
	case MsgPrepare:
		c.onPrepare(m)
	case MsgPromise:
		c.onPromise(m)
	case MsgAccept:
		c.onAccept(m)
	case MsgAccepted:
		c.onAccepted(m)
	case MsgHeartbeat:
		c.onHeartbeat(m)
	case MsgHeartbeatResp:
		c.onHeartbeatResp(m)
	case MsgNack:
		c.onNack(m)
	case MsgFetch:
		c.onFetch(m)
	case MsgFetchResp:
		c.onFetchResp(m)
	case MsgRejoin:
		c.onRejoin(m)
	case MsgRejoinOK:
		c.onRejoinOK(m)
	}
}

// Propose queues a command for the next slot. Only the leader proposes; the
// command is packed into a slot (with others, when busy) by the next Ready.
func (c *Core) Propose(cmd []byte) error {
	if c.role != Leader {
		return ErrNotLeader
	}
	if len(cmd) > c.cfg.MaxBatchBytes {
		return ErrTooLarge
	}
	c.lead.pending = append(c.lead.pending, cmd)
	return nil
}

// Ready collects the work accumulated since the last Advance. The caller must
// handle it and call Advance before the next Step, Tick or Propose.
func (c *Core) Ready() Ready {
	if c.role == Leader {
		c.packProposals()
		c.flushCommit()
	}
	rd := Ready{
		Entries:        c.unstable,
		Snapshot:       c.install,
		Early:          c.early,
		Messages:       c.late,
		LostLeadership: c.lostLead,
	}
	if c.hsDirty || len(c.unstable) > 0 || c.install != nil {
		hs := c.hs
		rd.HardState = &hs
	}
	if c.roleDirty {
		st := c.Status()
		rd.Status = &st
	}
	if c.install != nil {
		c.applied = c.install.Slot
		c.applyIdx = c.install.Index
	}
	if c.hs.Commit > c.applied {
		rd.FirstIndex = c.applyIdx + 1
		for s := c.applied + 1; s <= c.hs.Commit; s++ {
			e := c.log[s]
			rd.Committed = append(rd.Committed, *e)
			c.applyIdx += uint64(len(e.Value))
		}
		c.applied = c.hs.Commit
	}
	c.unstable, c.install, c.early, c.late = nil, nil, nil, nil
	c.hsDirty, c.roleDirty, c.lostLead = false, false, false
	return rd
}

// Advance tells the core that rd was persisted, sent and applied. Votes that
// this replica cast for itself count from now on, never before they were
// durable.
func (c *Core) Advance(rd Ready) {
	_ = rd
	if c.selfPromise {
		c.selfPromise = false
		if c.role == Candidate && c.cand.phase1 {
			c.recordPromise(c.cfg.ID, c.ownPromiseEntries(c.cand.fromSlot), false)
		}
	}
	if len(c.selfAccepts) > 0 {
		slots := c.selfAccepts
		c.selfAccepts = nil
		if c.role == Leader {
			c.recordAccepted(c.cfg.ID, c.ballot, slots)
		}
	}
}

// Compact tells the core that the driver stored snap durably (taken from the
// state machine at snap.Slot, which must be applied): entries at or below it
// are dropped from memory, and snap is what lagging replicas are sent.
func (c *Core) Compact(snap Snapshot) {
	if snap.Slot <= c.snap.Slot || snap.Slot > c.applied {
		return
	}
	for s := c.snap.Slot + 1; s <= snap.Slot; s++ {
		delete(c.log, s)
	}
	c.snap = snap
}

// LatestSnapshot returns the snapshot the core knows of.
func (c *Core) LatestSnapshot() Snapshot { return c.snap }

func (c *Core) isPeer(id NodeID) bool { return slices.Contains(c.cfg.Peers, id) }

func (c *Core) send(m Message) {
	m.From = c.cfg.ID
	c.late = append(c.late, m)
}

func (c *Core) sendEarly(m Message) {
	m.From = c.cfg.ID
	c.early = append(c.early, m)
}

func (c *Core) broadcast(m Message, early bool) {
	for _, p := range c.cfg.Peers {
		if p == c.cfg.ID {
			continue
		}
		m.To = p
		if early {
			c.sendEarly(m)
		} else {
			c.send(m)
		}
	}
}

// store puts an entry into the log and queues it for persistence.
func (c *Core) store(e Entry) {
	e.Chosen = false
	c.log[e.Slot] = &e
	c.last = max(c.last, e.Slot)
	c.unstable = append(c.unstable, e)
}

// promise raises the promised ballot (durably, with the next Ready).
func (c *Core) promise(b Ballot) {
	if c.hs.Promised.Less(b) {
		c.hs.Promised = b
		c.hsDirty = true
	}
}

func (c *Core) setCommit(s uint64) {
	if s <= c.hs.Commit {
		return
	}
	c.hs.Commit = s
	c.hsDirty = true
	// A leader may learn slots chosen by a fetch or snapshot it asked for
	// before it led: they need no more votes.
	for slot := range c.lead.votes {
		if slot <= s {
			delete(c.lead.votes, slot)
		}
	}
}

func (c *Core) resetElectionTimer() {
	f := 1 << min(c.backoff, 3)
	span := max(c.cfg.ElectionTicks/2, 1) * f
	c.electionDeadline = c.now + uint64(c.cfg.ElectionTicks) + uint64(c.rnd.Intn(span))
}

func (c *Core) setRole(r Role, leader NodeID) {
	if c.role == Leader && r != Leader {
		c.lostLead = true
		c.lead = leaderState{}
	}
	if r != Candidate {
		c.cand = candidateState{}
	}
	if c.role != r || c.leader != leader {
		c.roleDirty = true
	}
	c.role, c.leader = r, leader
}

// becomeFollower steps down (if leading or campaigning) and follows leader.
func (c *Core) becomeFollower(leader NodeID) {
	c.setRole(Follower, leader)
}
