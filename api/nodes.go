package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// PUT /v1/nodes/{path}
func (s *Server) putNode(c echo.Context) error {
	path, err := nodePath(c, s.cell)
	if err != nil {
		return err
	}
	cmd, err := decodePutNode(s.cell, path, body(c))
	if err != nil {
		return err
	}
	// An ephemeral node is a presence marker of a session, like a lock:
	// the lock permission; every other write needs write.
	need := lockservice.PermWrite
	if cmd.Ephemeral {
		need = lockservice.PermLock
	}
	if err := s.authorize(c, path, need); err != nil {
		return err
	}
	if cmd.Ephemeral {
		if err := s.useSession(c, c.Request().Context(), cmd.Session); err != nil {
			return err
		}
	}
	r, err := s.svc.Propose(c.Request().Context(), cmd)
	if err != nil {
		return err
	}
	setIndex(c, r.Index)
	status := http.StatusOK
	if r.Created {
		status = http.StatusCreated
	}
	return c.JSON(status, wire.NodeResponse{Node: wireNode(*r.Node, false)})
}

// GET /v1/nodes/{path}[?children=true][&stale=true]
func (s *Server) getNode(c echo.Context) error {
	path, err := nodePath(c, s.cell)
	if err != nil {
		return err
	}
	children, err := boolParam(c, "children")
	if err != nil {
		return err
	}
	if err := s.authorize(c, path, lockservice.PermRead); err != nil {
		return err
	}
	if err := s.readBarrier(c); err != nil {
		return err
	}
	n, err := s.m.GetNode(path)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.NodeResponse{Node: wireNode(n, children)})
}

// DELETE /v1/nodes/{path}[?if_instance=N]
func (s *Server) deleteNode(c echo.Context) error {
	path, err := nodePath(c, s.cell)
	if err != nil {
		return err
	}
	cmd := lockservice.Command{Kind: lockservice.KindDeleteNode, Path: path}
	if n, ok, err := uintParam(c, "if_instance"); err != nil {
		return err
	} else if ok {
		cmd.IfInstance = &n
	}
	if cmd, err = validated(s.cell, cmd); err != nil {
		return err
	}
	if err := s.authorize(c, path, lockservice.PermWrite); err != nil {
		return err
	}
	r, err := s.svc.Propose(c.Request().Context(), cmd)
	if err != nil {
		return err
	}
	setIndex(c, r.Index)
	return c.NoContent(http.StatusNoContent)
}
