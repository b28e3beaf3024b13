package paxos

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"slices"
	"strings"
)

// The simulation: N cores, their MemoryStorage "disks", a lossy network and a
// fault schedule, all driven by one seeded random source, so a failing seed
// replays exactly.

type simOptions struct {
	nodes     int
	steps     int // chaos steps, before the final heal-and-progress phase
	drop      float64
	dup       float64
	maxDelay  int
	faults    bool // crashes, pauses and partitions
	wipes     bool // disk loss of a replica (one at a time)
	propose   float64
	snapEvery uint64
	// faultEvery is the mean number of steps between faults.
	faultEvery int
	// forgetPromise breaks the acceptors on purpose: a restarted replica
	// loses its promised ballot. The checker must catch it.
	forgetPromise bool
	// forgetAccepts breaks the acceptors on purpose: a restarted replica
	// loses the entries it accepted that it did not know to be chosen.
	forgetAccepts bool
	// longLease breaks the leader on purpose: it counts its lease ten
	// times as long as the acceptors grant it and trusts it without checking
	// that it still hears a majority. The lease check must fire.
	longLease bool
	trace     bool
}

func defaultSimOptions() simOptions {
	return simOptions{nodes: 5, steps: 1500, drop: 0.05, dup: 0.02, maxDelay: 4, faults: true, wipes: true,
		propose: 0.3, snapEvery: 24, faultEvery: 40}
}

type simResult struct {
	steps, msgs, commits, faults, leaderChanges int
	violations                                  []string
	trace                                       []string
}

type simMsg struct {
	m  Message
	at uint64
}

type simSM struct {
	applied [][]byte
}

func (s *simSM) snapshot() []byte {
	var b bytes.Buffer
	for _, c := range s.applied {
		b.Write(binary.AppendUvarint(nil, uint64(len(c))))
		b.Write(c)
	}
	return b.Bytes()
}

func (s *simSM) restore(data []byte) {
	s.applied = nil
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		data = data[k:]
		s.applied = append(s.applied, slices.Clone(data[:n]))
		data = data[n:]
	}
}

type simNode struct {
	id          NodeID
	core        *Core
	disk        *MemoryStorage
	sm          simSM
	up          bool
	pausedUntil uint64
	pausedAt    uint64
	incarnation int64
	// As Node does: the HardState last saved, and a newer one that moved
	// only the commit index and waits to ride on the next save. The
	// simulation never writes it by itself (Node does after a few ticks),
	// so a crash loses as much of the commit index as it can.
	saved HardState
	lazy  *HardState
}

type sim struct {
	opt    simOptions
	rnd    *rand.Rand
	seed   int64
	now    uint64
	nodes  []*simNode
	peers  []NodeID
	net    []simMsg
	cut    map[[2]NodeID]bool
	chk    *checker
	res    simResult
	nextID int
	leader NodeID
	wiped  NodeID
}

func simConfig(id NodeID, peers []NodeID, seed int64) Config {
	cfg := DefaultConfig(id, peers)
	cfg.ElectionTicks = 10
	cfg.HeartbeatTicks = 2
	cfg.LeaseTicks = 8
	cfg.DriftTicks = 1
	cfg.MaxBatchCmds = 4
	cfg.MaxInflightSlots = 8
	cfg.MaxFetchEntries = 16
	cfg.Rand = rand.New(rand.NewSource(seed))
	return cfg
}

func newSim(seed int64, opt simOptions) *sim {
	s := &sim{opt: opt, rnd: rand.New(rand.NewSource(seed)), seed: seed, cut: map[[2]NodeID]bool{}, chk: newChecker()}
	for i := 1; i <= opt.nodes; i++ {
		s.peers = append(s.peers, NodeID(i))
	}
	for _, id := range s.peers {
		n := &simNode{id: id, disk: NewMemoryStorage(false)}
		s.nodes = append(s.nodes, n)
		s.start(n)
	}
	return s
}

func (s *sim) tracef(format string, args ...any) {
	if s.opt.trace {
		s.res.trace = append(s.res.trace, fmt.Sprintf("t=%d ", s.now)+fmt.Sprintf(format, args...))
	}
}

func (s *sim) node(id NodeID) *simNode { return s.nodes[id-1] }

// start boots a replica from its disk, as a restarted process would.
func (s *sim) start(n *simNode) {
	hs, snap, entries, err := n.disk.Load()
	if err != nil {
		panic(err)
	}
	if s.opt.forgetPromise {
		hs.Promised = Ballot{}
	}
	if s.opt.forgetAccepts {
		kept := entries[:0]
		for _, e := range entries {
			if e.Slot <= hs.Commit {
				kept = append(kept, e)
			}
		}
		entries = kept
	}
	n.incarnation++
	n.saved, n.lazy = hs, nil
	core, err := NewCore(simConfig(n.id, s.peers, s.seed*1000+int64(n.id)*10+n.incarnation), hs, snap, entries)
	if err != nil {
		panic(err)
	}
	if s.opt.longLease {
		core.cfg.DriftTicks = -9 * core.cfg.LeaseTicks
		core.cfg.CheckQuorum = false
	}
	n.core = core
	n.sm = simSM{}
	if !snap.IsZero() {
		n.sm.restore(snap.Data)
	}
	n.up = true
	n.pausedUntil = 0
	s.chk.restarted(n.id, hs.Commit)
	s.process(n)
}

// save persists as Node.save does: a lazy HardState rides on a save
// without one.
func (s *sim) save(n *simNode, hs *HardState, entries []Entry, snap *Snapshot) {
	if hs == nil {
		hs = n.lazy
	}
	if err := n.disk.Save(hs, entries, snap); err != nil {
		panic(err)
	}
	if hs != nil {
		s.chk.saved(n.id, hs.Commit)
		n.saved, n.lazy = *hs, nil
	}
}

func (s *sim) crash(n *simNode) {
	s.tracef("crash %d", n.id)
	n.up = false
	n.core = nil
	s.res.faults++
}

// process runs one Ready cycle of a replica, the way Node does.
func (s *sim) process(n *simNode) {
	for {
		rd := n.core.Ready()
		if rd.IsEmpty() {
			return
		}
		for _, m := range rd.Early {
			s.send(m)
		}
		if hs := rd.HardState; hs != nil && len(rd.Entries) == 0 && rd.Snapshot == nil &&
			hs.Promised == n.saved.Promised && hs.Recovering == n.saved.Recovering {
			h := *hs
			n.lazy = &h
		} else {
			s.save(n, rd.HardState, rd.Entries, rd.Snapshot)
		}
		for _, m := range rd.Messages {
			s.send(m)
		}
		if rd.Snapshot != nil {
			n.sm.restore(rd.Snapshot.Data)
			if uint64(len(n.sm.applied)) != rd.Snapshot.Index {
				s.chk.fail("snapshot: replica %d restored %d commands, snapshot says %d", n.id, len(n.sm.applied), rd.Snapshot.Index)
			}
		}
		idx := rd.FirstIndex
		for _, e := range rd.Committed {
			s.chk.commit(n.id, e)
			s.res.commits++
			for _, c := range e.Value {
				if uint64(len(n.sm.applied))+1 != idx {
					s.chk.fail("apply: replica %d applies index %d after %d", n.id, idx, len(n.sm.applied))
				}
				n.sm.applied = append(n.sm.applied, c)
				s.chk.apply(n.id, idx, c)
				idx++
			}
		}
		if rd.Status != nil && rd.Status.Role == Leader && s.leader != n.id {
			s.leader = n.id
			s.res.leaderChanges++
			s.tracef("leader %d ballot %s", n.id, rd.Status.Ballot)
		}
		n.core.Advance(rd)
		if len(rd.Committed) > 0 && s.opt.snapEvery > 0 {
			st := n.core.Status()
			if st.Applied-st.Snapshot >= s.opt.snapEvery {
				if n.lazy != nil {
					s.save(n, n.lazy, nil, nil)
				}
				snap := Snapshot{Slot: st.Applied, Index: uint64(len(n.sm.applied)), Data: n.sm.snapshot()}
				if err := n.disk.Compact(snap); err != nil {
					panic(err)
				}
				n.core.Compact(snap)
			}
		}
	}
}

func (s *sim) send(m Message) {
	s.res.msgs++
	if s.rnd.Float64() < s.opt.drop {
		return
	}
	copies := 1
	if s.rnd.Float64() < s.opt.dup {
		copies = 2
	}
	for range copies {
		s.net = append(s.net, simMsg{m: m, at: s.now + 1 + uint64(s.rnd.Intn(s.opt.maxDelay+1))})
	}
}

// deliver hands every due message to its replica, in random order.
func (s *sim) deliver() {
	var due, later []simMsg
	for _, sm := range s.net {
		to := s.node(sm.m.To)
		if sm.at <= s.now && !(to.up && to.pausedUntil > s.now) {
			due = append(due, sm)
		} else {
			later = append(later, sm)
		}
	}
	s.net = later
	s.rnd.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	for _, sm := range due {
		n := s.node(sm.m.To)
		if !n.up || s.cut[[2]NodeID{sm.m.From, sm.m.To}] {
			continue
		}
		n.core.Step(sm.m)
		s.process(n)
	}
}

func (s *sim) tickAll() {
	for _, n := range s.nodes {
		if !n.up || n.pausedUntil > s.now {
			continue
		}
		if n.pausedUntil != 0 {
			// A paused process's monotonic clock ran on while it slept:
			// the node catches up in one jump, as Node does.
			n.core.TickBy(s.now - n.pausedAt)
			s.process(n)
			n.pausedUntil = 0
			continue
		}
		n.core.Tick()
		s.process(n)
	}
}

func (s *sim) checkLeases() {
	var holders []NodeID
	for _, n := range s.nodes {
		if n.up && n.pausedUntil <= s.now {
			if _, ok := n.core.LeaseRead(); ok {
				holders = append(holders, n.id)
			}
		}
	}
	s.chk.leases(s.now, holders)
}

func (s *sim) proposeSome() {
	if s.rnd.Float64() >= s.opt.propose {
		return
	}
	n := s.nodes[s.rnd.Intn(len(s.nodes))]
	if s.rnd.Intn(4) != 0 && s.leader != None {
		n = s.node(s.leader)
	}
	if !n.up || n.pausedUntil > s.now {
		return
	}
	for range 1 + s.rnd.Intn(3) {
		s.nextID++
		cmd := []byte(fmt.Sprintf("c%d", s.nextID))
		s.chk.propose(cmd)
		if n.core.Propose(cmd) != nil {
			break
		}
	}
	s.process(n)
}

func (s *sim) downCount() int {
	d := 0
	for _, n := range s.nodes {
		if !n.up {
			d++
		}
	}
	return d
}

// fault injects one random fault, keeping at most a minority down so that the
// cell can make progress once healed (it must stay safe either way).
func (s *sim) fault() {
	if !s.opt.faults || s.rnd.Intn(s.opt.faultEvery) != 0 {
		return
	}
	n := s.nodes[s.rnd.Intn(len(s.nodes))]
	if s.rnd.Intn(3) == 0 && s.leader != None {
		n = s.node(s.leader) // leader changes mid-batch
	}
	switch s.rnd.Intn(10) {
	case 0, 1:
		if n.up && s.downCount() < (len(s.nodes)-1)/2 {
			s.crash(n)
		}
	case 2, 3:
		for _, d := range s.nodes {
			if !d.up {
				s.tracef("restart %d", d.id)
				s.start(d)
				break
			}
		}
	case 4:
		if n.up && n.pausedUntil <= s.now {
			n.pausedAt = s.now
			n.pausedUntil = s.now + uint64(5+s.rnd.Intn(30))
			s.tracef("pause %d until %d", n.id, n.pausedUntil)
			s.res.faults++
		}
	case 5:
		s.partition(n.id)
	case 6, 7:
		s.cut = map[[2]NodeID]bool{}
		s.tracef("heal")
	case 8:
		if s.opt.wipes && s.wiped == None && n.up && s.downCount() == 0 {
			s.tracef("wipe %d", n.id)
			s.crash(n)
			n.disk = NewMemoryStorage(true)
			s.chk.wiped(n.id)
			s.wiped = n.id
			s.start(n)
		}
	case 9: // power loss: every replica crashes at once and reboots from disk
		s.tracef("power loss")
		for _, d := range s.nodes {
			if d.up {
				s.crash(d)
			}
		}
		for _, d := range s.nodes {
			s.start(d)
		}
	}
}

// partition cuts the network in one of several shapes around replica x.
func (s *sim) partition(x NodeID) {
	s.cut = map[[2]NodeID]bool{}
	cutBoth := func(a, b NodeID) {
		s.cut[[2]NodeID{a, b}] = true
		s.cut[[2]NodeID{b, a}] = true
	}
	ids := slices.Clone(s.peers)
	s.rnd.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	shape := s.rnd.Intn(4)
	switch shape {
	case 0: // x isolated (often the leader)
		for _, p := range s.peers {
			if p != x {
				cutBoth(x, p)
			}
		}
	case 1: // majority / minority
		k := len(ids) / 2
		for _, a := range ids[:k] {
			for _, b := range ids[k:] {
				cutBoth(a, b)
			}
		}
	case 2: // bridge: ids[0] sees both halves, which do not see each other
		rest := ids[1:]
		k := len(rest) / 2
		for _, a := range rest[:k] {
			for _, b := range rest[k:] {
				cutBoth(a, b)
			}
		}
	case 3: // x sees only one other replica
		for _, p := range s.peers {
			if p != x && p != ids[0] {
				cutBoth(x, p)
			}
		}
	}
	s.res.faults++
	s.tracef("partition shape %d around %d", shape, x)
}

func (s *sim) step() {
	s.now++
	s.res.steps++
	s.tickAll()
	s.deliver()
	s.proposeSome()
	s.fault()
	s.checkLeases()
}

// run drives the chaos phase, then heals everything and checks progress: with
// a majority connected and stable, every command proposed to the leader must
// be applied on every replica within a bounded number of ticks.
func (s *sim) run() simResult {
	for range s.opt.steps {
		s.step()
	}
	s.cut = map[[2]NodeID]bool{}
	for _, n := range s.nodes {
		if !n.up {
			s.start(n)
		}
		if n.pausedUntil > s.now {
			n.pausedUntil = s.now + 1 // resumes (clock caught up) next step
		}
	}
	s.opt.faults, s.opt.drop, s.opt.dup, s.opt.propose = false, 0, 0, 0
	const bound = 400
	var want [][]byte
	deadline := s.now + bound
	for s.now < deadline {
		s.step()
		l := s.stableLeader()
		if l == nil {
			continue
		}
		if want == nil {
			for range 5 {
				s.nextID++
				cmd := []byte(fmt.Sprintf("c%d", s.nextID))
				s.chk.propose(cmd)
				if err := l.core.Propose(cmd); err == nil {
					want = append(want, cmd)
				}
			}
			s.process(l)
		}
		if want != nil && s.allApplied(want) {
			break
		}
	}
	if want == nil || !s.allApplied(want) {
		var st []string
		for _, n := range s.nodes {
			x := n.core.Status()
			st = append(st, fmt.Sprintf("%d:%s leader=%d ballot=%s commit=%d applied=%d snap=%d last=%d recovering=%v",
				n.id, x.Role, x.Leader, x.Ballot, x.Commit, x.Applied, x.Snapshot, x.LastSlot, x.Recovering))
		}
		s.chk.fail("progress: %d ticks after healing, commands %q are not applied everywhere (leader %v)\n%s",
			bound, want, s.stableLeaderID(), strings.Join(st, "\n"))
	}
	s.res.violations = s.chk.violations
	return s.res
}

func (s *sim) stableLeader() *simNode {
	for _, n := range s.nodes {
		if n.up && n.pausedUntil <= s.now && n.core.Role() == Leader {
			if _, ok := n.core.LeaseRead(); ok {
				return n
			}
		}
	}
	return nil
}

func (s *sim) stableLeaderID() NodeID {
	if l := s.stableLeader(); l != nil {
		return l.id
	}
	return None
}

func (s *sim) allApplied(cmds [][]byte) bool {
	for _, n := range s.nodes {
		have := map[string]bool{}
		for _, c := range n.sm.applied {
			have[string(c)] = true
		}
		for _, c := range cmds {
			if !have[string(c)] {
				return false
			}
		}
	}
	return true
}
