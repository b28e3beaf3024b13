package paxos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// NodeConfig wires a Core to real storage, a transport, a state machine and
// a clock.
type NodeConfig struct {
	Core         Config
	Storage      Storage
	Transport    Transport
	StateMachine StateMachine
	// TickInterval is the length of one logical tick (default 10ms).
	TickInterval time.Duration
	// SnapshotEvery takes a state-machine snapshot (and truncates the log
	// below it) every this many applied slots (default 10,000).
	SnapshotEvery uint64
	// Observer, when set, is told of every protocol message sent or
	// received and of every role change. It is called from the node's loop
	// and must not block.
	Observer func(FlowEvent)
	Logger   hclog.Logger
}

// FlowEvent reports one protocol message (or a role change) for metrics and
// the operator's view of the consensus flow.
type FlowEvent struct {
	Time     time.Time
	Sent     bool // sent by this replica (else received)
	Type     MsgType
	From, To NodeID
	Ballot   Ballot
	Slot     uint64 // first slot the message is about (commit index for commits)
	Slots    int    // how many slots it carries
	OK       bool   // false for nacks and refused pre-votes
	Status   *Status
}

// Result is what Propose returns: the state machine's result and the index
// the command was applied at.
type Result struct {
	Index uint64
	Value any
}

// Node runs one replica: a goroutine that owns the Core, feeds it ticks,
// messages and proposals, and handles each Ready (persist with sync, send,
// apply) before the next input.
type Node struct {
	cfg    NodeConfig
	log    hclog.Logger
	core   *Core
	propCh chan proposal
	readCh chan readReq
	stopCh chan struct{}
	doneCh chan struct{}

	proposer uint64 // unique per process life: node id and a random boot nonce
	seq      atomic.Uint64

	// Owned by the loop.
	waiting    map[uint64]chan propResult
	readWaits  []readWait
	appliedIdx uint64
	// saved is the HardState last made durable. lazy, when set, is a newer
	// HardState that differs from saved only in Commit and is not yet
	// written: a commit index may lag on disk (see lazyCommitTicks), so it
	// rides on the next synced write instead of costing one of its own.
	saved     HardState
	lazy      *HardState
	lazyTicks int
	// snapOffset delays this replica's first snapshot (see snapshotDue);
	// bootSnap is the snapshot slot it started from.
	snapOffset uint64
	bootSnap   uint64

	// lastTick is when the core's clock was last advanced: the clock follows
	// elapsed monotonic time, not the number of ticker events, which a
	// stopped process (SIGSTOP, a long pause) never receives.
	lastTick time.Time

	status  atomic.Pointer[Status]
	errMu   sync.Mutex
	err     error
	applied atomic.Uint64 // last applied slot
}

type proposal struct {
	cmd []byte
	seq uint64
	ch  chan propResult
}

type propResult struct {
	res Result
	err error
}

type readReq struct {
	ch chan readResult
}

type readResult struct {
	slot uint64
	err  error
}

type readWait struct {
	slot uint64
	ch   chan readResult
}

const (
	headerLen    = 17
	kindCommand  = 0
	kindBarrier  = 1
	proposeQueue = 4096
	// lazyCommitTicks is how long a commit-only HardState may wait for a
	// write to ride on before it is written by itself.
	lazyCommitTicks = 5
)

// NewNode loads the replica's durable state, restores the state machine from
// the latest snapshot, and returns a node ready to Start.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 10 * time.Millisecond
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Core.Rand == nil {
		cfg.Core.Rand = rand.New(rand.NewSource(time.Now().UnixNano() ^ int64(cfg.Core.ID)))
	}
	hs, snap, entries, err := cfg.Storage.Load()
	if err != nil {
		return nil, fmt.Errorf("loading durable state: %w", err)
	}
	if !snap.IsZero() {
		if err := cfg.StateMachine.Restore(snap.Data); err != nil {
			return nil, fmt.Errorf("restoring snapshot at slot %d: %w", snap.Slot, err)
		}
	}
	core, err := NewCore(cfg.Core, hs, snap, entries)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger.Named("paxos"),
		core:       core,
		propCh:     make(chan proposal, proposeQueue),
		readCh:     make(chan readReq, proposeQueue),
		stopCh:     make(chan struct{}),
		doneCh:     make(chan struct{}),
		proposer:   uint64(cfg.Core.ID)<<32 | uint64(cfg.Core.Rand.Uint32()),
		waiting:    map[uint64]chan propResult{},
		appliedIdx: snap.Index,
		saved:      hs,
		bootSnap:   snap.Slot,
	}
	peers := slices.Sorted(slices.Values(cfg.Core.Peers))
	if i := slices.Index(peers, cfg.Core.ID); i > 0 {
		n.snapOffset = cfg.SnapshotEvery * uint64(i) / uint64(len(peers))
	}
	n.applied.Store(snap.Slot)
	st := core.Status()
	n.status.Store(&st)
	n.log.Info("replica loaded", "id", cfg.Core.ID, "promised", hs.Promised, "commit", hs.Commit,
		"snapshot", snap.Slot, "entries", len(entries), "recovering", hs.Recovering)
	return n, nil
}

// Start runs the node's loop until Stop.
func (n *Node) Start() { go n.run() }

// Stop ends the loop, fails whatever waits, and returns when the loop is
// done. It does not close the storage or the transport: their owner does.
func (n *Node) Stop() {
	select {
	case <-n.stopCh:
	default:
		close(n.stopCh)
	}
	<-n.doneCh
}

// Done is closed when the loop has ended (Stop, or a fatal storage error).
func (n *Node) Done() <-chan struct{} { return n.doneCh }

// Err returns the fatal error that ended the loop, if any.
func (n *Node) Err() error {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.err
}

// Status returns the latest summary of the replica's protocol state.
func (n *Node) Status() Status { return *n.status.Load() }

// AppliedSlot returns the last slot applied to the state machine.
func (n *Node) AppliedSlot() uint64 { return n.applied.Load() }

// Propose submits cmd and waits until it is chosen and applied on this
// replica, then returns the state machine's result (trap 6: the proposer
// reads its own write). ErrNotLeader: not proposed, go to the leader.
// ErrOutcomeUnknown: leadership was lost in flight; the command may still be
// chosen, so retry only idempotently.
func (n *Node) Propose(ctx context.Context, cmd []byte) (Result, error) {
	return n.propose(ctx, kindCommand, cmd)
}

func (n *Node) propose(ctx context.Context, kind byte, cmd []byte) (Result, error) {
	seq := n.seq.Add(1)
	buf := make([]byte, headerLen+len(cmd))
	buf[0] = kind
	binary.BigEndian.PutUint64(buf[1:], n.proposer)
	binary.BigEndian.PutUint64(buf[9:], seq)
	copy(buf[headerLen:], cmd)
	p := proposal{cmd: buf, seq: seq, ch: make(chan propResult, 1)}
	select {
	case n.propCh <- p:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-n.doneCh:
		return Result{}, ErrStopped
	}
	select {
	case r := <-p.ch:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-n.doneCh:
		return Result{}, ErrStopped
	}
}

// LinearizableRead returns once the local state machine reflects every write
// that completed before the call: under the leader lease without a log round
// (the lease read of Paxos Made Live), otherwise by a barrier through the log.
// Only the leader serves it (ErrNotLeader elsewhere).
func (n *Node) LinearizableRead(ctx context.Context) error {
	r := readReq{ch: make(chan readResult, 1)}
	select {
	case n.readCh <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.doneCh:
		return ErrStopped
	}
	var res readResult
	select {
	case res = <-r.ch:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.doneCh:
		return ErrStopped
	}
	if res.err == nil {
		return nil
	}
	if !errors.Is(res.err, errNoLease) {
		return res.err
	}
	_, err := n.propose(ctx, kindBarrier, nil)
	return err
}

var errNoLease = errors.New("paxos: no lease")

func (n *Node) run() {
	defer close(n.doneCh)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	n.lastTick = time.Now()
	recv := n.cfg.Transport.Receive()
	if err := n.handleReady(); err != nil {
		n.fail(err)
		return
	}
	for {
		select {
		case <-n.stopCh:
			_ = n.flushLazy()
			n.fail(ErrStopped)
			return
		case <-ticker.C:
			n.advanceClock()
			if n.lazy != nil {
				if n.lazyTicks++; n.lazyTicks >= lazyCommitTicks {
					if err := n.flushLazy(); err != nil {
						n.fail(err)
						return
					}
				}
			}
		case m, ok := <-recv:
			if !ok {
				recv = nil
				continue
			}
			n.step(m)
		case p := <-n.propCh:
			n.addProposal(p)
		case r := <-n.readCh:
			n.addRead(r)
		}
		// Drain whatever else is queued so that one Ready (one sync)
		// covers it all: this is the group commit.
		n.drain(recv)
		if err := n.handleReady(); err != nil {
			n.fail(err)
			return
		}
	}
}

func (n *Node) drain(recv <-chan Message) {
	for range 1024 {
		select {
		case m, ok := <-recv:
			if !ok {
				return
			}
			n.step(m)
		case p := <-n.propCh:
			n.addProposal(p)
		case r := <-n.readCh:
			n.addRead(r)
		default:
			return
		}
	}
}

// advanceClock ticks the core for the monotonic time that passed since the
// last tick, in one jump when that is more than one tick. It runs before any
// input is handled, so a replica that was stopped (SIGSTOP, a long GC or VM
// pause) sees its lease and timeouts run out before it serves a read or takes
// a proposal: counting ticker events instead would lose the stopped time
// (a Ticker delivers one event after any pause) and a resumed leader would
// serve stale reads from a lease that ran out long ago.
func (n *Node) advanceClock() {
	due := uint64(time.Since(n.lastTick) / n.cfg.TickInterval)
	if due == 0 {
		return
	}
	n.core.TickBy(due)
	n.lastTick = n.lastTick.Add(time.Duration(due) * n.cfg.TickInterval)
}

func (n *Node) step(m Message) {
	n.advanceClock()
	n.observe(m, false)
	n.core.Step(m)
}

func (n *Node) addProposal(p proposal) {
	n.advanceClock()
	if err := n.core.Propose(p.cmd); err != nil {
		p.ch <- propResult{err: err}
		return
	}
	n.waiting[p.seq] = p.ch
}

func (n *Node) addRead(r readReq) {
	n.advanceClock()
	if n.core.Role() != Leader {
		r.ch <- readResult{err: ErrNotLeader}
		return
	}
	slot, ok := n.core.LeaseRead()
	if !ok {
		r.ch <- readResult{err: errNoLease}
		return
	}
	if slot <= n.applied.Load() {
		r.ch <- readResult{slot: slot}
		return
	}
	n.readWaits = append(n.readWaits, readWait{slot: slot, ch: r.ch})
}

// handleReady runs Ready batches until the core has nothing more to say.
func (n *Node) handleReady() error {
	for {
		rd := n.core.Ready()
		if rd.IsEmpty() {
			return nil
		}
		for _, m := range rd.Early {
			n.observe(m, true)
			n.cfg.Transport.Send(m)
		}
		if n.commitOnly(rd) {
			// Only the commit index moved: nothing in this Ready depends on
			// its being durable (Accepts already carry it before any sync),
			// and a lower commit index on disk is still true after a crash
			// (every slot at or below it is chosen and durable), so the
			// slots above it are learned again. It rides on the next sync.
			hs := *rd.HardState
			if n.lazy == nil {
				n.lazyTicks = 0
			}
			n.lazy = &hs
		} else if rd.HardState != nil || len(rd.Entries) > 0 || rd.Snapshot != nil {
			if err := n.save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
				return err
			}
		}
		for _, m := range rd.Messages {
			n.observe(m, true)
			n.cfg.Transport.Send(m)
		}
		if rd.Snapshot != nil {
			if err := n.cfg.StateMachine.Restore(rd.Snapshot.Data); err != nil {
				return fmt.Errorf("restoring snapshot at slot %d: %w", rd.Snapshot.Slot, err)
			}
			n.appliedIdx = rd.Snapshot.Index
			n.applied.Store(rd.Snapshot.Slot)
			n.log.Info("snapshot installed", "slot", rd.Snapshot.Slot, "index", rd.Snapshot.Index)
		}
		if rd.LostLeadership {
			n.failWaiting(ErrOutcomeUnknown)
		}
		n.apply(rd)
		if rd.Status != nil {
			n.log.Info("role changed", "role", rd.Status.Role, "leader", rd.Status.Leader, "ballot", rd.Status.Ballot)
			if n.cfg.Observer != nil {
				st := *rd.Status
				n.cfg.Observer(FlowEvent{Time: time.Now(), Status: &st, OK: true})
			}
		}
		n.core.Advance(rd)
		st := n.core.Status()
		n.status.Store(&st)
		if err := n.maybeSnapshot(); err != nil {
			return err
		}
	}
}

// commitOnly reports whether rd's only durable change is a higher commit
// index: no entries, no snapshot, and the promise and the recovering flag
// as last saved.
func (n *Node) commitOnly(rd Ready) bool {
	hs := rd.HardState
	return hs != nil && len(rd.Entries) == 0 && rd.Snapshot == nil &&
		hs.Promised == n.saved.Promised && hs.Recovering == n.saved.Recovering
}

// save persists with one synced write; a lazy HardState is superseded by
// hs, or written with the entries when hs is nil.
func (n *Node) save(hs *HardState, entries []Entry, snap *Snapshot) error {
	if hs == nil {
		hs = n.lazy
	}
	if err := n.cfg.Storage.Save(hs, entries, snap); err != nil {
		return fmt.Errorf("persisting: %w", err)
	}
	if hs != nil {
		n.saved = *hs
		n.lazy = nil
	}
	return nil
}

// flushLazy writes a lazy HardState by itself.
func (n *Node) flushLazy() error {
	if n.lazy == nil {
		return nil
	}
	return n.save(n.lazy, nil, nil)
}

func (n *Node) apply(rd Ready) {
	if len(rd.Committed) == 0 {
		return
	}
	idx := rd.FirstIndex
	for _, e := range rd.Committed {
		for _, c := range e.Value {
			if len(c) < headerLen {
				// Not ours to interpret; count it and move on.
				idx++
				continue
			}
			var val any
			if c[0] == kindCommand {
				val = n.cfg.StateMachine.Apply(idx, c[headerLen:])
			}
			n.appliedIdx = idx
			if binary.BigEndian.Uint64(c[1:]) == n.proposer {
				seq := binary.BigEndian.Uint64(c[9:])
				if ch, ok := n.waiting[seq]; ok {
					ch <- propResult{res: Result{Index: idx, Value: val}}
					delete(n.waiting, seq)
				}
			}
			idx++
		}
		n.applied.Store(e.Slot)
	}
	kept := n.readWaits[:0]
	applied := n.applied.Load()
	for _, w := range n.readWaits {
		if w.slot <= applied {
			w.ch <- readResult{slot: w.slot}
		} else {
			kept = append(kept, w)
		}
	}
	n.readWaits = kept
}

// snapshotDue reports whether the loop should snapshot now, applied slots
// after the latest snapshot. Taking one stops the loop for as long as the
// state machine takes to serialize itself and the store to write it (a
// namespace of 100,000 nodes: a few hundred ms). Every replica applies the
// same log, so with one threshold all of them would stop at the same slot
// and the cell would stall. So each replica's first snapshot comes later by
// its place among the peers (SnapshotEvery/5 apart in a cell of five), which
// keeps them apart from then on and a majority always running. A leader,
// whose stop stalls every write and its heartbeats (a stop longer than the
// election timeout makes the followers elect another), snapshots only every
// leaderSnapshotFactor times as many slots; its log stays in memory meanwhile.
func (n *Node) snapshotDue(applied uint64) bool {
	latest := n.core.LatestSnapshot().Slot
	every := n.cfg.SnapshotEvery
	if latest == n.bootSnap {
		every += n.snapOffset
	}
	if n.core.Role() == Leader {
		every = leaderSnapshotFactor * n.cfg.SnapshotEvery
	}
	return applied-latest >= every
}

// leaderSnapshotFactor: a leader snapshots every this many SnapshotEvery.
const leaderSnapshotFactor = 4

func (n *Node) maybeSnapshot() error {
	applied := n.applied.Load()
	if !n.snapshotDue(applied) {
		return nil
	}
	// The store compacts only up to the commit index it holds.
	if err := n.flushLazy(); err != nil {
		return err
	}
	data, err := n.cfg.StateMachine.Snapshot()
	if err != nil {
		return fmt.Errorf("taking snapshot at slot %d: %w", applied, err)
	}
	snap := Snapshot{Slot: applied, Index: n.appliedIdx, Data: data}
	if err := n.cfg.Storage.Compact(snap); err != nil {
		return fmt.Errorf("storing snapshot at slot %d: %w", applied, err)
	}
	n.core.Compact(snap)
	n.log.Debug("snapshot taken", "slot", applied, "index", n.appliedIdx, "bytes", len(data))
	return nil
}

func (n *Node) failWaiting(err error) {
	for seq, ch := range n.waiting {
		ch <- propResult{err: err}
		delete(n.waiting, seq)
	}
	for _, w := range n.readWaits {
		w.ch <- readResult{err: err}
	}
	n.readWaits = nil
}

func (n *Node) fail(err error) {
	if !errors.Is(err, ErrStopped) {
		n.log.Error("replica stopped", "error", err)
	}
	n.errMu.Lock()
	n.err = err
	n.errMu.Unlock()
	n.failWaiting(err)
}

func (n *Node) observe(m Message, sent bool) {
	if n.cfg.Observer == nil {
		return
	}
	ev := FlowEvent{Time: time.Now(), Sent: sent, Type: m.Type, From: m.From, To: m.To, Ballot: m.Ballot,
		OK: !m.Reject && m.Type != MsgNack}
	switch m.Type {
	case MsgAccept, MsgFetchResp, MsgPromise:
		ev.Slots = len(m.Entries)
		if len(m.Entries) > 0 {
			ev.Slot = m.Entries[0].Slot
		} else {
			ev.Slot = m.Slot
		}
	case MsgAccepted:
		ev.Slots = len(m.Slots)
		if len(m.Slots) > 0 {
			ev.Slot = m.Slots[0]
		}
	case MsgHeartbeat:
		ev.Slot = m.Commit
	default:
		ev.Slot = m.Slot
	}
	n.cfg.Observer(ev)
}
