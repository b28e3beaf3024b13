package paxos

import "slices"

// The proposer side: campaigning (pre-vote, then Phase 1 once for every slot
// above the commit index), becoming the distinguished proposer, and Phase 2
// for as long as the ballot stands.

type candidateState struct {
	prevote  bool
	attempt  uint64 // the tick the pre-vote started; replies echo it
	grants   map[NodeID]bool
	maxRound uint64

	phase1   bool
	fromSlot uint64
	promises map[NodeID][]Entry
	// rejoin lists recovering replicas (with their nonces) that asked for
	// this fresh Phase 1; they may vote once it completes.
	rejoin map[NodeID]uint64
}

type leaderState struct {
	pending    [][]byte
	next       uint64                     // next free slot
	votes      map[uint64]map[NodeID]bool // slots proposed and not yet chosen
	ackTick    map[NodeID]uint64          // highest send tick echoed by each peer
	lastAck    map[NodeID]uint64          // local time of the last ack from each peer
	leaseUntil uint64
	lastBeat   uint64
	readyFrom  uint64 // commit must reach this before lease reads are served
	sentCommit uint64
	rejoin     map[NodeID]uint64 // recovering replicas asking for a fresh Phase 1
}

// campaignTimeout fires when no leader was heard for the election timeout.
func (c *Core) campaignTimeout() {
	if c.hs.Recovering {
		// A replica that lost its disk never campaigns; it asks to rejoin.
		c.resetElectionTimer()
		return
	}
	if c.role == Candidate {
		c.backoff++ // the last attempt failed: spread out
	}
	c.setRole(Candidate, None)
	c.cand = candidateState{prevote: true, attempt: c.now, grants: map[NodeID]bool{c.cfg.ID: true},
		maxRound: c.hs.Promised.Round}
	c.resetElectionTimer()
	if len(c.cand.grants) >= c.quorum {
		c.startPhase1()
		return
	}
	c.broadcast(Message{Type: MsgPreVote, Tick: c.now, Commit: c.hs.Commit}, true)
}

func (c *Core) onPreVoteResp(m Message) {
	if c.role != Candidate || !c.cand.prevote || m.Tick != c.cand.attempt {
		return
	}
	c.cand.maxRound = max(c.cand.maxRound, m.Ballot.Round)
	if m.Reject {
		return
	}
	c.cand.grants[m.From] = true
	if len(c.cand.grants) >= c.quorum {
		c.startPhase1()
	}
}

// startPhase1 picks a ballot above any this replica promised or heard of
// (derived from durable state: trap 2), promises it to itself, and asks every
// acceptor for a promise covering every slot above the commit index.
func (c *Core) startPhase1() {
	rejoin := c.cand.rejoin
	b := Ballot{Round: max(c.hs.Promised.Round, c.cand.maxRound) + 1, Node: c.cfg.ID}
	c.hs.Promised = b
	c.hsDirty = true
	c.ballot = b
	c.setRole(Candidate, None)
	c.cand = candidateState{phase1: true, fromSlot: c.hs.Commit + 1, promises: map[NodeID][]Entry{}, rejoin: rejoin}
	// Give Phase 1 a full election timeout before we give up on it.
	c.resetElectionTimer()
	// Our own promise counts once it is durable (Advance).
	c.selfPromise = true
	c.broadcast(Message{Type: MsgPrepare, Ballot: b, Slot: c.cand.fromSlot, Commit: c.hs.Commit}, false)
}

func (c *Core) onPromise(m Message) {
	if c.role != Candidate || !c.cand.phase1 || m.Ballot != c.ballot {
		return
	}
	c.recordPromise(m.From, m.Entries, false)
}

func (c *Core) recordPromise(from NodeID, entries []Entry, _ bool) {
	c.cand.promises[from] = entries
	if len(c.cand.promises) >= c.quorum {
		c.becomeLeader()
	}
}

// becomeLeader completes Phase 1: for every slot above the commit index that
// any promise mentions, re-propose the value accepted under the highest ballot
// (or the chosen value, where a promiser knows it), and fill holes with
// no-ops. From here on new commands go straight to Phase 2.
func (c *Core) becomeLeader() {
	best := map[uint64]Entry{}
	top := c.hs.Commit
	for _, entries := range c.cand.promises {
		for _, e := range entries {
			if e.Slot <= c.hs.Commit {
				continue
			}
			top = max(top, e.Slot)
			cur, ok := best[e.Slot]
			switch {
			case !ok, e.Chosen && !cur.Chosen, !cur.Chosen && cur.Ballot.Less(e.Ballot):
				best[e.Slot] = e
			}
		}
	}
	rejoin := c.cand.rejoin
	c.setRole(Leader, c.cfg.ID)
	c.lead = leaderState{
		next:      top + 1,
		votes:     map[uint64]map[NodeID]bool{},
		ackTick:   map[NodeID]uint64{},
		lastAck:   map[NodeID]uint64{},
		readyFrom: top,
		rejoin:    rejoin,
	}
	if c.lead.rejoin == nil {
		c.lead.rejoin = map[NodeID]uint64{}
	}
	for _, p := range c.cfg.Peers {
		c.lead.lastAck[p] = c.now // grace before the quorum check
	}
	c.backoff = 0
	var entries []Entry
	for s := c.hs.Commit + 1; s <= top; s++ {
		e := Entry{Slot: s, Ballot: c.ballot}
		if b, ok := best[s]; ok {
			e.Value = b.Value
		}
		entries = append(entries, c.propose(e))
	}
	c.renewOwnLease()
	c.broadcast(Message{Type: MsgAccept, Ballot: c.ballot, Entries: entries, Commit: c.hs.Commit, Tick: c.now}, true)
	c.lead.sentCommit = c.hs.Commit
	// Recovering replicas that asked for this Phase 1 may vote from now on:
	// it started after they lost their state and completed without them.
	for id, nonce := range rejoin {
		c.send(Message{Type: MsgRejoinOK, To: id, Ballot: c.ballot, Tick: nonce, Commit: c.hs.Commit})
	}
}

// propose stores e as accepted by ourselves (counted after the sync) and opens
// its vote.
func (c *Core) propose(e Entry) Entry {
	c.store(e)
	c.selfAccepts = append(c.selfAccepts, e.Slot)
	c.lead.votes[e.Slot] = map[NodeID]bool{}
	return e
}

// renewOwnLease is the leader's acceptor granting its own lease and the
// leader counting its own ack of what it sends now.
func (c *Core) renewOwnLease() {
	c.lastHeard = c.now
	c.leaseGranted = c.now + uint64(c.cfg.LeaseTicks)
	c.leaseHolder = c.cfg.ID
	c.lead.lastBeat = c.now
	c.lead.ackTick[c.cfg.ID] = c.now
	c.updateLease()
}

// packProposals turns pending commands into slots: as many commands per slot
// as the batch bounds allow, as many slots as the pipeline allows.
func (c *Core) packProposals() {
	var entries []Entry
	for len(c.lead.pending) > 0 && len(c.lead.votes) < c.cfg.MaxInflightSlots {
		n, size := 0, 0
		for n < len(c.lead.pending) && n < c.cfg.MaxBatchCmds {
			sz := len(c.lead.pending[n])
			if n > 0 && size+sz > c.cfg.MaxBatchBytes {
				break
			}
			size += sz
			n++
		}
		v := Value(slices.Clone(c.lead.pending[:n]))
		c.lead.pending = c.lead.pending[n:]
		entries = append(entries, c.propose(Entry{Slot: c.lead.next, Ballot: c.ballot, Value: v}))
		c.lead.next++
	}
	if len(c.lead.pending) == 0 {
		c.lead.pending = nil
	}
	if len(entries) > 0 {
		c.renewOwnLease()
		c.broadcast(Message{Type: MsgAccept, Ballot: c.ballot, Entries: entries, Commit: c.hs.Commit, Tick: c.now}, true)
		c.lead.sentCommit = c.hs.Commit
	}
}

// flushCommit tells followers about a commit index that no Accept carried.
func (c *Core) flushCommit() {
	if c.hs.Commit > c.lead.sentCommit {
		c.renewOwnLease()
		c.broadcast(Message{Type: MsgHeartbeat, Ballot: c.ballot, Commit: c.hs.Commit, Tick: c.now}, true)
		c.lead.sentCommit = c.hs.Commit
	}
}

func (c *Core) onAccepted(m Message) {
	if c.role != Leader || m.Ballot != c.ballot {
		return
	}
	c.noteAck(m.From, m.Tick)
	c.recordAccepted(m.From, m.Ballot, m.Slots)
}

func (c *Core) onHeartbeatResp(m Message) {
	if c.role != Leader || m.Ballot != c.ballot {
		return
	}
	c.noteAck(m.From, m.Tick)
}

func (c *Core) noteAck(from NodeID, tick uint64) {
	c.lead.lastAck[from] = c.now
	if tick > c.lead.ackTick[from] && tick <= c.now {
		c.lead.ackTick[from] = tick
		c.updateLease()
	}
}

// updateLease: the lease runs from the send time of the newest message a
// majority acknowledged, for LeaseTicks minus the drift bound (trap 8).
func (c *Core) updateLease() {
	ticks := make([]uint64, 0, len(c.lead.ackTick))
	for _, t := range c.lead.ackTick {
		ticks = append(ticks, t)
	}
	if len(ticks) < c.quorum {
		return
	}
	slices.Sort(ticks)
	t := ticks[len(ticks)-c.quorum]
	until := t + uint64(c.cfg.LeaseTicks-c.cfg.DriftTicks)
	if until > c.lead.leaseUntil {
		c.lead.leaseUntil = until
	}
}

// recordAccepted counts votes for our ballot and advances the commit index
// over every slot a majority accepted, in order.
func (c *Core) recordAccepted(from NodeID, b Ballot, slots []uint64) {
	if b != c.ballot {
		return
	}
	for _, s := range slots {
		if v, ok := c.lead.votes[s]; ok {
			v[from] = true
		}
	}
	for {
		s := c.hs.Commit + 1
		v, ok := c.lead.votes[s]
		if !ok || len(v) < c.quorum {
			break
		}
		delete(c.lead.votes, s)
		c.setCommit(s)
	}
}

// tickLeader sends heartbeats, retransmits unacknowledged accepts, and steps
// down when a majority has not been heard for an election timeout.
func (c *Core) tickLeader() {
	alive := 0
	for _, p := range c.cfg.Peers {
		if p == c.cfg.ID || c.now-c.lead.lastAck[p] <= uint64(c.cfg.ElectionTicks) {
			alive++
		}
	}
	if c.cfg.CheckQuorum && alive < c.quorum {
		c.becomeFollower(None)
		c.resetElectionTimer()
		return
	}
	if c.now-c.lead.lastBeat < uint64(c.cfg.HeartbeatTicks) {
		return
	}
	c.renewOwnLease()
	c.broadcast(Message{Type: MsgHeartbeat, Ballot: c.ballot, Commit: c.hs.Commit, Tick: c.now}, true)
	c.lead.sentCommit = c.hs.Commit
	if len(c.lead.votes) == 0 {
		return
	}
	open := make([]uint64, 0, len(c.lead.votes))
	for s := range c.lead.votes {
		open = append(open, s)
	}
	slices.Sort(open)
	for _, p := range c.cfg.Peers {
		if p == c.cfg.ID {
			continue
		}
		var resend []Entry
		for _, s := range open {
			if !c.lead.votes[s][p] && len(resend) < c.cfg.MaxFetchEntries {
				resend = append(resend, *c.log[s])
			}
		}
		if len(resend) > 0 {
			c.sendEarly(Message{Type: MsgAccept, To: p, Ballot: c.ballot, Entries: resend, Commit: c.hs.Commit, Tick: c.now})
		}
	}
}

// onNack handles a refusal. A higher ballot means another proposer moved on:
// step down at once (trap 5: whatever we had in flight has an unknown
// outcome, which Ready.LostLeadership reports).
func (c *Core) onNack(m Message) {
	switch m.Reason {
	case NackBallot:
		if c.role == Follower || !c.ballot.Less(m.Ballot) {
			c.promise(m.Ballot)
			return
		}
		c.promise(m.Ballot)
		c.backoff++
		c.becomeFollower(None)
		c.resetElectionTimer()
	case NackLease:
		if c.role == Candidate && c.cand.phase1 && m.Ballot == c.ballot {
			// Someone still holds a lease; let it be, and try later.
			c.becomeFollower(None)
			c.resetElectionTimer()
		}
	case NackCompacted:
		if c.role == Candidate && m.Ballot == c.ballot {
			c.becomeFollower(None)
			c.resetElectionTimer()
		}
		c.noteCommit(m.From, m.Commit)
	case NackRecovering:
		// It does not vote; nothing to do.
	}
}

// LeaseRead reports whether a linearizable read may be served from this
// replica's state without a log round: it must lead, hold a lease that a
// majority granted, and have chosen every slot its Phase 1 found open. The
// read must then wait until the returned slot is applied.
func (c *Core) LeaseRead() (slot uint64, ok bool) {
	if c.role != Leader || c.now >= c.lead.leaseUntil || c.hs.Commit < c.lead.readyFrom {
		return 0, false
	}
	return c.hs.Commit, true
}
