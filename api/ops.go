package api

import (
	_ "embed"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
)

// openAPIDoc is the OpenAPI 3 description of every route (openapi.json).
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI 3 document served at /v1/openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

// GET /v1/openapi.json
func (s *Server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDoc)
}

// GET /v1/cluster: delegated to Options.Cluster.
func (s *Server) cluster(c echo.Context) error {
	if s.opts.Cluster == nil {
		id, u := s.leader()
		return c.JSON(http.StatusOK, wire.Cluster{Cell: s.cell, Leader: id, LeaderURL: u, Replicas: []wire.Replica{}})
	}
	body, err := s.opts.Cluster(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, body)
}

// GET /v1/cluster/self: this replica's view of itself, delegated to
// Options.SelfStatus (the cell view of other replicas is built from it).
func (s *Server) clusterSelf(c echo.Context) error {
	if s.opts.SelfStatus == nil {
		return c.JSON(http.StatusOK, map[string]any{"id": s.opts.Self})
	}
	return c.JSON(http.StatusOK, s.opts.SelfStatus())
}

// GET /v1/cluster/flow?since=N: delegated to Options.Flow.
func (s *Server) flow(c echo.Context) error {
	since, _, err := uintParam(c, "since")
	if err != nil {
		return err
	}
	if s.opts.Flow == nil {
		return c.JSON(http.StatusOK, wire.Flow{Messages: []wire.FlowMessage{}})
	}
	return c.JSON(http.StatusOK, s.opts.Flow(since))
}

// GET /metrics
func (s *Server) metrics(c echo.Context) error {
	if s.opts.Metrics == nil {
		return newError(http.StatusNotFound, wire.CodeNotFound, "metrics are not enabled on this replica")
	}
	s.opts.Metrics.ServeHTTP(c.Response(), c.Request())
	return nil
}

// GET /healthz: the process is up.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, wire.Status{Status: "ok"})
}

// GET /readyz: Options.Ready, or "a leader is known".
func (s *Server) readyz(c echo.Context) error {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			return unavailable("not ready: %v", err)
		}
		return c.JSON(http.StatusOK, wire.Status{Status: "ready"})
	}
	if id, _ := s.leader(); id == "" {
		return noLeader("not ready: no leader known")
	}
	return c.JSON(http.StatusOK, wire.Status{Status: "ready"})
}

// GET /ui redirects to /ui/.
func (s *Server) uiRedirect(c echo.Context) error {
	return c.Redirect(http.StatusMovedPermanently, "/ui/")
}

// GET /ui/*: the dashboard, which sees the path without /ui.
func (s *Server) ui(c echo.Context) error {
	if s.opts.UI == nil {
		return newError(http.StatusNotFound, wire.CodeNotFound, "the dashboard is not enabled on this replica")
	}
	r := c.Request()
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + strings.TrimPrefix(c.Param("*"), "/")
	r2.URL.RawPath = ""
	s.opts.UI.ServeHTTP(c.Response(), r2)
	return nil
}
