package lockservice

import (
	"fmt"
	"sort"
)

// session is a live session.
type session struct {
	id           string
	ttlMs        int64
	lockDelayMs  int64
	label        string
	host         string
	pid          int64
	principal    string // who created it ("" without authentication)
	createdIndex uint64
	held         map[string]Mode     // lock path -> mode held
	waits        map[string]uint64   // lock path -> wait id
	ephemerals   map[string]struct{} // ephemeral node paths
	reqs         requestTable
}

func newSession(id string) *session {
	return &session{
		id:         id,
		held:       map[string]Mode{},
		waits:      map[string]uint64{},
		ephemerals: map[string]struct{}{},
		reqs:       requestTable{m: map[string]*requestRecord{}},
	}
}

// sessionID derives a session id from the index that created it.
func sessionID(index uint64) string { return fmt.Sprintf("%016x", index) }

// Session is the public view of a live session (API.md "Session", less the
// lease, which the session layer owns).
type Session struct {
	ID          string `json:"id"`
	TTLMs       int64  `json:"ttl_ms"`
	LockDelayMs int64  `json:"lock_delay_ms"`
	Label       string `json:"label"`
	Host        string `json:"host"`
	PID         int64  `json:"pid"`
	// Principal created the session and owns it: only it (or an
	// administrator) may use it. "" when created without authentication.
	Principal    string   `json:"principal,omitempty"`
	CreatedIndex uint64   `json:"created_index"`
	Locks        []string `json:"locks"`
	Ephemerals   []string `json:"ephemerals"`
}

func (s *session) view() Session {
	return Session{
		ID: s.id, TTLMs: s.ttlMs, LockDelayMs: s.lockDelayMs, Label: s.label, Host: s.host, PID: s.pid,
		Principal: s.principal, CreatedIndex: s.createdIndex, Locks: sortedKeys(s.held), Ephemerals: sortedKeys(s.ephemerals),
	}
}

// SessionLease is what the session layer needs to run a session's lease.
type SessionLease struct {
	ID           string
	TTLMs        int64
	CreatedIndex uint64
}

// endedLog remembers, boundedly, the sessions that ended, so that their ids
// answer session_expired rather than not_found.
type endedLog struct {
	m     map[string]bool // id -> expired (false: ended by EndSession)
	order []string
}

func (e *endedLog) add(id string, expired bool) {
	if len(e.order) >= MaxEndedSessions {
		delete(e.m, e.order[0])
		e.order = e.order[1:]
	}
	e.m[id] = expired
	e.order = append(e.order, id)
}

// requestRecord is the remembered answer to an acquire or release.
type requestRecord struct {
	id       string
	kind     Kind
	path     string
	waitID   uint64 // the wait while !done
	done     bool
	grant    *Grant
	released bool
	err      error // a final *Error, when the wait failed
}

// result is the answer a repeat of the request gets.
func (r *requestRecord) result() Result {
	res := Result{Duplicate: true}
	switch {
	case !r.done:
		res.Waiting, res.WaitID = true, r.waitID
	case r.err != nil:
		res.Err = r.err
	case r.grant != nil:
		g := *r.grant
		res.Grant = &g
	default:
		res.Released = r.released
	}
	return res
}

// requestTable remembers a session's newest RequestIDsPerSession requests.
type requestTable struct {
	m     map[string]*requestRecord
	order []string
}

func (t *requestTable) add(r *requestRecord) {
	if _, ok := t.m[r.id]; ok {
		return
	}
	if len(t.order) >= RequestIDsPerSession {
		delete(t.m, t.order[0])
		t.order = t.order[1:]
	}
	t.m[r.id] = r
	t.order = append(t.order, r.id)
}

// lookupRequest finds a remembered request of the session. A request id
// reused for another kind or path is an error.
func (s *session) lookupRequest(id string, kind Kind, path string) (*requestRecord, error) {
	if id == "" {
		return nil, nil
	}
	r := s.reqs.m[id]
	if r == nil {
		return nil, nil
	}
	if r.kind != kind || r.path != path {
		return nil, errorf(ErrInvalidArgument, "request_id %q was used for %v of %s", id, r.kind, r.path)
	}
	return r, nil
}

// liveSession returns the live session id, ErrSessionExpired for one that
// ended or expired, ErrNotFound for one never seen (or long forgotten).
func (s *state) liveSession(id string) (*session, error) {
	if sess := s.sessions[id]; sess != nil {
		return sess, nil
	}
	if expired, ok := s.ended.m[id]; ok {
		if expired {
			return nil, errorf(ErrSessionExpired, "session %s expired", id)
		}
		return nil, errorf(ErrSessionExpired, "session %s was ended", id)
	}
	return nil, errorf(ErrNotFound, "no session %s", id)
}

// createSession applies KindCreateSession.
func (s *state) createSession(tx *applyTx, c *Command) Result {
	sess := newSession(sessionID(tx.index))
	sess.ttlMs = c.TTLMs
	if sess.ttlMs == 0 {
		sess.ttlMs = DefaultTTLMs
	}
	sess.lockDelayMs = DefaultLockDelayMs
	if c.LockDelayMs != nil {
		sess.lockDelayMs = *c.LockDelayMs
	}
	sess.label, sess.host, sess.pid, sess.createdIndex = c.Label, c.Host, c.PID, tx.index
	sess.principal = c.Principal
	s.sessions[sess.id] = sess
	v := sess.view()
	return Result{Session: &v}
}

// endSession applies KindEndSession and KindExpireSession: release every
// lock the session holds (with lock-delay when it expired), fail its waits,
// delete its ephemeral nodes, then let the touched locks hand over.
func (s *state) endSession(tx *applyTx, id string, expired bool) Result {
	sess, err := s.liveSession(id)
	if err != nil {
		return Result{Err: err}
	}
	if expired {
		tx.emit(EventSessionExpired, "", id, 0)
	}
	touched := map[string]bool{}
	for _, p := range sortedKeys(sess.held) {
		l := s.locks[p]
		h := l.removeHolder(id)
		delete(sess.held, p)
		tx.emit(EventLockReleased, p, id, h.generation)
		if expired && sess.lockDelayMs > 0 {
			s.setLockDelay(l, tx.now+sess.lockDelayMs, h.mode == ModeExclusive)
		}
		touched[p] = true
	}
	for _, p := range sortedKeys(sess.waits) {
		w := s.waiters[sess.waits[p]]
		s.locks[p].removeWaiter(w.id)
		s.finishWait(tx, w, nil, errorf(ErrSessionExpired, "session %s ended while waiting for %s", id, p))
		touched[p] = true
	}
	for _, p := range sortedKeys(sess.ephemerals) {
		s.removeNode(tx, s.nodes[p])
	}
	delete(s.sessions, id)
	s.ended.add(id, expired)
	for _, p := range sortedKeys(touched) {
		if l := s.locks[p]; l != nil {
			s.grantFromQueue(tx, l)
			s.gcLock(l)
		}
	}
	return Result{}
}

// GetSession returns the live session id; ErrSessionExpired if it ended or
// expired, ErrNotFound if never seen.
func (m *Machine) GetSession(id string) (Session, error) {
	if err := validSessionID(id); err != nil {
		return Session{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	sess, err := m.st.liveSession(id)
	if err != nil {
		return Session{}, err
	}
	return sess.view(), nil
}

// ListSessions returns every live session, by id (which is creation order).
func (m *Machine) ListSessions() []Session {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Session, 0, len(m.st.sessions))
	for _, id := range sortedKeys(m.st.sessions) {
		out = append(out, m.st.sessions[id].view())
	}
	return out
}

// LiveSessions returns the id and TTL of every live session, by id: what the
// session layer needs to (re)build its lease timers, e.g. on becoming leader.
func (m *Machine) LiveSessions() []SessionLease {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]SessionLease, 0, len(m.st.sessions))
	for _, sess := range m.st.sessions {
		out = append(out, SessionLease{ID: sess.id, TTLMs: sess.ttlMs, CreatedIndex: sess.createdIndex})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
