package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/lockservice"
	"github.com/lockd/lockd/paxos"
)

// Errors of the service layer (lock-service errors pass through unchanged;
// lockservice.Code maps them).
var (
	// ErrUnavailable: the outcome is unknown (leadership changed before the
	// commit was seen). Retry with the same request id.
	ErrUnavailable = errors.New("session: outcome unknown, retry with the same request id")
)

// Consensus is what the service needs of the replication engine; *paxos.Node
// provides it.
type Consensus interface {
	Propose(ctx context.Context, cmd []byte) (paxos.Result, error)
	LinearizableRead(ctx context.Context) error
	Status() paxos.Status
}

// Service is the cell's request layer on one replica: it stamps commands
// with the leader's clock, proposes them through Paxos and returns what the
// lock service made of them; it keeps session leases on the leader (never
// logged) and turns their expiry, and the passing of lock deadlines, into
// commands. The API calls it; it is safe for concurrent use.
type Service struct {
	consensus Consensus
	sm        *lockservice.Machine
	leases    *Leases
	now       func() time.Time
	log       hclog.Logger
	self      string

	tickMu      sync.Mutex
	tickPending bool

	promoteMu sync.Mutex // one promotion at a time
}

// ServiceConfig wires a Service.
type ServiceConfig struct {
	Consensus Consensus
	Machine   *lockservice.Machine
	// Grace is added to every session's lease when this replica becomes
	// leader, so clients in jeopardy can find it.
	Grace time.Duration
	// Self is this replica's id, published in leader_changed events.
	Self string
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger hclog.Logger
}

// SessionInfo is a session as the log knows it, plus its lease as this
// replica knows it (zero when this replica does not run leases).
type SessionInfo struct {
	lockservice.Session
	LeaseRemainingMs int64
}

// NewService builds the service.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Service{consensus: cfg.Consensus, sm: cfg.Machine, leases: NewLeases(cfg.Grace), now: cfg.Now,
		log: cfg.Logger.Named("session"), self: cfg.Self}
}

// Machine returns the lock service state machine the service applies to.
func (s *Service) Machine() *lockservice.Machine { return s.sm }

// Leases returns the leader's lease table.
func (s *Service) Leases() *Leases { return s.leases }

// Propose stamps cmd with the leader's clock, proposes it and waits until
// it is applied here; it returns the lock service's result, whose Err is
// also returned.
func (s *Service) Propose(ctx context.Context, cmd lockservice.Command) (lockservice.Result, error) {
	cmd.NowMs = s.now().UnixMilli()
	data, err := lockservice.Encode(cmd)
	if err != nil {
		return lockservice.Result{}, err
	}
	res, err := s.consensus.Propose(ctx, data)
	switch {
	case errors.Is(err, paxos.ErrNotLeader), errors.Is(err, paxos.ErrRecovering):
		return lockservice.Result{}, ErrNotLeader
	case errors.Is(err, paxos.ErrOutcomeUnknown), errors.Is(err, paxos.ErrStopped):
		return lockservice.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case err != nil:
		return lockservice.Result{}, err
	}
	r, ok := res.Value.(lockservice.Result)
	if !ok {
		return lockservice.Result{}, fmt.Errorf("session: unexpected apply result %T", res.Value)
	}
	return r, r.Err
}

// Read makes the local state current for a linearizable read: under the
// leader lease at no log cost. Only the leader can (ErrNotLeader elsewhere).
func (s *Service) Read(ctx context.Context) error {
	err := s.consensus.LinearizableRead(ctx)
	switch {
	case errors.Is(err, paxos.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, paxos.ErrOutcomeUnknown):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// CreateSession creates a session and starts its lease on this leader.
func (s *Service) CreateSession(ctx context.Context, cmd lockservice.Command) (SessionInfo, error) {
	cmd.Kind = lockservice.KindCreateSession
	r, err := s.Propose(ctx, cmd)
	if err != nil {
		return SessionInfo{}, err
	}
	sess := *r.Session
	s.leases.Add(s.now(), sess.ID, time.Duration(sess.TTLMs)*time.Millisecond)
	return s.withLease(sess), nil
}

// KeepAlive extends a session's lease on the leader (not logged) and
// returns the session.
func (s *Service) KeepAlive(ctx context.Context, id string) (SessionInfo, error) {
	if !s.leases.Leading() && s.consensus.Status().Role == paxos.Leader {
		// Just elected: start the leases now rather than refusing the
		// clients that are looking for the new leader.
		s.promote(ctx)
	}
	// Only a leader whose lease holds may extend a session: a leader that was
	// stopped and resumed may still believe it leads while its lease table
	// says every session ran out; the lease read finds it deposed (and the
	// request goes to the real leader) instead of it answering expired.
	if err := s.Read(ctx); err != nil {
		return SessionInfo{}, err
	}
	now := s.now()
	_, err := s.leases.KeepAlive(now, id)
	switch {
	case errors.Is(err, ErrNotLeader):
		return SessionInfo{}, ErrNotLeader
	case errors.Is(err, ErrExpiring):
		return SessionInfo{}, lockservice.ErrSessionExpired
	case errors.Is(err, ErrUnknownSession):
		// Not in the table: created by a command applied after this
		// leader synced, or ended, or never seen. Ask the state machine.
		if err := s.Read(ctx); err != nil {
			return SessionInfo{}, err
		}
		sess, err := s.sm.GetSession(id)
		if err != nil {
			return SessionInfo{}, err
		}
		s.leases.Add(now, sess.ID, time.Duration(sess.TTLMs)*time.Millisecond)
	case err != nil:
		return SessionInfo{}, err
	}
	sess, err := s.sm.GetSession(id)
	if err != nil {
		return SessionInfo{}, err
	}
	return s.withLease(sess), nil
}

// Session returns a session with its lease as this replica knows it.
func (s *Service) Session(id string) (SessionInfo, error) {
	sess, err := s.sm.GetSession(id)
	if err != nil {
		return SessionInfo{}, err
	}
	return s.withLease(sess), nil
}

// Sessions lists every live session with its lease.
func (s *Service) Sessions() []SessionInfo {
	list := s.sm.ListSessions()
	out := make([]SessionInfo, len(list))
	for i := range list {
		out[i] = s.withLease(list[i])
	}
	return out
}

func (s *Service) withLease(sess lockservice.Session) SessionInfo {
	info := SessionInfo{Session: sess}
	if d, ok := s.leases.Remaining(s.now(), sess.ID); ok {
		info.LeaseRemainingMs = d.Milliseconds()
	}
	return info
}

// EndSession ends a session: its locks are released without lock-delay and
// its ephemeral nodes deleted.
func (s *Service) EndSession(ctx context.Context, id string) error {
	_, err := s.Propose(ctx, lockservice.Command{Kind: lockservice.KindEndSession, Session: id})
	if err == nil {
		s.leases.Remove(id)
	}
	return err
}

// Acquire proposes a lock acquisition; when it has to wait, it waits for the
// grant or for the deadline the cell enforces (then lock_held).
func (s *Service) Acquire(ctx context.Context, cmd lockservice.Command) (lockservice.Grant, error) {
	return s.AcquireThen(ctx, cmd, nil)
}

// AcquireThen is Acquire that calls proposed (when not nil) as soon as the
// proposal returned (the acquire was granted, queued or refused, or its
// outcome is unknown), before any wait for the grant: the API ends its
// reservation against the principal's quota of queued waits there, since
// from then on the state machine counts the wait.
func (s *Service) AcquireThen(ctx context.Context, cmd lockservice.Command, proposed func()) (lockservice.Grant, error) {
	cmd.Kind = lockservice.KindAcquire
	r, err := s.Propose(ctx, cmd)
	if proposed != nil {
		proposed()
	}
	if err != nil {
		return lockservice.Grant{}, err
	}
	if r.Grant != nil {
		return *r.Grant, nil
	}
	if !r.Waiting {
		return lockservice.Grant{}, fmt.Errorf("session: acquire neither granted nor waiting")
	}
	// The deadline is in the log; make sure a Tick will enforce it.
	s.scheduleTick()
	return s.sm.AwaitAcquire(ctx, r.WaitID)
}

// Run keeps the leases while this replica leads: it promotes and demotes the
// lease table with leadership, proposes the expiry of sessions whose lease
// ran out, and proposes Ticks when a lock deadline or lock-delay passes. It
// returns when ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastSync time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := s.consensus.Status()
		leading := st.Role == paxos.Leader
		switch {
		case leading && !s.leases.Leading():
			s.promote(ctx)
			lastSync = s.now()
		case !leading && s.leases.Leading():
			s.leases.Demote()
			s.log.Info("session leases stopped", "reason", "not leader")
		}
		if !s.leases.Leading() {
			continue
		}
		now := s.now()
		if now.Sub(lastSync) >= time.Second {
			s.leases.Sync(now, s.live())
			lastSync = now
		}
		for _, id := range s.leases.Expired(now) {
			go s.expire(ctx, id)
		}
		if d, ok := s.sm.NextDeadline(); ok && d <= now.UnixMilli() {
			s.scheduleTick()
		}
	}
}

// promote starts leases once this new leader's state is current: every
// session gets a fresh lease plus grace, and the log records the change.
func (s *Service) promote(ctx context.Context) {
	s.promoteMu.Lock()
	defer s.promoteMu.Unlock()
	if s.leases.Leading() {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := s.consensus.LinearizableRead(rctx); err != nil {
		return // not caught up yet; try on the next tick
	}
	s.leases.Promote(s.now(), s.live())
	s.log.Info("session leases started", "sessions", len(s.live()))
	go func() {
		// Not the caller's ctx: a KeepAlive request may be what promoted.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := s.Propose(pctx, lockservice.Command{Kind: lockservice.KindLeaderChanged, Leader: s.self}); err != nil {
			s.log.Warn("cannot record leader change", "error", err)
		}
	}()
}

func (s *Service) live() []SessionTTL {
	list := s.sm.LiveSessions()
	out := make([]SessionTTL, len(list))
	for i, l := range list {
		out[i] = SessionTTL{ID: l.ID, TTL: time.Duration(l.TTLMs) * time.Millisecond}
	}
	return out
}

func (s *Service) expire(ctx context.Context, id string) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := s.Propose(pctx, lockservice.Command{Kind: lockservice.KindExpireSession, Session: id})
	switch {
	case err == nil:
		s.log.Info("session expired", "session", id)
		s.leases.Remove(id)
	case errors.Is(err, lockservice.ErrSessionExpired), errors.Is(err, lockservice.ErrNotFound):
		s.leases.Remove(id)
	default:
		s.log.Warn("cannot expire session, will retry", "session", id, "error", err)
		s.leases.Retry(s.now(), id)
	}
}

// scheduleTick proposes one Tick (at most one in flight) so that the state
// machine applies deadlines that have passed.
func (s *Service) scheduleTick() {
	s.tickMu.Lock()
	if s.tickPending {
		s.tickMu.Unlock()
		return
	}
	s.tickPending = true
	s.tickMu.Unlock()
	go func() {
		defer func() {
			s.tickMu.Lock()
			s.tickPending = false
			s.tickMu.Unlock()
		}()
		if d, ok := s.sm.NextDeadline(); !ok || d > s.now().UnixMilli() {
			return // nothing due yet: Run schedules it when it is
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.Propose(ctx, lockservice.Command{Kind: lockservice.KindTick}); err != nil &&
			!errors.Is(err, ErrNotLeader) {
			s.log.Debug("tick not applied", "error", err)
		}
	}()
}
