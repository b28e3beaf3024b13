package lockd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Mode is a lock mode.
type Mode string

// Lock modes.
const (
	ModeExclusive Mode = "exclusive" // one holder (writer)
	ModeShared    Mode = "shared"    // many holders (readers)
)

const (
	// maxWaitChunk bounds one acquire request's wait_ms when ctx has no
	// deadline (the API allows 300s). Lock re-issues the same request_id
	// after each chunk, so the chunk only bounds how long a wait abandoned
	// by a cancelled ctx lingers on the cell.
	maxWaitChunk = 30 * time.Second
	// maxWaitMs is the API's bound on wait_ms.
	maxWaitMs = 300_000
)

// Grant is one hold of a lock, as the cell granted it.
type Grant struct {
	Path       string
	Mode       Mode
	Generation uint64 // lock generation: rises with every exclusive hold
	Sequencer  string // opaque; see CheckSequencer and FenceMiddleware
	Session    string
}

// locker is the lock of one path held through one session in one mode: the
// part Mutex, RWMutex and Election share.
type locker struct {
	s    *Session
	path string
	mode Mode

	mu        sync.Mutex
	held      *Grant
	releaseID string // request_id of a release not yet known to be done
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// grant returns the current hold, or nil.
func (l *locker) grant() *Grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		return nil
	}
	g := *l.held
	return &g
}

// lock acquires l, waiting until ctx ends if wait, else trying once.
// contents, if non-nil, is written into the node with the grant.
func (l *locker) lock(ctx context.Context, wait bool, contents *string) error {
	if err := l.s.check(); err != nil {
		return fmt.Errorf("lock %s: %w", l.path, err)
	}
	if l.grant() != nil {
		return fmt.Errorf("lock %s: already held through this handle: %w", l.path, ErrLockHeld)
	}
	g, err := l.s.acquire(ctx, l.path, l.mode, contents, wait)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.held, l.releaseID = &g, ""
	l.mu.Unlock()
	return nil
}

// unlock releases the hold. A release whose outcome is unknown keeps its
// request_id, so that calling unlock again repeats it harmlessly.
func (l *locker) unlock(ctx context.Context) error {
	l.mu.Lock()
	g := l.held
	if g == nil {
		l.mu.Unlock()
		return fmt.Errorf("unlock %s: %w", l.path, ErrNotHolder)
	}
	if l.releaseID == "" {
		l.releaseID = newRequestID()
	}
	rid := l.releaseID
	l.mu.Unlock()

	err := l.s.release(ctx, g.Path, g.Generation, rid)
	if err != nil && !errors.Is(err, ErrNotHolder) && !errors.Is(err, ErrSessionExpired) {
		return err // unknown outcome or refused: still held, as far as we know
	}
	l.mu.Lock()
	if l.held == g {
		l.held, l.releaseID = nil, ""
	}
	l.mu.Unlock()
	return err
}

// acquire gets a lock for the session (POST /v1/locks/acquire). With wait,
// it waits in chunks (see maxWaitChunk) until granted or ctx ends, each
// chunk with the same request_id; without, it tries once. The session's end
// cuts the wait short with its error.
func (s *Session) acquire(ctx context.Context, path string, mode Mode, contents *string, wait bool) (Grant, error) {
	if err := s.check(); err != nil {
		return Grant{}, fmt.Errorf("acquire %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return Grant{}, fmt.Errorf("acquire %s: %w", path, err)
	}
	ctx, stop := s.bind(ctx)
	defer stop()
	req := wireAcquire{Path: path, Session: s.id, Mode: string(mode), RequestID: newRequestID()}
	if contents != nil {
		req.Contents, req.ContentsB64 = textOrB64([]byte(*contents))
	}
	for {
		req.WaitMs = 0
		if wait {
			req.WaitMs = waitChunk(ctx)
		}
		var w wireGrantResp
		_, err := s.c.do(ctx, call{method: http.MethodPost, path: "/v1/locks/acquire", body: req,
			retry: retryUnknown, extra: ms(req.WaitMs)}, &w)
		if err == nil {
			g := w.Lock
			return Grant{Path: g.Path, Mode: Mode(g.Mode), Generation: g.Generation, Sequencer: g.Sequencer, Session: g.Session}, nil
		}
		s.observe(err)
		if serr := s.check(); serr != nil {
			return Grant{}, fmt.Errorf("acquire %s: %w", path, serr)
		}
		if wait && req.WaitMs > 0 && errors.Is(err, ErrLockHeld) && ctx.Err() == nil {
			continue // the chunk ran out; wait on with the same request_id
		}
		if !definitive(err) {
			// The cell may still grant this request (it waits there, or was
			// granted and the answer lost): make sure it does not stay held.
			go s.abandon(req)
		}
		if wait && req.WaitMs == 0 && errors.Is(err, ErrLockHeld) && ctx.Err() == nil {
			if _, ok := ctx.Deadline(); ok {
				err = fmt.Errorf("%w (last attempt: %w)", context.DeadlineExceeded, err)
			}
		}
		return Grant{}, fmt.Errorf("acquire %s: %w", path, err)
	}
}

// definitive reports whether err is an answer of the cell that leaves no
// acquire behind: refused, not applied.
func definitive(err error) bool {
	for _, e := range []error{ErrLockHeld, ErrLockDelayed, ErrInvalidArgument, ErrPreconditionFailed,
		ErrSessionExpired, ErrNotFound, ErrUnauthenticated, ErrPermissionDenied, ErrTooLarge} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// abandon cleans up after an acquire the caller gave up on: it repeats the
// request (same request_id: the cell joins the wait, or returns the grant
// it made) and releases whatever it is granted. It is bounded by the
// request's wait and by the session's life (its end releases everything).
func (s *Session) abandon(req wireAcquire) {
	ctx, cancel := context.WithTimeout(s.ctx, ms(req.WaitMs)+2*s.c.cfg.requestTimeout)
	defer cancel()
	var w wireGrantResp
	_, err := s.c.do(ctx, call{method: http.MethodPost, path: "/v1/locks/acquire", body: req,
		retry: retryUnknown, extra: ms(req.WaitMs)}, &w)
	if err != nil {
		s.observe(err)
		return
	}
	if err := s.release(ctx, req.Path, w.Lock.Generation, newRequestID()); err != nil {
		s.c.log.Warn("lockd: releasing an abandoned grant failed", "path", req.Path, "session", s.id, "err", err)
	}
}

// waitChunk is the wait_ms of the next acquire request: up to maxWaitChunk,
// and short enough of ctx's deadline that the cell answers before ctx ends
// (so a grant is never made to a caller that already left).
func waitChunk(ctx context.Context) int64 {
	d := maxWaitChunk
	if dl, ok := ctx.Deadline(); ok {
		rem := time.Until(dl)
		slack := min(time.Second, max(50*time.Millisecond, rem/10))
		d = min(d, rem-slack)
	}
	return min(max(durMs(d), 0), maxWaitMs)
}

// release lets go of one hold (POST /v1/locks/release), repeating rid after
// an unknown outcome.
func (s *Session) release(ctx context.Context, path string, gen uint64, rid string) error {
	req := wireRelease{Path: path, Session: s.id, Generation: gen, RequestID: rid}
	var w wireReleaseResp
	_, err := s.c.do(ctx, call{method: http.MethodPost, path: "/v1/locks/release", body: req, retry: retryUnknown}, &w)
	if err != nil {
		s.observe(err)
		return fmt.Errorf("release %s: %w", path, err)
	}
	return nil
}

// bind returns a context that also ends, with the session's error as cause,
// when the session ends.
func (s *Session) bind(ctx context.Context) (context.Context, func()) {
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(s.Err()) })
	return cctx, func() {
		stop()
		cancel(nil)
	}
}

// Mutex is an exclusive lock on a node, held through a Session: it excludes
// other sessions (processes), not goroutines sharing this Mutex. It is safe
// for concurrent use, but one Mutex holds the lock at most once.
//
// A lock is lost only by Unlock or by the end of its session: watch Lost (or
// run the guarded work under Session.Context), and fence writes with the
// Sequencer, since a process can stall past its session's end.
type Mutex struct {
	l locker
}

// NewMutex returns a Mutex on the node at path (absolute, /ls/<cell>/...),
// held through s. Acquiring creates the node if it does not exist.
func NewMutex(s *Session, path string) *Mutex {
	return &Mutex{l: locker{s: s, path: path, mode: ModeExclusive}}
}

// Lock acquires the lock, waiting in the cell's FIFO queue until it is
// granted or ctx ends. On ctx's end it returns ctx's error (also matching
// ErrLockHeld when the cell answered that last) and cleans up in the
// background: a grant that comes anyway is released. If the session
// expires mid-call, Lock returns at once with an error matching
// ErrSessionExpired; the cell drops the wait when it expires the session.
func (m *Mutex) Lock(ctx context.Context) error { return m.l.lock(ctx, true, nil) }

// TryLock acquires the lock if it is free now: else ErrLockHeld, or
// ErrLockDelayed (with *Error.RetryAfter) if only a lock-delay is in the
// way. On an expired session it returns ErrSessionExpired.
func (m *Mutex) TryLock(ctx context.Context) error { return m.l.lock(ctx, false, nil) }

// Unlock releases the lock; the next waiter gets it in the same commit.
// Without a hold it returns ErrNotHolder. If the session has expired, the
// lock was already released by the cell: Unlock forgets it and returns an
// error matching ErrSessionExpired. If the outcome is unknown (ctx ended,
// cell unreachable), the Mutex still counts as held and Unlock may be called
// again: it repeats the same request_id, so it releases at most once.
func (m *Mutex) Unlock(ctx context.Context) error { return m.l.unlock(ctx) }

// Sequencer returns the sequencer of the current hold, or "" if none. Attach
// it to writes to other services, which check it (FenceMiddleware). It goes
// stale, without any change here, when the session expires.
func (m *Mutex) Sequencer() string {
	if g := m.l.grant(); g != nil {
		return g.Sequencer
	}
	return ""
}

// Generation returns the lock generation of the current hold, or 0.
func (m *Mutex) Generation() uint64 {
	if g := m.l.grant(); g != nil {
		return g.Generation
	}
	return 0
}

// Grant returns the current hold, or nil.
func (m *Mutex) Grant() *Grant { return m.l.grant() }

// Held reports whether this Mutex holds the lock, as far as this client
// knows: locked, not unlocked, and the session has not ended.
func (m *Mutex) Held() bool { return m.l.grant() != nil && m.l.s.Err() == nil }

// Lost returns a channel closed when the lock can no longer be held: the
// session's end. (Unlock is not loss; the channel stays open.)
func (m *Mutex) Lost() <-chan struct{} { return m.l.s.Done() }

// Path returns the lock's node path.
func (m *Mutex) Path() string { return m.l.path }

// RWMutex is a reader/writer lock on a node, held through a Session:
// Lock/Unlock for the exclusive (writer) hold, RLock/RUnlock for the shared
// (reader) hold. A session holds a lock in one mode at a time. Waiters queue
// FIFO: a reader waits behind a queued writer, so writers do not starve.
type RWMutex struct {
	w locker
	r locker
}

// NewRWMutex returns an RWMutex on the node at path, held through s.
func NewRWMutex(s *Session, path string) *RWMutex {
	return &RWMutex{w: locker{s: s, path: path, mode: ModeExclusive}, r: locker{s: s, path: path, mode: ModeShared}}
}

// Lock acquires the exclusive hold; see Mutex.Lock.
func (rw *RWMutex) Lock(ctx context.Context) error { return rw.w.lock(ctx, true, nil) }

// TryLock tries the exclusive hold; see Mutex.TryLock.
func (rw *RWMutex) TryLock(ctx context.Context) error { return rw.w.lock(ctx, false, nil) }

// Unlock releases the exclusive hold; see Mutex.Unlock.
func (rw *RWMutex) Unlock(ctx context.Context) error { return rw.w.unlock(ctx) }

// RLock acquires a shared hold, waiting as Mutex.Lock does.
func (rw *RWMutex) RLock(ctx context.Context) error { return rw.r.lock(ctx, true, nil) }

// TryRLock tries a shared hold; see Mutex.TryLock.
func (rw *RWMutex) TryRLock(ctx context.Context) error { return rw.r.lock(ctx, false, nil) }

// RUnlock releases the shared hold; see Mutex.Unlock.
func (rw *RWMutex) RUnlock(ctx context.Context) error { return rw.r.unlock(ctx) }

// Sequencer returns the sequencer of the current hold (exclusive or
// shared), or "".
func (rw *RWMutex) Sequencer() string {
	if g := rw.Grant(); g != nil {
		return g.Sequencer
	}
	return ""
}

// Grant returns the current hold (exclusive or shared), or nil.
func (rw *RWMutex) Grant() *Grant {
	if g := rw.w.grant(); g != nil {
		return g
	}
	return rw.r.grant()
}

// Lost returns a channel closed when the session ends; see Mutex.Lost.
func (rw *RWMutex) Lost() <-chan struct{} { return rw.w.s.Done() }

// Path returns the lock's node path.
func (rw *RWMutex) Path() string { return rw.w.path }

// LockState is a lock as GET /v1/locks shows it.
type LockState struct {
	Path               string
	Mode               Mode // of the current holders; "" when free
	Generation         uint64
	Holders            []LockHolder
	Waiters            []LockWaiter
	LockDelayRemaining time.Duration
}

// LockHolder is a session holding a lock.
type LockHolder struct {
	Session    string
	Label      string
	Host       string
	PID        int
	SinceIndex uint64
	Mode       Mode   // when the cell says (an extension of API.md)
	Generation uint64 // when the cell says (an extension of API.md)
}

// LockWaiter is a session queued for a lock.
type LockWaiter struct {
	Session string
	Label   string
	Mode    Mode
	Waiting time.Duration
}

func lockState(w wireLockState) LockState {
	ls := LockState{Path: w.Path, Mode: Mode(w.Mode), Generation: w.Generation, LockDelayRemaining: ms(w.LockDelayRemainingMs)}
	for _, h := range w.Holders {
		ls.Holders = append(ls.Holders, LockHolder{Session: h.Session, Label: h.Label, Host: h.Host, PID: h.PID,
			SinceIndex: h.SinceIndex, Mode: Mode(h.Mode), Generation: h.Generation})
	}
	for _, q := range w.Waiters {
		ls.Waiters = append(ls.Waiters, LockWaiter{Session: q.Session, Label: q.Label, Mode: Mode(q.Mode), Waiting: ms(q.WaitingMs)})
	}
	return ls
}

// LockState reads the lock on path: holders and waiters (GET /v1/locks/{path}).
func (c *Client) LockState(ctx context.Context, path string) (*LockState, error) {
	u, err := nodeURL("/v1/locks", path)
	if err != nil {
		return nil, err
	}
	var w wireLockStateResp
	if _, err := c.do(ctx, call{method: http.MethodGet, path: u, retry: retryUnknown}, &w); err != nil {
		return nil, fmt.Errorf("reading lock %s: %w", path, err)
	}
	ls := lockState(w.Lock)
	return &ls, nil
}

// Locks lists every lock with holders or waiters (GET /v1/locks).
func (c *Client) Locks(ctx context.Context) ([]LockState, error) {
	var w wireLockStatesResp
	if _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/locks", retry: retryUnknown}, &w); err != nil {
		return nil, fmt.Errorf("listing locks: %w", err)
	}
	out := make([]LockState, 0, len(w.Locks))
	for _, l := range w.Locks {
		out = append(out, lockState(l))
	}
	return out, nil
}
