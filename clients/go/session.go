package lockd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

// State is where a Session stands, as far as this client can tell.
type State int

// Session states. A session starts Safe, may go to Jeopardy and back, and
// ends Expired or Closed; the two end states are final.
const (
	// StateSafe: the last KeepAlive was answered and the local deadline is
	// ahead.
	StateSafe State = iota + 1
	// StateJeopardy: a KeepAlive failed; the session may still be alive
	// (the Client is trying every endpoint), but locks should be treated as
	// at risk. It goes back to Safe when a KeepAlive is answered before the
	// local deadline.
	StateJeopardy
	// StateExpired: the local deadline passed without an answer, or the cell
	// said the session expired or was ended. Done is closed and Context is
	// cancelled. Every lock of the session is lost.
	StateExpired
	// StateClosed: Close ended the session.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateSafe:
		return "safe"
	case StateJeopardy:
		return "jeopardy"
	case StateExpired:
		return "expired"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

func (s State) final() bool { return s == StateExpired || s == StateClosed }

// Session is a lockd session: a lease on the cell kept alive in the
// background, which every lock, election candidacy and ephemeral node of it
// depends on. It is safe for concurrent use.
//
// # Keeping alive
//
// A goroutine renews the lease (POST .../keepalive) when a third of what is
// left of it locally has passed (about every TTL/3), and retries at once on
// another endpoint after a failure, with short backoff, until it gets an
// answer or the local deadline passes.
//
// # The local deadline
//
// The session expires here before it can expire on the cell. After each
// answered KeepAlive the local deadline is
//
//	(when that request was sent) + lease_remaining_ms − skew margin
//
// The cell extended the lease no earlier than the request was sent, so its
// own deadline is later than send + lease_remaining; a new leader adds a
// grace period on top. The skew margin (WithSkewMargin) covers clocks that
// run at slightly different rates. So by the time the cell could expire the
// session and grant its locks to others (after lock-delay, besides), Done has
// long been closed and Context cancelled here: work guarded by a lock and
// run under Context stops by itself.
//
// # Observing
//
// State, StateChanges (a channel) and WithStateFunc (a callback) report
// Safe → Jeopardy → Expired; Done and Context report the end; Err says why.
type Session struct {
	c         *Client
	id        string
	ttl       time.Duration
	lockDelay time.Duration
	margin    time.Duration
	onState   []func(State)

	ctx    context.Context // cancelled, with the cause, when the session ends
	cancel context.CancelCauseFunc

	closing   chan struct{} // closed by Close: stop renewing
	closeOnce sync.Once
	loopDone  chan struct{}
	wake      chan struct{} // to the callback goroutine

	mu       sync.Mutex
	state    State
	deadline time.Time
	err      error
	subs     []chan State
	pending  []State // for the callbacks, in order
	ended    bool    // Close ran
}

// NewSession creates a session on the cell (POST /v1/sessions) and starts
// keeping it alive. ctx bounds the creation only; the session lives until it
// expires or Close is called. A creation retried after an unknown outcome may
// leave an empty extra session on the cell, which expires after its TTL.
func NewSession(ctx context.Context, c *Client, opts ...SessionOption) (*Session, error) {
	var cfg sessionConfig
	for _, o := range opts {
		o(&cfg)
	}
	req := wireCreateSession{TTLMs: durMs(cfg.ttl), Label: cfg.label, PID: os.Getpid()}
	req.Host, _ = os.Hostname()
	if cfg.lockDelay != nil {
		d := durMs(*cfg.lockDelay)
		req.LockDelayMs = &d
	}
	var sent time.Time
	var w wireSessionResp
	if _, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/sessions", body: req, retry: retryUnknown, sentAt: &sent}, &w); err != nil {
		return nil, fmt.Errorf("creating session: %w", err)
	}
	s := &Session{
		c: c, id: w.Session.ID, ttl: ms(w.Session.TTLMs), lockDelay: ms(w.Session.LockDelayMs), onState: cfg.onState,
		closing: make(chan struct{}), loopDone: make(chan struct{}), wake: make(chan struct{}, 1), state: StateSafe,
	}
	if s.ttl <= 0 {
		s.ttl = cfg.ttl
	}
	if s.ttl <= 0 {
		s.ttl = 10 * time.Second
	}
	s.margin = cfg.margin
	if s.margin <= 0 {
		s.margin = max(500*time.Millisecond, s.ttl/10)
	}
	s.margin = min(s.margin, s.ttl/2)
	s.deadline = s.deadlineFrom(sent, w.Session.LeaseRemainingMs)
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	if len(s.onState) > 0 {
		go s.dispatch()
	}
	go s.keepAlive()
	return s, nil
}

// ID returns the session id the cell gave.
func (s *Session) ID() string { return s.id }

// TTL returns the session's TTL as the cell granted it.
func (s *Session) TTL() time.Duration { return s.ttl }

// LockDelay returns the session's lock-delay as the cell granted it.
func (s *Session) LockDelay() time.Duration { return s.lockDelay }

// Client returns the Client the session was made with.
func (s *Session) Client() *Client { return s.c }

// State returns the session's current state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Deadline returns the local deadline: if no KeepAlive is answered before
// it, the session expires here.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// Done returns a channel closed when the session ends (Expired or Closed).
func (s *Session) Done() <-chan struct{} { return s.ctx.Done() }

// Context returns a context cancelled when the session ends; its
// context.Cause is Err. Run work guarded by the session's locks under it.
func (s *Session) Context() context.Context { return s.ctx }

// Err returns nil while the session lives, then why it ended: an error
// matching ErrSessionExpired, or ErrSessionClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// StateChanges returns a new channel that receives the current state at
// once and then every change. It holds only the latest state not yet
// received (a slow reader skips intermediate states, never the last one); it
// receives the final state and is then closed.
func (s *Session) StateChanges() <-chan State {
	ch := make(chan State, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	ch <- s.state
	if s.state.final() {
		close(ch)
		return ch
	}
	s.subs = append(s.subs, ch)
	return ch
}

// Close ends the session: it stops renewing, cancels Context (so guarded
// work stops first), then asks the cell to end the session (DELETE), which
// releases its locks without lock-delay and deletes its ephemeral nodes. If
// the cell cannot be reached the session still ends here, and on the cell
// when its lease runs out; Close then returns the error. Closing a session
// that expired here tries the DELETE once, briefly, and returns nil; a
// second Close does nothing.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closing) })
	<-s.loopDone
	s.mu.Lock()
	wasExpired, ended := s.state == StateExpired, s.ended
	s.ended = true
	s.mu.Unlock()
	if ended {
		return nil // Close ran before
	}
	s.finish(StateClosed, ErrSessionClosed)
	del := call{method: http.MethodDelete, path: "/v1/sessions/" + url.PathEscape(s.id), retry: retryUnknown}
	if wasExpired {
		// Expired here, perhaps not yet on the cell (the link was down):
		// ending it now releases its locks sooner. Its work was cancelled
		// with its Context long ago. Best effort: the cell expires it anyway.
		del.window = time.Second
		_, _ = s.c.do(ctx, del, nil)
		return nil
	}
	if _, err := s.c.do(ctx, del, nil); err != nil && !errors.Is(err, ErrSessionExpired) {
		return fmt.Errorf("ending session %s: %w", s.id, err)
	}
	return nil
}

// Info reads the session as the cell sees it (GET /v1/sessions/{id}).
func (s *Session) Info(ctx context.Context) (*SessionInfo, error) {
	return s.c.Session(ctx, s.id)
}

// check returns the session's end error, or nil while it lives.
func (s *Session) check() error {
	if err := s.Err(); err != nil {
		return fmt.Errorf("session %s: %w", s.id, err)
	}
	return nil
}

// observe ends the session here if err says the cell ended it.
func (s *Session) observe(err error) {
	if errors.Is(err, ErrSessionExpired) {
		s.finish(StateExpired, err)
	}
}

func (s *Session) deadlineFrom(sent time.Time, leaseMs int64) time.Time {
	lease := ms(leaseMs)
	if lease <= 0 {
		lease = s.ttl
	}
	return sent.Add(lease - s.margin)
}

// keepAlive is the renewal loop (see Session).
func (s *Session) keepAlive() {
	defer close(s.loopDone)
	// Renew after a third of what is left of the local lease: about TTL/3
	// for long TTLs, and still three tries before the local deadline for
	// short ones, where the skew margin takes a large share.
	nextAfter := func() time.Time {
		now := time.Now()
		return now.Add(max(s.Deadline().Sub(now)/3, 10*time.Millisecond))
	}
	next := nextAfter()
	for {
		deadline := s.Deadline()
		renew := time.NewTimer(time.Until(next))
		expire := time.NewTimer(time.Until(deadline))
		select {
		case <-s.closing:
		case <-expire.C:
			s.finish(StateExpired, fmt.Errorf("no keepalive answered before the local deadline: %w", ErrSessionExpired))
		case <-renew.C:
		}
		renew.Stop()
		expire.Stop()
		if s.State().final() || isClosed(s.closing) {
			return
		}
		if !time.Now().Before(deadline) {
			s.finish(StateExpired, fmt.Errorf("no keepalive answered before the local deadline: %w", ErrSessionExpired))
			return
		}
		if s.renew(deadline) {
			next = nextAfter()
		} else {
			next = time.Now().Add(min(s.ttl/10, 100*time.Millisecond))
		}
	}
}

// renew sends KeepAlives until one is answered or the deadline passes, and
// reports whether one was answered.
func (s *Session) renew(deadline time.Time) bool {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	var sent time.Time
	var w wireSessionResp
	_, err := s.c.do(ctx, call{
		method: http.MethodPost, path: "/v1/sessions/" + url.PathEscape(s.id) + "/keepalive", retry: retryUnknown,
		timeout: min(max(s.ttl/3, 300*time.Millisecond), s.c.cfg.requestTimeout),
		window:  time.Until(deadline), sentAt: &sent,
		onRetry: func(err error) { s.setState(StateJeopardy) },
	}, &w)
	switch {
	case err == nil && w.Session.LeaseRemainingMs <= 0:
		// An answer without a lease (not from a leader running leases)
		// extends nothing: try again soon.
		return false
	case err == nil:
		s.mu.Lock()
		s.deadline = s.deadlineFrom(sent, w.Session.LeaseRemainingMs)
		s.mu.Unlock()
		s.setState(StateSafe)
		return true
	case errors.Is(err, ErrSessionExpired):
		s.finish(StateExpired, err)
	case errors.Is(err, ErrNotFound):
		s.finish(StateExpired, fmt.Errorf("the cell does not know the session (%w): %w", err, ErrSessionExpired))
	case isClosed(s.closing):
	default:
		// The deadline timer of the loop decides expiry; until then, jeopardy.
		s.c.log.Warn("lockd: session keepalive failed", "session", s.id, "err", err)
		s.setState(StateJeopardy)
	}
	return false
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// setState moves a live session between Safe and Jeopardy.
func (s *Session) setState(st State) {
	s.mu.Lock()
	if s.state == st || s.state.final() {
		s.mu.Unlock()
		return
	}
	if st == StateJeopardy {
		s.c.log.Warn("lockd: session in jeopardy", "session", s.id)
	}
	s.transitionLocked(st)
	s.mu.Unlock()
}

// finish ends the session with state st and cause err; it reports false if
// the session had already ended.
func (s *Session) finish(st State, err error) bool {
	s.mu.Lock()
	if s.state.final() {
		s.mu.Unlock()
		return false
	}
	s.err = err
	s.transitionLocked(st)
	s.mu.Unlock()
	s.cancel(err)
	s.closeOnce.Do(func() { close(s.closing) })
	if st == StateExpired {
		s.c.log.Warn("lockd: session expired", "session", s.id, "err", err)
	}
	return true
}

func (s *Session) transitionLocked(st State) {
	s.state = st
	for _, ch := range s.subs {
		select { // keep only the latest state
		case <-ch:
		default:
		}
		ch <- st
		if st.final() {
			close(ch)
		}
	}
	if st.final() {
		s.subs = nil
	}
	if len(s.onState) > 0 {
		s.pending = append(s.pending, st)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// dispatch calls the WithStateFunc callbacks, in order, until the final
// state was delivered.
func (s *Session) dispatch() {
	for range s.wake {
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, st := range batch {
			for _, f := range s.onState {
				f(st)
			}
			if st.final() {
				return
			}
		}
	}
}

// SessionInfo is a session as the cell shows it.
type SessionInfo struct {
	ID             string
	TTL            time.Duration
	LockDelay      time.Duration
	LeaseRemaining time.Duration // on the leader, when it answered
	Label          string
	Host           string
	PID            int
	CreatedIndex   uint64
	Locks          []string // paths of the locks it holds
	Ephemerals     []string // paths of its ephemeral nodes
}

func sessionInfo(w wireSession) *SessionInfo {
	return &SessionInfo{ID: w.ID, TTL: ms(w.TTLMs), LockDelay: ms(w.LockDelayMs), LeaseRemaining: ms(w.LeaseRemainingMs),
		Label: w.Label, Host: w.Host, PID: w.PID, CreatedIndex: w.CreatedIndex, Locks: w.Locks, Ephemerals: w.Ephemerals}
}

// Session reads one session (GET /v1/sessions/{id}).
func (c *Client) Session(ctx context.Context, id string) (*SessionInfo, error) {
	var w wireSessionResp
	if _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/sessions/" + url.PathEscape(id), retry: retryUnknown}, &w); err != nil {
		return nil, fmt.Errorf("reading session %s: %w", id, err)
	}
	return sessionInfo(w.Session), nil
}

// Sessions lists the cell's live sessions (GET /v1/sessions).
func (c *Client) Sessions(ctx context.Context) ([]SessionInfo, error) {
	var w wireSessionsResp
	if _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/sessions", retry: retryUnknown}, &w); err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	out := make([]SessionInfo, 0, len(w.Sessions))
	for _, ws := range w.Sessions {
		out = append(out, *sessionInfo(ws))
	}
	return out, nil
}
