package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// POST /v1/locks/acquire. With wait_ms > 0 it blocks until the grant or the
// deadline the cell enforces (lock_held). The request's context (and
// Shutdown) end the wait here, not in the cell: the queued waiter stays
// until its deadline, and a retry with the same request_id joins it.
func (s *Server) acquire(c echo.Context) error {
	cmd, err := decodeAcquire(s.cell, body(c))
	if err != nil {
		return err
	}
	// Contents given with the grant are a write of the node too.
	need := lockservice.PermLock
	if cmd.Contents != nil {
		need |= lockservice.PermWrite
	}
	if err := s.authorize(c, cmd.Path, need); err != nil {
		return err
	}
	ctx, cancel := s.waitContext(c)
	defer cancel()
	if err := s.useSession(c, ctx, cmd.Session); err != nil {
		return err
	}
	proposed := func() {}
	if cmd.WaitMs > 0 {
		p := s.principalFrom(c)
		if proposed, err = p.state.reserveWait(s.usage(p).Waiters); err != nil {
			return err
		}
		defer proposed()
	}
	g, err := s.svc.AcquireThen(ctx, cmd, proposed)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.LockResponse{Lock: wireGrant(g)})
}

// POST /v1/locks/release
func (s *Server) release(c echo.Context) error {
	cmd, err := decodeRelease(s.cell, body(c))
	if err != nil {
		return err
	}
	if err := s.authorize(c, cmd.Path, lockservice.PermLock); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.useSession(c, ctx, cmd.Session); err != nil {
		return err
	}
	if cmd.RequestID == "" {
		// With a request_id, a repeat of a done release must answer 200
		// from the request table although the hold is gone: only the
		// log can tell.
		if err := s.holds(ctx, cmd.Session, cmd.Path, cmd.Generation); err != nil {
			return err
		}
	}
	r, err := s.svc.Propose(ctx, cmd)
	if err != nil {
		return err
	}
	setIndex(c, r.Index)
	return c.JSON(http.StatusOK, wire.ReleaseResponse{Released: r.Released})
}

// GET /v1/locks/{path}
func (s *Server) getLock(c echo.Context) error {
	path, err := nodePath(c, s.cell)
	if err != nil {
		return err
	}
	if err := s.authorize(c, path, lockservice.PermRead); err != nil {
		return err
	}
	if err := s.readBarrier(c); err != nil {
		return err
	}
	l, err := s.m.GetLock(path, s.now().UnixMilli())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.LockStateResponse{Lock: wireLock(l)})
}

// GET /v1/locks
func (s *Server) listLocks(c echo.Context) error {
	if err := s.readBarrier(c); err != nil {
		return err
	}
	list := s.m.ListLocks(s.now().UnixMilli())
	out := make([]wire.LockState, len(list))
	for i, l := range list {
		out[i] = wireLock(l)
	}
	return c.JSON(http.StatusOK, wire.LocksResponse{Locks: out})
}

// POST /v1/sequencers/check: a read (linearizable unless ?stale=true).
func (s *Server) checkSequencers(c echo.Context) error {
	seqs, batch, err := decodeCheckSequencers(body(c))
	if err != nil {
		return err
	}
	// Checking a sequencer reads its lock: read on its path. A garbled one
	// has no path; checking it below answers invalid_argument.
	for _, sq := range seqs {
		if seq, err := lockservice.ParseSequencer(sq); err == nil {
			if err := s.authorize(c, seq.Path, lockservice.PermRead); err != nil {
				return err
			}
		}
	}
	if err := s.readBarrier(c); err != nil {
		return err
	}
	results := make([]wire.SequencerResult, len(seqs))
	for i, sq := range seqs {
		valid, gen, err := s.m.CheckSequencer(sq)
		if err != nil {
			if batch {
				return invalid("sequencers[%d]: %s", i, s.toError(err).Message)
			}
			return err
		}
		results[i] = wire.SequencerResult{Valid: valid, CurrentGeneration: gen}
	}
	if !batch {
		return c.JSON(http.StatusOK, results[0])
	}
	return c.JSON(http.StatusOK, wire.CheckSequencersResponse{Results: results})
}

// GET /v1/elections/{path}
func (s *Server) election(c echo.Context) error {
	path, err := nodePath(c, s.cell)
	if err != nil {
		return err
	}
	if err := s.authorize(c, path, lockservice.PermRead); err != nil {
		return err
	}
	if err := s.readBarrier(c); err != nil {
		return err
	}
	l, err := s.m.Election(path)
	if errors.Is(err, lockservice.ErrNotFound) {
		// No such election node yet: nobody leads it (API.md: null).
		return c.JSON(http.StatusOK, wire.ElectionResponse{})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.ElectionResponse{Leader: wireElection(l)})
}
