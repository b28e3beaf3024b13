package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// POST /v1/sessions
func (s *Server) createSession(c echo.Context) error {
	cmd, err := decodeCreateSession(s.cell, body(c))
	if err != nil {
		return err
	}
	p := s.principalFrom(c)
	done, err := p.state.reserveSession(s.usage(p).Sessions)
	if err != nil {
		return err
	}
	defer done()
	cmd.Principal = p.name
	si, err := s.svc.CreateSession(c.Request().Context(), cmd)
	if err != nil {
		return err
	}
	setIndex(c, si.CreatedIndex)
	return c.JSON(http.StatusCreated, wire.SessionResponse{Session: wireSession(si)})
}

// POST /v1/sessions/{id}/keepalive
func (s *Server) keepAlive(c echo.Context) error {
	id := c.Param("id")
	if err := checkSessionID(s.cell, id); err != nil {
		return err
	}
	if err := decodeEmpty(body(c)); err != nil {
		return err
	}
	if err := s.principalFrom(c).state.allowKeepAlive(); err != nil {
		return err
	}
	if err := s.useSession(c, c.Request().Context(), id); err != nil {
		return err
	}
	si, err := s.svc.KeepAlive(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.SessionResponse{Session: wireSession(si)})
}

// GET /v1/sessions/{id}
func (s *Server) getSession(c echo.Context) error {
	id := c.Param("id")
	if err := checkSessionID(s.cell, id); err != nil {
		return err
	}
	if err := s.readBarrier(c); err != nil {
		return err
	}
	si, err := s.svc.Session(id)
	if err != nil {
		return err
	}
	if p := s.principalFrom(c); !s.owns(p, si.Session) {
		return forbidden("session %s belongs to another principal; %s may not read it", id, p)
	}
	return c.JSON(http.StatusOK, wire.SessionResponse{Session: wireSession(si)})
}

// GET /v1/sessions
func (s *Server) listSessions(c echo.Context) error {
	if err := s.readBarrier(c); err != nil {
		return err
	}
	list := s.svc.Sessions()
	out := make([]wire.Session, len(list))
	for i := range list {
		out[i] = wireSession(list[i])
	}
	return c.JSON(http.StatusOK, wire.SessionsResponse{Sessions: out})
}

// DELETE /v1/sessions/{id}
func (s *Server) endSession(c echo.Context) error {
	id := c.Param("id")
	if err := checkSessionID(s.cell, id); err != nil {
		return err
	}
	if err := s.useSession(c, c.Request().Context(), id); err != nil {
		return err
	}
	if err := s.svc.EndSession(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// readBarrier prepares a read: unless ?stale=true it makes the local state
// linearizable (session.ErrNotLeader on a follower, which onLeader turns
// into forwarding). It then stamps X-Lockd-Index with the index the read
// reflects at least.
func (s *Server) readBarrier(c echo.Context) error {
	if !isStale(c) {
		if err := s.svc.Read(c.Request().Context()); err != nil {
			return err
		}
	}
	s.markIndex(c)
	return nil
}

// Pre-checks. A command naming a session that is not live, or releasing a
// hold the session does not have, would be refused by Apply, but only after
// taking a log slot (which advances the applied index and the clock). These
// checks answer such requests from a linearizable read of the same state
// instead, so bad input leaves the machine untouched. They only ever refuse
// what Apply would refuse at that point; Apply stays the authority for
// everything they let through.

// liveSession returns session id when it is live, else the error Apply
// would give (session_expired, not_found). An ended session never comes
// back, so a local "expired" is final; "not found" is confirmed after a
// linearizable read (a follower's state may lag).
func (s *Server) liveSession(ctx context.Context, id string) (lockservice.Session, error) {
	sess, err := s.m.GetSession(id)
	if err == nil || errors.Is(err, lockservice.ErrSessionExpired) {
		return sess, err
	}
	if err := s.svc.Read(ctx); err != nil {
		return lockservice.Session{}, err
	}
	return s.m.GetSession(id)
}

// useSession returns nil when session id is live and the request's
// principal may use it (its creator, or an administrator): else the error
// of liveSession, or permission_denied. A session's owner never changes,
// so the check stays true until the session ends.
func (s *Server) useSession(c echo.Context, ctx context.Context, id string) error {
	sess, err := s.liveSession(ctx, id)
	if err != nil {
		return err
	}
	if p := s.principalFrom(c); !s.owns(p, sess) {
		return forbidden("session %s belongs to another principal; %s may not use it", id, p)
	}
	return nil
}

// holds returns nil when session id holds the lock at path at generation,
// else not_holder, confirmed after a linearizable read.
func (s *Server) holds(ctx context.Context, id, path string, generation uint64) error {
	if s.holdsNow(id, path, generation) {
		return nil
	}
	if err := s.svc.Read(ctx); err != nil {
		return err
	}
	if s.holdsNow(id, path, generation) {
		return nil
	}
	return &lockservice.Error{Err: lockservice.ErrNotHolder,
		Msg: fmt.Sprintf("session %s does not hold %s at generation %d", id, path, generation)}
}

func (s *Server) holdsNow(id, path string, generation uint64) bool {
	l, err := s.m.GetLock(path, 0)
	if err != nil {
		return false
	}
	for _, h := range l.Holders {
		if h.Session == id && h.Generation == generation {
			return true
		}
	}
	return false
}
