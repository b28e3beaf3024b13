package session

import (
	"container/heap"
	"errors"
	"sort"
	"sync"
	"time"
)

// Errors returned by the lease table.
var (
	// ErrNotLeader means this replica does not run session leases now.
	ErrNotLeader = errors.New("session: not the leader")
	// ErrUnknownSession means the table holds no lease for the id.
	ErrUnknownSession = errors.New("session: no lease for this session")
	// ErrExpiring means the session's lease ran out: its expiry is being
	// proposed and nothing can revive it.
	ErrExpiring = errors.New("session: lease ran out")
)

// Leases is the leader's table of session leases. It holds time only in
// memory and never writes KeepAlives to the log; only the decision that a
// lease ran out becomes a command (see Keeper). It is safe for concurrent
// use; time is always passed in, so tests run on a fake clock.
type Leases struct {
	mu      sync.Mutex
	leading bool
	grace   time.Duration
	byID    map[string]*lease
	queue   leaseQueue
}

type lease struct {
	id       string
	ttl      time.Duration
	deadline time.Time
	expiring bool // handed out by Expired; waiting for the log to apply it
	index    int  // position in the heap
}

// NewLeases returns a table that, on promotion, grants every session a fresh
// lease plus grace before it may expire any.
func NewLeases(grace time.Duration) *Leases {
	return &Leases{grace: grace, byID: map[string]*lease{}}
}

// SessionTTL names a live session and its TTL, as the state machine knows it.
type SessionTTL struct {
	ID  string
	TTL time.Duration
}

// Promote starts running leases: a new leader does not know the old leader's
// timers, so every live session gets its TTL plus the grace period from now.
func (l *Leases) Promote(now time.Time, live []SessionTTL) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leading = true
	l.byID = map[string]*lease{}
	l.queue = nil
	for _, s := range live {
		l.addLocked(s.ID, s.TTL, now.Add(s.TTL+l.grace))
	}
}

// Demote stops running leases: only the leader expires sessions.
func (l *Leases) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leading = false
	l.byID = map[string]*lease{}
	l.queue = nil
}

// Leading reports whether the table runs leases now.
func (l *Leases) Leading() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leading
}

// Sync reconciles the table with the sessions the state machine holds: a
// session created by a command applied after Promote gets a full lease plus
// grace; one the log ended or expired is dropped.
func (l *Leases) Sync(now time.Time, live []SessionTTL) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return
	}
	seen := make(map[string]bool, len(live))
	for _, s := range live {
		seen[s.ID] = true
		if _, ok := l.byID[s.ID]; !ok {
			l.addLocked(s.ID, s.TTL, now.Add(s.TTL+l.grace))
		}
	}
	for id, ls := range l.byID {
		if !seen[id] {
			l.dropLocked(ls)
		}
	}
}

// Add starts the lease of a session this leader just created.
func (l *Leases) Add(now time.Time, id string, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return
	}
	if ls, ok := l.byID[id]; ok {
		ls.deadline = now.Add(ttl)
		heap.Fix(&l.queue, ls.index)
		return
	}
	l.addLocked(id, ttl, now.Add(ttl))
}

func (l *Leases) addLocked(id string, ttl time.Duration, deadline time.Time) {
	ls := &lease{id: id, ttl: ttl, deadline: deadline}
	l.byID[id] = ls
	heap.Push(&l.queue, ls)
}

// Remove forgets a session the log ended or expired.
func (l *Leases) Remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls, ok := l.byID[id]; ok {
		l.dropLocked(ls)
	}
}

func (l *Leases) dropLocked(ls *lease) {
	if ls.index >= 0 {
		heap.Remove(&l.queue, ls.index)
	}
	delete(l.byID, ls.id)
}

// KeepAlive extends a session's lease to now+TTL and returns what remains.
// A session already handed out for expiry cannot be revived.
func (l *Leases) KeepAlive(now time.Time, id string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return 0, ErrNotLeader
	}
	ls, ok := l.byID[id]
	if !ok {
		return 0, ErrUnknownSession
	}
	if ls.expiring || !now.Before(ls.deadline) {
		return 0, ErrExpiring
	}
	if d := now.Add(ls.ttl); d.After(ls.deadline) {
		ls.deadline = d
		heap.Fix(&l.queue, ls.index)
	}
	return ls.deadline.Sub(now), nil
}

// Remaining returns how long a session's lease still runs on this leader.
func (l *Leases) Remaining(now time.Time, id string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.byID[id]
	if !ok || !l.leading {
		return 0, false
	}
	return max(ls.deadline.Sub(now), 0), true
}

// Expired hands out, once, every session whose lease ran out by now, in
// deadline order (then id). The caller proposes their expiry; if that fails,
// Retry puts them back.
func (l *Leases) Expired(now time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*lease
	for len(l.queue) > 0 && !l.queue[0].deadline.After(now) {
		ls := heap.Pop(&l.queue).(*lease)
		ls.expiring = true
		out = append(out, ls)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].deadline.Equal(out[j].deadline) {
			return out[i].deadline.Before(out[j].deadline)
		}
		return out[i].id < out[j].id
	})
	ids := make([]string, len(out))
	for i, ls := range out {
		ids[i] = ls.id
	}
	return ids
}

// Retry puts an expiring session back in the queue, due now, after its
// expiry could not be proposed.
func (l *Leases) Retry(now time.Time, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls, ok := l.byID[id]; ok && ls.expiring {
		ls.expiring = false
		ls.deadline = now
		heap.Push(&l.queue, ls)
	}
}

// leaseQueue is a min-heap of leases by deadline.
type leaseQueue []*lease

func (q leaseQueue) Len() int { return len(q) }
func (q leaseQueue) Less(i, j int) bool {
	if !q[i].deadline.Equal(q[j].deadline) {
		return q[i].deadline.Before(q[j].deadline)
	}
	return q[i].id < q[j].id
}
func (q leaseQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}
func (q *leaseQueue) Push(x any) {
	ls := x.(*lease)
	ls.index = len(*q)
	*q = append(*q, ls)
}
func (q *leaseQueue) Pop() any {
	old := *q
	ls := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	ls.index = -1
	return ls
}
