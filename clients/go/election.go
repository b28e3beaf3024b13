package lockd

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// Election is leader election on a node, the Chubby recipe on locks: a
// candidate acquires the exclusive lock on the election node with its value
// as the node's contents, in one commit; the leader is the holder; observers
// watch the node. Candidates are served in FIFO order. Leadership is lost
// only by Resign or by the end of the candidate's session, so a leader runs
// its leader-only work under Session.Context and fences its writes with
// Sequencer.
type Election struct {
	l locker

	mu    sync.Mutex
	value string
}

// NewElection returns a candidate handle for the election at path (a node
// path, /ls/<cell>/...), campaigning through s.
func NewElection(s *Session, path string) *Election {
	return &Election{l: locker{s: s, path: path, mode: ModeExclusive}}
}

// LeaderInfo is an election's leader.
type LeaderInfo struct {
	Session    string // the leader's session
	Value      string // what it campaigned or proclaimed with
	Generation uint64 // lock generation of its leadership; rises with every new leader
	Sequencer  string // fences the leader's writes
	Label      string // of the leader's session, when the cell says
	Host       string
	PID        int
	SinceIndex uint64
	Index      uint64 // the log index the read reflects
}

// Campaign waits until this candidate leads the election, publishing value
// atomically with winning, or until ctx ends. Already leading, it updates
// the value (Proclaim). On ctx's end it returns ctx's error and cleans up
// in the background (a late win is resigned at once). If the session
// expires mid-call, Campaign returns at once with an error matching
// ErrSessionExpired; the cell drops the candidacy.
func (e *Election) Campaign(ctx context.Context, value string) error {
	if e.l.grant() != nil {
		return e.Proclaim(ctx, value)
	}
	if err := e.l.lock(ctx, true, &value); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	e.mu.Lock()
	e.value = value
	e.mu.Unlock()
	return nil
}

// Proclaim changes the leader's value without an election. It writes only
// while this candidate still leads: it reads the node, checks the
// leadership's sequencer with the cell, and writes with if_content_generation
// of what it read, so a deposed leader can never overwrite its successor's
// value (a successor's win rewrites the contents, which fails the condition).
// Not leading (any more) is ErrElectionNotLeader. After an unknown outcome
// (ErrUnavailable) calling Proclaim again is safe. If the session expired,
// it returns an error matching ErrSessionExpired.
func (e *Election) Proclaim(ctx context.Context, value string) error {
	g := e.l.grant()
	if g == nil {
		return fmt.Errorf("proclaim %s: %w", e.l.path, ErrElectionNotLeader)
	}
	s := e.l.s
	for range 8 {
		if err := s.check(); err != nil {
			return fmt.Errorf("proclaim %s: %w", e.l.path, err)
		}
		n, err := s.c.Get(ctx, e.l.path)
		if err != nil {
			return fmt.Errorf("proclaim: %w", err)
		}
		if n.LockGeneration != g.Generation {
			return fmt.Errorf("proclaim %s: generation %d leads now: %w", e.l.path, n.LockGeneration, ErrElectionNotLeader)
		}
		st, err := s.c.CheckSequencer(ctx, g.Sequencer)
		if err != nil {
			return fmt.Errorf("proclaim: %w", err)
		}
		if !st.Valid {
			return fmt.Errorf("proclaim %s: %w", e.l.path, ErrElectionNotLeader)
		}
		_, err = s.c.Put(ctx, e.l.path, []byte(value), IfContentGeneration(n.ContentGeneration))
		if errors.Is(err, ErrPreconditionFailed) {
			continue // written meanwhile: check again who leads
		}
		if err != nil {
			return fmt.Errorf("proclaim: %w", err)
		}
		e.mu.Lock()
		e.value = value
		e.mu.Unlock()
		return nil
	}
	return fmt.Errorf("proclaim %s: the value keeps changing: %w", e.l.path, ErrPreconditionFailed)
}

// Resign gives up leadership; the next candidate in line wins in the same
// commit. Not leading, it returns nil. If the session expired, leadership
// was already lost and Resign returns nil. After an unknown outcome it
// returns the error and may be called again (it repeats the same
// request_id).
func (e *Election) Resign(ctx context.Context) error {
	if e.l.grant() == nil {
		return nil
	}
	err := e.l.unlock(ctx)
	if err == nil || errors.Is(err, ErrNotHolder) || errors.Is(err, ErrSessionExpired) {
		return nil
	}
	return fmt.Errorf("resign: %w", err)
}

// IsLeader reports whether this candidate leads, as far as this client
// knows: it won, has not resigned, and its session has not ended.
func (e *Election) IsLeader() bool { return e.l.grant() != nil && e.l.s.Err() == nil }

// Sequencer returns the sequencer of this candidate's leadership, or "".
func (e *Election) Sequencer() string {
	if g := e.l.grant(); g != nil {
		return g.Sequencer
	}
	return ""
}

// Generation returns the lock generation of this candidate's leadership, or 0.
func (e *Election) Generation() uint64 {
	if g := e.l.grant(); g != nil {
		return g.Generation
	}
	return 0
}

// Value returns the value this candidate last campaigned or proclaimed with.
func (e *Election) Value() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.value
}

// Path returns the election node's path.
func (e *Election) Path() string { return e.l.path }

// Session returns the candidate's session.
func (e *Election) Session() *Session { return e.l.s }

// Leader reads the election's current leader (GET /v1/elections/{path});
// without one it returns ErrElectionNoLeader.
func (e *Election) Leader(ctx context.Context) (*LeaderInfo, error) {
	return e.l.s.c.ElectionLeader(ctx, e.l.path)
}

// ElectionLeader reads the current leader of the election at path; without
// one (also when nobody ever campaigned there) it returns
// ErrElectionNoLeader. It needs no session.
func (c *Client) ElectionLeader(ctx context.Context, path string) (*LeaderInfo, error) {
	li, _, err := c.electionLeader(ctx, path)
	if err != nil {
		return nil, err
	}
	if li == nil {
		return nil, fmt.Errorf("election %s: %w", path, ErrElectionNoLeader)
	}
	return li, nil
}

// electionLeader reads the election: its leader (nil when none) and the
// index the read reflects.
func (c *Client) electionLeader(ctx context.Context, path string) (*LeaderInfo, uint64, error) {
	u, err := nodeURL("/v1/elections", path)
	if err != nil {
		return nil, 0, err
	}
	var w wireElectionResp
	idx, err := c.do(ctx, call{method: http.MethodGet, path: u, retry: retryUnknown}, &w)
	var ae *Error
	if errors.As(err, &ae) && ae.Code == "not_found" {
		return nil, ae.Index, nil // no election node yet: no leader
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading election %s: %w", path, err)
	}
	if w.Leader == nil {
		return nil, idx, nil
	}
	l := w.Leader
	li := &LeaderInfo{Session: l.Session, Generation: l.Generation, Sequencer: l.Sequencer, Label: l.Label,
		Host: l.Host, PID: l.PID, SinceIndex: l.SinceIndex, Index: idx}
	switch {
	case l.Value != nil:
		li.Value = *l.Value
	case l.ValueB64 != "":
		b, err := base64.StdEncoding.DecodeString(l.ValueB64)
		if err != nil {
			return nil, 0, fmt.Errorf("election %s: value_b64: %w", path, err)
		}
		li.Value = string(b)
	}
	return li, idx, nil
}

// Observe returns a channel of the election's leaders: the current one (if
// any) at once, then each new leader or new value, in order, each once. A
// vacancy is not sent; the next leader is. It is built on a watch of the
// election node and re-reads the leader on every lock or contents event, so
// it survives reconnects and leader changes of the cell. The channel is
// closed when ctx ends. It needs no leadership; any candidate may observe,
// and the end of the candidate's session does not end it.
func (e *Election) Observe(ctx context.Context) <-chan LeaderInfo {
	return e.l.s.c.ObserveElection(ctx, e.l.path)
}

// ObserveElection is Election.Observe for the election at path, without a
// session.
func (c *Client) ObserveElection(ctx context.Context, path string) <-chan LeaderInfo {
	ch := make(chan LeaderInfo)
	go func() {
		defer close(ch)
		var last LeaderInfo
		emit := func(li *LeaderInfo) bool {
			if li == nil || (li.Session == last.Session && li.Generation == last.Generation && li.Value == last.Value) {
				return true
			}
			if li.Generation < last.Generation {
				return true // an older read answered late; a newer leader was sent
			}
			select {
			case ch <- *li:
				last = *li
				return true
			case <-ctx.Done():
				return false
			}
		}
		read := func() (*LeaderInfo, uint64, error) { return c.electionLeader(ctx, path) }
		for attempt := 0; ctx.Err() == nil; attempt++ {
			li, idx, err := read()
			if err != nil {
				if sleepCtx(ctx, backoff(attempt)) != nil {
					return
				}
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			w := c.Watch(wctx, path, SinceIndex(idx), ResumeAfterCompaction())
			if !emit(li) {
				cancel()
				return
			}
			for ev := range w.Events() {
				switch ev.Type {
				case EventLockAcquired, EventLockReleased, EventContentsChanged, EventNodeCreated, EventNodeDeleted, EventCompacted:
				default:
					continue
				}
				li, _, err := read()
				if err != nil {
					break // read again from the top, with a new watch
				}
				if !emit(li) {
					cancel()
					return
				}
			}
			cancel()
			if sleepCtx(ctx, backoff(attempt)) != nil {
				return
			}
		}
	}()
	return ch
}
