package lockservice

import (
	"container/heap"
	"context"
	"sort"
	"sync"
)

// Config configures a Machine.
type Config struct {
	// Cell is the cell name: node paths are /ls/<Cell>/... Required.
	Cell string
	// EventHistory is how many events the machine keeps for watches
	// (EventsSince); older ones are compacted. 0 means DefaultEventHistory.
	EventHistory int
}

// maxWaitOutcomes bounds the finished waits AwaitAcquire can still report.
const maxWaitOutcomes = 10_000

// Machine is the lockd state machine. Apply, Snapshot and Restore are called
// by one goroutine (the paxos apply loop); every other method may be called
// concurrently with them and with each other from any goroutine.
type Machine struct {
	cell    string
	histCap int

	mu       sync.RWMutex
	st       *state
	events   *eventLog
	outcomes map[uint64]waitOutcome
	outOrder []uint64
	// changed is closed (and replaced) after every Apply and Restore.
	changed chan struct{}
}

// New returns an empty machine for cfg.Cell: only the root directory
// /ls/<cell> exists, and the applied index is 0.
func New(cfg Config) (*Machine, error) {
	if err := validSegment(cfg.Cell); err != nil {
		return nil, errorf(ErrInvalidArgument, "cell name: %v", err)
	}
	hc := cfg.EventHistory
	if hc <= 0 {
		hc = DefaultEventHistory
	}
	return &Machine{
		cell:     cfg.Cell,
		histCap:  hc,
		st:       newState(cfg.Cell),
		events:   newEventLog(hc),
		outcomes: map[uint64]waitOutcome{},
		changed:  make(chan struct{}),
	}, nil
}

// Cell returns the cell name.
func (m *Machine) Cell() string { return m.cell }

// Result is what Apply returns for one command (as the `any` of
// paxos.StateMachine.Apply, always a Result value). Err is nil on success, or
// wraps one of the sentinels; a command with an Err changed nothing (though
// time-driven changes of the same index, see KindTick, may have happened and
// are in Events). Which other fields are set depends on the kind:
//
//   - CreateSession: Session.
//   - PutNode: Node (after the write) and Created.
//   - Acquire: Grant when granted; Waiting and WaitID when queued (await
//     the outcome with AwaitAcquire); RetryAfterMs with ErrLockDelayed.
//   - Release: Released.
//   - Acquire and Release: Duplicate when answered from the request-id table.
type Result struct {
	Index        uint64
	Kind         Kind
	Err          error
	RetryAfterMs int64
	Node         *Node
	Created      bool
	Session      *Session
	Grant        *Grant
	Waiting      bool
	WaitID       uint64
	Released     bool
	Duplicate    bool
	// Events are all events of this index, in order.
	Events []Event
}

// applyTx collects what one Apply produces besides state changes.
type applyTx struct {
	index    uint64
	now      int64
	events   []Event
	finished []waitOutcome
}

// waitOutcome is how a queued acquire ended: a grant or an error.
type waitOutcome struct {
	id    uint64
	grant *Grant
	err   error
}

// Apply decodes and applies one command; it returns a Result. Index must be
// above the applied index; otherwise nothing changes and Result.Err wraps
// ErrInvalidArgument. A command that does not decode is consumed (the
// applied index advances) and rejected.
func (m *Machine) Apply(index uint64, cmd []byte) any {
	c, err := Decode(cmd)
	return m.apply(index, &c, err)
}

// ApplyCommand is Apply for a command that is already decoded (tests, and
// in-process callers that skip the encoding).
func (m *Machine) ApplyCommand(index uint64, c Command) Result {
	return m.apply(index, &c, nil)
}

func (m *Machine) apply(index uint64, c *Command, decodeErr error) Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	if index <= st.applied {
		return Result{Index: index, Kind: c.Kind, Err: errorf(ErrInvalidArgument, "index %d is not above the applied index %d", index, st.applied)}
	}
	st.applied = index
	tx := &applyTx{index: index}
	var res Result
	if decodeErr != nil {
		res = Result{Err: decodeErr}
	} else {
		if c.NowMs > st.now {
			st.now = c.NowMs
		}
		tx.now = st.now
		st.advanceTime(tx)
		res = st.apply(tx, c)
	}
	st.cleanDeadlines()
	res.Index, res.Kind, res.Events = index, c.Kind, tx.events
	if res.Err != nil {
		res.RetryAfterMs = RetryAfterMs(res.Err)
	}
	m.events.append(tx.events)
	for _, o := range tx.finished {
		m.recordOutcome(o)
	}
	m.notify()
	return res
}

func (m *Machine) notify() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Machine) recordOutcome(o waitOutcome) {
	if len(m.outOrder) >= maxWaitOutcomes {
		delete(m.outcomes, m.outOrder[0])
		m.outOrder = m.outOrder[1:]
	}
	m.outcomes[o.id] = o
	m.outOrder = append(m.outOrder, o.id)
}

// apply validates and dispatches one decoded command.
func (s *state) apply(tx *applyTx, c *Command) Result {
	if err := c.Validate(s.cell); err != nil {
		return Result{Err: err}
	}
	switch c.Kind {
	case KindCreateSession:
		return s.createSession(tx, c)
	case KindEndSession:
		return s.endSession(tx, c.Session, false)
	case KindExpireSession:
		return s.endSession(tx, c.Session, true)
	case KindPutNode:
		return s.putNode(tx, c)
	case KindDeleteNode:
		return s.deleteNodeCmd(tx, c)
	case KindAcquire:
		return s.acquire(tx, c)
	case KindRelease:
		return s.release(tx, c)
	case KindTick:
		return Result{}
	case KindLeaderChanged:
		s.leader = c.Leader
		tx.events = append(tx.events, Event{Index: tx.index, Type: EventLeaderChanged, Leader: c.Leader})
		return Result{}
	case KindSetACL:
		return s.setACL(tx, c)
	case KindDeleteACL:
		return s.deleteACL(tx, c)
	}
	return Result{Err: errorf(ErrInvalidArgument, "unknown command kind %d", int(c.Kind))}
}

// advanceTime runs what the passage of time (to tx.now) makes due: first
// every wait whose deadline is at or before now fails with ErrLockHeld, then
// lock-delays that ended are lifted, then the touched locks hand over to
// their queues. Waits are removed before any grant, so no grant happens at or
// after a deadline.
func (s *state) advanceTime(tx *applyTx) {
	var due []deadline
	for len(s.deadlines) > 0 && s.deadlines[0].at <= tx.now {
		d := heap.Pop(&s.deadlines).(deadline)
		if s.validDeadline(d) {
			due = append(due, d)
		}
	}
	if len(due) == 0 {
		return
	}
	sort.Slice(due, func(i, j int) bool { return due[i].less(due[j]) })
	touched := map[string]bool{}
	for _, d := range due {
		if d.waitID == 0 {
			continue
		}
		w := s.waiters[d.waitID]
		if w == nil || w.deadline != d.at {
			continue
		}
		l := s.locks[w.path]
		l.removeWaiter(w.id)
		s.finishWait(tx, w, nil, errorf(ErrLockHeld, "wait for %s ended at its deadline without a grant", w.path))
		touched[w.path] = true
	}
	for _, d := range due {
		if d.waitID != 0 {
			continue
		}
		if l := s.locks[d.path]; l != nil && l.delayUntil == d.at {
			l.delayUntil, l.delayBlocksShared = 0, false
			touched[d.path] = true
		}
	}
	for _, p := range sortedKeys(touched) {
		if l := s.locks[p]; l != nil {
			s.grantFromQueue(tx, l)
			s.gcLock(l)
		}
	}
}

// AppliedIndex returns the index of the last applied command.
func (m *Machine) AppliedIndex() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.applied
}

// NowMs returns the machine's clock: the highest NowMs applied so far.
func (m *Machine) NowMs() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.now
}

// Leader returns the leader named by the last LeaderChanged command.
func (m *Machine) Leader() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.leader
}

// NextDeadline returns the earliest time (unix ms) at which a command would
// change something by time alone (a wait deadline or the end of a
// lock-delay), and false when there is none. The leader proposes a Tick with
// NowMs at or after it.
func (m *Machine) NextDeadline() (int64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.st.deadlines) == 0 {
		return 0, false
	}
	return m.st.deadlines[0].at, true
}

// Notify returns the applied index and a channel that is closed as soon as
// anything is applied (or restored) after it: the building block for
// watchers that keep their own position (SSE).
func (m *Machine) Notify() (uint64, <-chan struct{}) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.applied, m.changed
}

// WaitIndex returns once the applied index is at least index, or with ctx's
// error when ctx ends first.
func (m *Machine) WaitIndex(ctx context.Context, index uint64) error {
	for {
		applied, ch := m.Notify()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// AwaitAcquire waits for the outcome of the queued acquire waitID (from
// Result.WaitID): the Grant when it was granted, or the error that ended it
// (ErrLockHeld at its deadline, ErrSessionExpired when its session ended,
// ErrPreconditionFailed when its node could no longer be created). A grant is
// reported even if the lock was released since. It fails with ErrNotFound for
// a wait this machine does not know (never queued here, or finished so long
// ago that it is forgotten, or finished before a Restore), and with ctx's
// error when ctx ends first.
func (m *Machine) AwaitAcquire(ctx context.Context, waitID uint64) (Grant, error) {
	for {
		m.mu.RLock()
		_, pending := m.st.waiters[waitID]
		o, done := m.outcomes[waitID]
		ch := m.changed
		m.mu.RUnlock()
		switch {
		case done && o.err != nil:
			return Grant{}, o.err
		case done:
			return *o.grant, nil
		case !pending:
			return Grant{}, errorf(ErrNotFound, "no wait %d", waitID)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Grant{}, ctx.Err()
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
