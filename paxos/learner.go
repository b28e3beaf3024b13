package paxos

// The learner side: learning which slots are chosen, fetching chosen values
// this replica lacks (or a snapshot when they were compacted), and the rejoin
// of a replica that lost its disk.

type learnerState struct {
	target   uint64 // highest commit index heard of
	source   NodeID // who said so
	fetching bool
	fetchAt  uint64
}

type rejoinState struct {
	target  uint64 // the commit index heard first after boot: catch up past it
	nonce   uint64
	askedAt uint64
	asked   bool
}

// learnCommit handles "every slot up to commit is chosen" from the replica
// leading with ballot b. Learning is per ballot (trap 3): our own copy of a
// slot is the chosen value only if we accepted it under b, the ballot that
// chose it; any other copy may be a stale value that was never chosen, so we
// fetch the chosen one instead.
func (c *Core) learnCommit(from NodeID, b Ballot, commit uint64) {
	for s := c.hs.Commit + 1; s <= commit; s++ {
		e, ok := c.log[s]
		if !ok || e.Ballot != b {
			break
		}
		c.setCommit(s)
	}
	c.noteCommit(from, commit)
}

// noteCommit remembers that from knows slots up to commit are chosen and
// fetches what we lack.
func (c *Core) noteCommit(from NodeID, commit uint64) {
	if commit > c.learn.target {
		c.learn.target = commit
		c.learn.source = from
	}
	if c.hs.Commit < c.learn.target && !c.learn.fetching {
		c.fetch()
	}
}

func (c *Core) fetch() {
	to := c.learn.source
	if c.leader != None && c.leader != c.cfg.ID {
		to = c.leader
	}
	if to == None || to == c.cfg.ID {
		return
	}
	c.learn.fetching = true
	c.learn.fetchAt = c.now
	c.send(Message{Type: MsgFetch, To: to, Slot: c.hs.Commit + 1, Commit: c.learn.target})
}

// tickLearner retries a lost fetch and drives a recovering replica's rejoin.
func (c *Core) tickLearner() {
	if c.learn.fetching && c.now-c.learn.fetchAt >= uint64(2*c.cfg.HeartbeatTicks) {
		c.learn.fetching = false
	}
	if c.hs.Commit < c.learn.target && !c.learn.fetching {
		c.fetch()
	}
	if c.hs.Recovering && c.rejoin.asked && c.now-c.rejoin.askedAt >= uint64(2*c.cfg.ElectionTicks) {
		c.rejoin.asked = false // ask again
	}
}

// onFetch serves chosen entries (or the snapshot, where they were compacted)
// to a replica that lacks them. Only slots at or below our commit index are
// served, so everything sent is chosen.
func (c *Core) onFetch(m Message) {
	resp := Message{Type: MsgFetchResp, To: m.From, Ballot: c.hs.Promised, Commit: c.hs.Commit}
	switch {
	case m.Slot > c.hs.Commit:
	case m.Slot <= c.snap.Slot:
		snap := c.snap
		resp.Snapshot = &snap
	default:
		end := min(c.hs.Commit, m.Slot+uint64(c.cfg.MaxFetchEntries)-1)
		for s := m.Slot; s <= end; s++ {
			e := *c.log[s]
			e.Chosen = true
			resp.Entries = append(resp.Entries, e)
		}
	}
	c.send(resp)
}

func (c *Core) onFetchResp(m Message) {
	if m.Snapshot != nil && m.Snapshot.Slot > c.hs.Commit {
		c.installSnapshot(*m.Snapshot)
	}
	for _, e := range m.Entries {
		if !e.Chosen || e.Slot <= c.hs.Commit {
			continue
		}
		if e.Slot != c.hs.Commit+1 {
			break
		}
		c.store(e)
		c.setCommit(e.Slot)
	}
	c.learn.fetching = false
	c.noteCommit(m.From, m.Commit)
}

// installSnapshot adopts a snapshot of chosen state: the log below it goes,
// the state machine is restored from it by the driver (Ready.Snapshot).
func (c *Core) installSnapshot(s Snapshot) {
	for slot := range c.log {
		if slot <= s.Slot {
			delete(c.log, slot)
		}
	}
	kept := c.unstable[:0]
	for _, e := range c.unstable {
		if e.Slot > s.Slot {
			kept = append(kept, e)
		}
	}
	c.unstable = kept
	c.snap = s
	c.last = max(c.last, s.Slot)
	c.setCommit(s.Slot)
	c.install = &s
}

// rejoinProgress drives a replica that lost its disk (trap 4): it follows the
// leader, catches up past the commit index it first heard, then asks the
// leader for a fresh Phase 1. It votes again only when told that Phase 1
// completed (onRejoinOK), so nothing it promised before the loss can matter.
func (c *Core) rejoinProgress(from NodeID, b Ballot, commit uint64) {
	if c.leader != b.Node {
		c.leader = b.Node
		c.roleDirty = true
	}
	c.lastHeard = c.now
	if c.rejoin.nonce == 0 {
		c.rejoin.nonce = c.rnd.Uint64() | 1
	}
	if c.rejoin.target == 0 {
		c.rejoin.target = max(commit, 1)
	}
	if c.hs.Commit >= c.rejoin.target && !c.rejoin.asked {
		c.rejoin.asked = true
		c.rejoin.askedAt = c.now
		c.send(Message{Type: MsgRejoin, To: from, Tick: c.rejoin.nonce, Commit: c.hs.Commit})
	}
}

// onRejoin is the leader's side: run Phase 1 again under a new ballot, without
// the recovering replica's vote, then let it vote.
func (c *Core) onRejoin(m Message) {
	switch c.role {
	case Leader:
		if nonce, ok := c.lead.rejoin[m.From]; ok && nonce == m.Tick {
			// Phase 1 already ran for this request: say so again.
			c.send(Message{Type: MsgRejoinOK, To: m.From, Ballot: c.ballot, Tick: nonce, Commit: c.hs.Commit})
			return
		}
		c.setRole(Candidate, None)
		c.cand.rejoin = map[NodeID]uint64{m.From: m.Tick}
		c.startPhase1()
	case Candidate:
		if c.cand.phase1 {
			// This Phase 1 may have started before the replica lost its
			// disk; it must ask again after it completes.
			return
		}
	}
}

func (c *Core) onRejoinOK(m Message) {
	if !c.hs.Recovering || m.Tick != c.rejoin.nonce || c.hs.Commit < c.rejoin.target {
		return
	}
	c.hs.Recovering = false
	c.hsDirty = true
	c.promise(m.Ballot)
	c.heardLeader(m.Ballot)
	c.rejoin = rejoinState{}
}
