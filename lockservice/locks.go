package lockservice

import (
	"bytes"
	"container/heap"
	"slices"
)

// lockState is the reader/writer lock of one path. It exists while the lock
// has holders or waiters or is in lock-delay; otherwise the lock is free and
// its generation lives on in the node.
type lockState struct {
	path    string
	gen     uint64 // generation of the last exclusive hold
	holders []holder
	waiters []*waiter // FIFO
	// delayUntil > 0: lock-delay until then. delayBlocksShared says whether
	// it also holds back shared grants (an exclusive holder expired) or only
	// exclusive ones (only shared holders expired).
	delayUntil        int64
	delayBlocksShared bool
}

type holder struct {
	session    string
	mode       Mode
	generation uint64
	sinceIndex uint64
}

// waiter is a queued acquire. Its id is the index of the acquire that queued
// it (an acquire queues at most one waiter).
type waiter struct {
	id         uint64
	path       string
	session    string
	mode       Mode
	sinceMs    int64
	sinceIndex uint64
	deadline   int64
	contents   *[]byte
	requestIDs []string
}

func (l *lockState) mode() Mode {
	if len(l.holders) == 0 {
		return ""
	}
	return l.holders[0].mode
}

// compatible: a hold in mode could coexist with the current holders.
func (l *lockState) compatible(mode Mode) bool {
	return len(l.holders) == 0 || mode == ModeShared && l.holders[0].mode == ModeShared
}

func (l *lockState) blockedByDelay(mode Mode, now int64) bool {
	return l.delayUntil > now && (mode == ModeExclusive || l.delayBlocksShared)
}

// canGrantNow: a new acquire in mode is granted at once. Waiters queued ahead
// keep it out (fairness), even a shared one behind shared holders.
func (l *lockState) canGrantNow(mode Mode, now int64) bool {
	return len(l.waiters) == 0 && l.compatible(mode) && !l.blockedByDelay(mode, now)
}

func (l *lockState) holderOf(session string) *holder {
	for i := range l.holders {
		if l.holders[i].session == session {
			return &l.holders[i]
		}
	}
	return nil
}

func (l *lockState) removeHolder(session string) holder {
	for i, h := range l.holders {
		if h.session == session {
			l.holders = slices.Delete(l.holders, i, i+1)
			return h
		}
	}
	panic("lockservice: removing a holder that does not hold " + l.path)
}

func (l *lockState) removeWaiter(id uint64) {
	for i, w := range l.waiters {
		if w.id == id {
			l.waiters = slices.Delete(l.waiters, i, i+1)
			return
		}
	}
}

// Grant is a held lock (API.md "Grant").
type Grant struct {
	Path       string `json:"path"`
	Mode       Mode   `json:"mode"`
	Generation uint64 `json:"generation"`
	Sequencer  string `json:"sequencer"`
	Session    string `json:"session"`
}

func grantOf(path string, h *holder) Grant {
	return Grant{
		Path: path, Mode: h.mode, Generation: h.generation, Session: h.session,
		Sequencer: Sequencer{Path: path, Mode: h.mode, Generation: h.generation, Session: h.session}.String(),
	}
}

// lockFor returns the lock of path, creating its state if needed.
func (s *state) lockFor(path string) *lockState {
	l := s.locks[path]
	if l == nil {
		l = &lockState{path: path, gen: s.lockGens}
		if n := s.nodes[path]; n != nil {
			l.gen = n.lockGen
		}
		s.locks[path] = l
	}
	return l
}

// gcLock drops the state of a lock that is free, unawaited and not delayed.
func (s *state) gcLock(l *lockState) {
	if len(l.holders) == 0 && len(l.waiters) == 0 && l.delayUntil == 0 {
		delete(s.locks, l.path)
	}
}

// grant starts a hold. The node must exist. An exclusive hold takes a new
// generation from the cell-wide counter; a shared one carries the current.
func (s *state) grant(tx *applyTx, l *lockState, sess *session, mode Mode, contents *[]byte) Grant {
	n := s.nodes[l.path]
	if mode == ModeExclusive {
		s.lockGens++
		l.gen = s.lockGens
		n.lockGen = l.gen
	}
	l.holders = append(l.holders, holder{session: sess.id, mode: mode, generation: l.gen, sinceIndex: tx.index})
	sess.held[l.path] = mode
	tx.emit(EventLockAcquired, l.path, sess.id, l.gen)
	if contents != nil {
		s.writeContents(tx, n, *contents)
	}
	return grantOf(l.path, &l.holders[len(l.holders)-1])
}

// grantFromQueue hands the lock to the head of its queue while it can: a
// run of shared waiters together, or one exclusive waiter. Nothing is
// granted during a lock-delay that blocks the head, and no waiter overtakes
// the head.
func (s *state) grantFromQueue(tx *applyTx, l *lockState) {
	for len(l.waiters) > 0 {
		w := l.waiters[0]
		if l.blockedByDelay(w.mode, tx.now) || !l.compatible(w.mode) {
			return
		}
		l.waiters = slices.Delete(l.waiters, 0, 1)
		n := s.nodes[l.path]
		switch {
		case n == nil:
			// Deleted since the wait began (as an ephemeral of an ended
			// session): acquiring re-creates it, if it still can be.
			if err := s.checkCreatable(l.path); err != nil {
				s.finishWait(tx, w, nil, err)
				continue
			}
			s.createNode(tx, l.path, false, nil, "")
		case n.dir && w.contents != nil:
			s.finishWait(tx, w, nil, errorf(ErrPreconditionFailed, "%s is now a directory; cannot write contents with the grant", l.path))
			continue
		}
		g := s.grant(tx, l, s.sessions[w.session], w.mode, w.contents)
		s.finishWait(tx, w, &g, nil)
		if w.mode == ModeExclusive {
			return
		}
	}
}

// finishWait ends a wait that is already out of its queue: it records the
// outcome for AwaitAcquire and for the request ids that named it.
func (s *state) finishWait(tx *applyTx, w *waiter, g *Grant, err error) {
	delete(s.waiters, w.id)
	if sess := s.sessions[w.session]; sess != nil {
		delete(sess.waits, w.path)
		for _, rid := range w.requestIDs {
			if r := sess.reqs.m[rid]; r != nil && !r.done && r.waitID == w.id {
				r.done, r.grant, r.err = true, g, err
			}
		}
	}
	tx.finished = append(tx.finished, waitOutcome{id: w.id, grant: g, err: err})
}

// setLockDelay holds the lock back until until (never shortening a delay).
func (s *state) setLockDelay(l *lockState, until int64, blocksShared bool) {
	if until > l.delayUntil {
		l.delayUntil = until
		heap.Push(&s.deadlines, deadline{at: until, path: l.path})
	}
	if blocksShared {
		l.delayBlocksShared = true
	}
}

// acquire applies KindAcquire.
func (s *state) acquire(tx *applyTx, c *Command) Result {
	mode := c.Mode
	if mode == "" {
		mode = ModeExclusive
	}
	sess, err := s.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	rec, err := sess.lookupRequest(c.RequestID, KindAcquire, c.Path)
	if err != nil {
		return Result{Err: err}
	}
	if rec != nil {
		return rec.result()
	}
	l := s.locks[c.Path]
	if held, ok := sess.held[c.Path]; ok {
		if held != mode {
			return Result{Err: errorf(ErrLockHeld, "session %s holds %s in %s mode", sess.id, c.Path, held)}
		}
		g := grantOf(c.Path, l.holderOf(sess.id))
		s.remember(sess, c, &requestRecord{done: true, grant: &g})
		return Result{Grant: &g}
	}
	if wid, ok := sess.waits[c.Path]; ok {
		w := s.waiters[wid]
		if w.mode != mode {
			return Result{Err: errorf(ErrPreconditionFailed, "session %s already waits for %s in %s mode", sess.id, c.Path, w.mode)}
		}
		if c.RequestID != "" {
			w.requestIDs = append(w.requestIDs, c.RequestID)
			s.remember(sess, c, &requestRecord{waitID: wid})
		}
		return Result{Waiting: true, WaitID: wid}
	}
	n := s.nodes[c.Path]
	if n == nil {
		if err := s.checkCreatable(c.Path); err != nil {
			return Result{Err: err}
		}
	} else if n.dir && c.Contents != nil {
		return Result{Err: errorf(ErrPreconditionFailed, "%s is a directory; it has no contents", c.Path)}
	}
	if l == nil || l.canGrantNow(mode, tx.now) {
		contents := c.Contents
		if n == nil {
			var initial []byte
			if contents != nil {
				initial, contents = *contents, nil
			}
			s.createNode(tx, c.Path, false, initial, "")
		}
		g := s.grant(tx, s.lockFor(c.Path), sess, mode, contents)
		s.remember(sess, c, &requestRecord{done: true, grant: &g})
		return Result{Grant: &g}
	}
	conflict := !l.compatible(mode) || len(l.waiters) > 0
	if c.WaitMs == 0 {
		if conflict {
			tx.emit(EventLockConflict, c.Path, sess.id, l.gen)
			return Result{Err: errorf(ErrLockHeld, "%s is held or awaited by another session", c.Path)}
		}
		return Result{Err: &Error{Err: ErrLockDelayed, Msg: "lock " + c.Path + " is in lock-delay", RetryAfterMs: l.delayUntil - tx.now}}
	}
	if n == nil {
		s.createNode(tx, c.Path, false, nil, "")
	}
	w := &waiter{
		id: tx.index, path: c.Path, session: sess.id, mode: mode,
		sinceMs: tx.now, sinceIndex: tx.index, deadline: tx.now + c.WaitMs,
	}
	if c.Contents != nil {
		w.contents = Bytes(*c.Contents)
	}
	if c.RequestID != "" {
		w.requestIDs = []string{c.RequestID}
	}
	l.waiters = append(l.waiters, w)
	s.waiters[w.id] = w
	sess.waits[c.Path] = w.id
	heap.Push(&s.deadlines, deadline{at: w.deadline, path: w.path, waitID: w.id})
	if conflict {
		tx.emit(EventLockConflict, c.Path, sess.id, l.gen)
	}
	s.remember(sess, c, &requestRecord{waitID: w.id})
	return Result{Waiting: true, WaitID: w.id}
}

// remember records the answer to c under its request id, if it has one.
func (s *state) remember(sess *session, c *Command, r *requestRecord) {
	if c.RequestID == "" {
		return
	}
	r.id, r.kind, r.path = c.RequestID, c.Kind, c.Path
	sess.reqs.add(r)
}

// release applies KindRelease.
func (s *state) release(tx *applyTx, c *Command) Result {
	sess, err := s.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	rec, err := sess.lookupRequest(c.RequestID, KindRelease, c.Path)
	if err != nil {
		return Result{Err: err}
	}
	if rec != nil {
		return rec.result()
	}
	if _, ok := sess.held[c.Path]; !ok {
		return Result{Err: errorf(ErrNotHolder, "session %s does not hold %s", sess.id, c.Path)}
	}
	l := s.locks[c.Path]
	if h := l.holderOf(sess.id); h.generation != c.Generation {
		return Result{Err: errorf(ErrNotHolder, "session %s holds %s at generation %d, not %d", sess.id, c.Path, h.generation, c.Generation)}
	}
	h := l.removeHolder(sess.id)
	delete(sess.held, c.Path)
	tx.emit(EventLockReleased, c.Path, sess.id, h.generation)
	s.grantFromQueue(tx, l)
	s.gcLock(l)
	s.remember(sess, c, &requestRecord{done: true, released: true})
	return Result{Released: true}
}

// Holder is a session holding a lock.
type Holder struct {
	Session    string `json:"session"`
	Label      string `json:"label"`
	Host       string `json:"host"`
	PID        int64  `json:"pid"`
	Mode       Mode   `json:"mode"`
	Generation uint64 `json:"generation"`
	SinceIndex uint64 `json:"since_index"`
}

// Waiter is a queued acquire.
type Waiter struct {
	Session string `json:"session"`
	Label   string `json:"label"`
	Host    string `json:"host"`
	PID     int64  `json:"pid"`
	Mode    Mode   `json:"mode"`
	WaitID  uint64 `json:"wait_id"`
	// WaitingSinceMs is the machine time the wait began; WaitingMs is how
	// long ago that is at the asked-for time; DeadlineMs is when it fails.
	WaitingSinceMs int64  `json:"waiting_since_ms"`
	WaitingMs      int64  `json:"waiting_ms"`
	DeadlineMs     int64  `json:"deadline_ms"`
	SinceIndex     uint64 `json:"since_index"`
}

// LockState is the public view of a lock (API.md "LockState"). Mode is ""
// when no one holds it. Holders are in grant order, waiters in queue order.
type LockState struct {
	Path       string   `json:"path"`
	Mode       Mode     `json:"mode"`
	Generation uint64   `json:"generation"`
	Holders    []Holder `json:"holders"`
	Waiters    []Waiter `json:"waiters"`
	// LockDelayUntilMs is when the lock-delay ends (0: none);
	// LockDelayRemainingMs is what remains of it at the asked-for time. Until
	// a command at or after LockDelayUntilMs is applied, the delay holds.
	LockDelayUntilMs     int64 `json:"lock_delay_until_ms"`
	LockDelayRemainingMs int64 `json:"lock_delay_remaining_ms"`
}

func (s *state) lockView(l *lockState, nowMs int64) LockState {
	v := LockState{
		Path: l.path, Mode: l.mode(), Generation: l.gen,
		Holders: make([]Holder, 0, len(l.holders)), Waiters: make([]Waiter, 0, len(l.waiters)),
		LockDelayUntilMs: l.delayUntil, LockDelayRemainingMs: max(0, l.delayUntil-nowMs),
	}
	for _, h := range l.holders {
		sess := s.sessions[h.session]
		v.Holders = append(v.Holders, Holder{
			Session: h.session, Label: sess.label, Host: sess.host, PID: sess.pid,
			Mode: h.mode, Generation: h.generation, SinceIndex: h.sinceIndex,
		})
	}
	for _, w := range l.waiters {
		sess := s.sessions[w.session]
		v.Waiters = append(v.Waiters, Waiter{
			Session: w.session, Label: sess.label, Host: sess.host, PID: sess.pid, Mode: w.mode,
			WaitID: w.id, WaitingSinceMs: w.sinceMs, WaitingMs: max(0, nowMs-w.sinceMs),
			DeadlineMs: w.deadline, SinceIndex: w.sinceIndex,
		})
	}
	return v
}

// GetLock returns the lock at path as of nowMs (which only sets the
// remaining and waiting times). A node that nobody holds or awaits is a free
// lock; a path with neither node nor lock state is ErrNotFound.
func (m *Machine) GetLock(path string, nowMs int64) (LockState, error) {
	if err := ValidatePath(m.cell, path); err != nil {
		return LockState{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if l := m.st.locks[path]; l != nil {
		return m.st.lockView(l, nowMs), nil
	}
	if n := m.st.nodes[path]; n != nil {
		return LockState{Path: path, Generation: n.lockGen, Holders: []Holder{}, Waiters: []Waiter{}}, nil
	}
	return LockState{}, errorf(ErrNotFound, "no lock %s", path)
}

// ListLocks returns, by path, every lock that is held, awaited or in
// lock-delay.
func (m *Machine) ListLocks(nowMs int64) []LockState {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]LockState, 0, len(m.st.locks))
	for _, p := range sortedKeys(m.st.locks) {
		out = append(out, m.st.lockView(m.st.locks[p], nowMs))
	}
	return out
}

// ElectionLeader is the leader of an election: the exclusive holder of the
// election node, with the node's contents as its value.
type ElectionLeader struct {
	Session    string `json:"session"`
	Value      []byte `json:"value"`
	Generation uint64 `json:"generation"`
	Sequencer  string `json:"sequencer"`
	Label      string `json:"label"`
	Host       string `json:"host"`
	PID        int64  `json:"pid"`
	SinceIndex uint64 `json:"since_index"`
}

// Election returns the leader of the election at path, or nil when no one
// holds it exclusively. ErrNotFound when there is neither node nor lock.
func (m *Machine) Election(path string) (*ElectionLeader, error) {
	if err := ValidatePath(m.cell, path); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, n := m.st.locks[path], m.st.nodes[path]
	if l == nil && n == nil {
		return nil, errorf(ErrNotFound, "no node %s", path)
	}
	if l == nil || l.mode() != ModeExclusive {
		return nil, nil
	}
	h := &l.holders[0]
	sess := m.st.sessions[h.session]
	e := &ElectionLeader{
		Session: h.session, Generation: h.generation, Value: []byte{},
		Sequencer: grantOf(path, h).Sequencer, Label: sess.label, Host: sess.host, PID: sess.pid,
		SinceIndex: h.sinceIndex,
	}
	if n != nil {
		e.Value = bytes.Clone(n.contents)
		if e.Value == nil {
			e.Value = []byte{}
		}
	}
	return e, nil
}

// deadline is a time at which something becomes due: a wait's deadline
// (waitID != 0) or the end of a lock-delay (waitID == 0).
type deadline struct {
	at     int64
	path   string
	waitID uint64
}

func (a deadline) less(b deadline) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.path != b.path {
		return a.path < b.path
	}
	return a.waitID < b.waitID
}

// deadlineHeap is a min-heap of deadlines. Entries go stale (the wait was
// granted, the delay replaced) and are dropped lazily; the top is kept valid
// after every Apply so NextDeadline can read it.
type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].less(h[j]) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}

func (s *state) validDeadline(d deadline) bool {
	if d.waitID != 0 {
		w := s.waiters[d.waitID]
		return w != nil && w.deadline == d.at
	}
	l := s.locks[d.path]
	return l != nil && l.delayUntil == d.at
}

// cleanDeadlines pops stale entries off the top of the heap, and rebuilds
// the heap when stale entries below the top pile up.
func (s *state) cleanDeadlines() {
	if len(s.deadlines) > 2*(len(s.waiters)+len(s.locks))+1024 {
		s.rebuildDeadlines()
		return
	}
	for len(s.deadlines) > 0 && !s.validDeadline(s.deadlines[0]) {
		heap.Pop(&s.deadlines)
	}
}

// rebuildDeadlines makes the heap anew from the waits and lock-delays.
func (s *state) rebuildDeadlines() {
	s.deadlines = s.deadlines[:0]
	for _, w := range s.waiters {
		s.deadlines = append(s.deadlines, deadline{at: w.deadline, path: w.path, waitID: w.id})
	}
	for _, l := range s.locks {
		if l.delayUntil != 0 {
			s.deadlines = append(s.deadlines, deadline{at: l.delayUntil, path: l.path})
		}
	}
	heap.Init(&s.deadlines)
}
