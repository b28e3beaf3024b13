package paxos

// The acceptor side of a replica: it answers Prepare with a Promise and Accept
// with Accepted, never before the promise or the accept is durable (both go
// out with Ready.Messages, which the driver sends only after the sync), and it
// grants the leader a lease by refusing other Prepares while the leader is
// heard from.

// leaseHeld reports whether this acceptor still refuses Prepares from anyone
// but the leader it last heard.
func (c *Core) leaseHeld() bool { return c.now < c.leaseGranted }

// heardLeader records contact with the leader of ballot b: it renews the lease
// this acceptor grants and keeps it from campaigning.
func (c *Core) heardLeader(b Ballot) {
	if c.role != Follower || c.leader != b.Node {
		c.becomeFollower(b.Node)
	}
	c.lastHeard = c.now
	c.leaseGranted = c.now + uint64(c.cfg.LeaseTicks)
	c.leaseHolder = b.Node
	c.backoff = 0
	c.resetElectionTimer()
}

// onPreVote answers "would you promise a higher ballot now?" without changing
// any state, so that a replica cut off from the leader cannot disrupt it when
// it comes back (it would otherwise raise every acceptor's ballot).
func (c *Core) onPreVote(m Message) {
	// The leader we follow may campaign again (it does so to let a
	// recovering replica rejoin): it holds our lease, so it is no disruption.
	ours := c.leaseHolder == m.From || c.leader == m.From
	grant := !c.hs.Recovering && c.role != Leader && m.Commit >= c.snap.Slot &&
		(ours || (!c.leaseHeld() && (c.leader == None || c.now-c.lastHeard >= uint64(c.cfg.ElectionTicks))))
	// Ballot tells the candidate how high it must go to be heard.
	c.send(Message{Type: MsgPreVoteResp, To: m.From, Ballot: c.hs.Promised, Tick: m.Tick, Reject: !grant})
}

// onPrepare is Phase 1b.
func (c *Core) onPrepare(m Message) {
	switch {
	case c.hs.Recovering:
		c.send(Message{Type: MsgNack, To: m.From, Ballot: m.Ballot, Reason: NackRecovering})
		return
	case m.Ballot.Less(c.hs.Promised):
		c.send(Message{Type: MsgNack, To: m.From, Ballot: c.hs.Promised, Reason: NackBallot})
		return
	case c.leaseHeld() && c.leaseHolder != m.From:
		// A lease we granted may still hold: no new leader until it runs out.
		c.send(Message{Type: MsgNack, To: m.From, Ballot: m.Ballot, Reason: NackLease})
		return
	case m.Slot <= c.snap.Slot:
		// The candidate is behind our snapshot: it cannot learn those
		// slots from a promise. It must catch up first.
		c.send(Message{Type: MsgNack, To: m.From, Ballot: m.Ballot, Reason: NackCompacted, Commit: c.hs.Commit})
		return
	}
	if c.hs.Promised.Less(m.Ballot) && (c.role == Leader || c.role == Candidate) && m.Ballot.Node != c.cfg.ID {
		c.becomeFollower(None)
	}
	c.promise(m.Ballot)
	// Someone is campaigning: give it time before we try ourselves.
	c.resetElectionTimer()
	c.send(Message{Type: MsgPromise, To: m.From, Ballot: m.Ballot, Slot: m.Slot,
		Commit: c.hs.Commit, Entries: c.ownPromiseEntries(m.Slot)})
}

// ownPromiseEntries returns every entry this replica holds at or above from
// (trap 1: all of them, not just one), marking those it knows to be chosen.
func (c *Core) ownPromiseEntries(from uint64) []Entry {
	var out []Entry
	for s := max(from, c.snap.Slot+1); s <= c.last; s++ {
		e, ok := c.log[s]
		if !ok {
			continue
		}
		cp := *e
		cp.Chosen = s <= c.hs.Commit
		out = append(out, cp)
	}
	return out
}

// fromLeader is what Accept and Heartbeat share: a recovering replica only
// learns the commit index; a lower ballot is refused (and its commit index
// still learned: chosen is forever); a higher one is promised, and whoever
// led or campaigned here steps down. It reports whether m comes from the
// leader of the ballot this acceptor now promised.
func (c *Core) fromLeader(m Message) bool {
	if c.hs.Recovering {
		c.learnCommit(m.From, m.Ballot, m.Commit)
		c.rejoinProgress(m.From, m.Ballot, m.Commit)
		return false
	}
	if m.Ballot.Less(c.hs.Promised) {
		c.send(Message{Type: MsgNack, To: m.From, Ballot: c.hs.Promised, Reason: NackBallot})
		c.learnCommit(m.From, m.Ballot, m.Commit)
		return false
	}
	if c.hs.Promised.Less(m.Ballot) && m.Ballot.Node != c.cfg.ID && (c.role == Leader || c.role == Candidate) {
		c.becomeFollower(m.Ballot.Node)
	}
	c.promise(m.Ballot)
	c.heardLeader(m.Ballot)
	return true
}

// onAccept is Phase 2b.
func (c *Core) onAccept(m Message) {
	if !c.fromLeader(m) {
		return
	}
	slots := make([]uint64, 0, len(m.Entries))
	for _, e := range m.Entries {
		slots = append(slots, e.Slot)
		if e.Slot <= c.hs.Commit {
			// Already chosen here; the leader's value for it is the
			// chosen one, so acking is honest and storing is needless.
			continue
		}
		if cur, ok := c.log[e.Slot]; ok && cur.Ballot == m.Ballot {
			continue // duplicate
		}
		c.store(Entry{Slot: e.Slot, Ballot: m.Ballot, Value: e.Value})
	}
	c.send(Message{Type: MsgAccepted, To: m.From, Ballot: m.Ballot, Slots: slots, Tick: m.Tick, Commit: c.hs.Commit})
	c.learnCommit(m.From, m.Ballot, m.Commit)
}

// onHeartbeat renews the lease and carries the commit index.
func (c *Core) onHeartbeat(m Message) {
	if !c.fromLeader(m) {
		return
	}
	// The ack must follow the sync of a raised promise, so it goes late.
	c.send(Message{Type: MsgHeartbeatResp, To: m.From, Ballot: m.Ballot, Tick: m.Tick, Commit: c.hs.Commit})
	c.learnCommit(m.From, m.Ballot, m.Commit)
}
