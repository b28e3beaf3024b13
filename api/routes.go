package api

// routes registers every route of API.md. openapi.json describes exactly
// these (TestOpenAPIMatchesRoutes). Who may reach each route is in
// auth.go (routeClasses); a route missing there is for administrators.
func (s *Server) routes() {
	e := s.e
	write := s.onLeader(false) // forwarded to the leader
	read := s.onLeader(true)   // forwarded unless ?stale=true

	e.POST("/v1/sessions", s.createSession, write)
	e.GET("/v1/sessions", s.listSessions, read)
	e.GET("/v1/sessions/:id", s.getSession, read)
	e.DELETE("/v1/sessions/:id", s.endSession, write)
	e.POST("/v1/sessions/:id/keepalive", s.keepAlive, write)

	e.PUT("/v1/nodes/*", s.putNode, write)
	e.GET("/v1/nodes/*", s.getNode, read)
	e.DELETE("/v1/nodes/*", s.deleteNode, write)

	e.POST("/v1/locks/acquire", s.acquire, write)
	e.POST("/v1/locks/release", s.release, write)
	e.GET("/v1/locks", s.listLocks, read)
	e.GET("/v1/locks/*", s.getLock, read)
	e.POST("/v1/sequencers/check", s.checkSequencers, read)
	e.GET("/v1/elections/*", s.election, read)

	e.GET("/v1/watch/*", s.watch) // served locally on any replica

	e.GET("/v1/acls", s.listACLs, read)
	e.GET("/v1/acls/*", s.getACLs, read)
	e.PUT("/v1/acls/*", s.putACL, write)
	e.DELETE("/v1/acls/*", s.deleteACL, write)

	e.GET("/v1/cluster", s.cluster)
	e.GET("/v1/cluster/flow", s.flow)
	e.GET("/v1/cluster/self", s.clusterSelf)
	e.GET("/v1/openapi.json", s.openAPI)
	e.GET("/metrics", s.metrics)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/ui", s.uiRedirect)
	e.GET("/ui/*", s.ui)
}
