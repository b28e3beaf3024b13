package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/session"
)

// Forwarding (see doc.go, "Leader and forwarding").
//
// Routes that need the leader (every write, and every read without
// ?stale=true) are registered with onLeader. It decides in two steps:
//
//  1. Before the handler: when Leader() names another replica, the request
//     goes there at once (or, with NoForward or an X-Lockd-Forwarded
//     request, is answered not_leader).
//  2. When this replica believes it leads (or knows no leader), the handler
//     runs. If the service answers session.ErrNotLeader, nothing happened
//     (the service refuses before proposing or reading), the response is
//     not started, and the buffered body is rewound, so the request is
//     forwarded to whoever Leader() names now, or answered no_leader.

// onLeader is the middleware of routes that the leader must answer; read
// marks linearizable reads, which ?stale=true serves locally instead.
func (s *Server) onLeader(read bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if read {
				stale, err := boolParam(c, "stale")
				if err != nil {
					return err
				}
				if stale {
					return next(c)
				}
			}
			if id, u := s.leader(); id != "" && id != s.self {
				return s.toLeader(c, id, u)
			}
			err := next(c)
			if !errors.Is(err, session.ErrNotLeader) || c.Response().Committed {
				return err
			}
			id, u := s.leader()
			if id == "" || id == s.self {
				return noLeader("replica %s is not the leader and knows of none", s.self)
			}
			rewind(c.Request(), body(c))
			return s.toLeader(c, id, u)
		}
	}
}

// isStale reports whether a read asked for ?stale=true (parsed already by
// onLeader, so a bad value never gets here).
func isStale(c echo.Context) bool {
	v, _ := strconv.ParseBool(c.QueryParam("stale"))
	return v
}

// toLeader forwards the request to the leader, or says where it is.
func (s *Server) toLeader(c echo.Context, id, leaderURL string) error {
	if leaderURL == "" {
		return noLeader("the leader, replica %s, has no known client URL", id)
	}
	if s.opts.NoForward || c.Request().Header.Get(wire.HeaderForwarded) != "" {
		e := newError(http.StatusMisdirectedRequest, wire.CodeNotLeader,
			"replica %s is not the leader; send the request to replica %s at %s", s.self, id, leaderURL)
		e.Leader = leaderURL
		return e
	}
	return s.fwd.forward(c, leaderURL)
}

// forwarder proxies requests to the leader with httputil.ReverseProxy.
type forwarder struct {
	s         *Server
	transport http.RoundTripper
	mu        sync.Mutex
	proxies   map[string]*httputil.ReverseProxy
}

func newForwarder(s *Server, rt http.RoundTripper) *forwarder {
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		t.IdleConnTimeout = 90 * time.Second
		rt = t
	}
	return &forwarder{s: s, transport: rt, proxies: map[string]*httputil.ReverseProxy{}}
}

type proxyErrKey struct{}

// proxyErr carries a ReverseProxy failure back to forward, so that the
// central error handler answers it.
type proxyErr struct{ err error }

func (f *forwarder) proxy(target string) (*httputil.ReverseProxy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.proxies[target]; ok {
		return p, nil
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, noLeader("the leader's client URL %q is not usable", target)
	}
	self := f.s.self
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
			pr.Out.Header.Set(wire.HeaderForwarded, self)
		},
		Transport:     f.transport,
		FlushInterval: -1,
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
			if pe, ok := r.Context().Value(proxyErrKey{}).(*proxyErr); ok {
				pe.err = err
			}
		},
	}
	f.proxies[target] = p
	return p, nil
}

// forward sends the request to the leader and copies its answer back.
func (f *forwarder) forward(c echo.Context, target string) error {
	p, err := f.proxy(target)
	if err != nil {
		return err
	}
	pe := &proxyErr{}
	// Shutdown ends forwarded requests too (a blocking acquire may wait
	// for minutes at the leader).
	ctx, cancel := f.s.waitContext(c)
	defer cancel()
	r := c.Request().WithContext(context.WithValue(ctx, proxyErrKey{}, pe))
	p.ServeHTTP(c.Response(), r)
	switch {
	case pe.err == nil:
		return nil
	case f.s.base.Err() != nil:
		return unavailable("replica %s is shutting down; retry (with the same request_id where the route takes one)", f.s.self)
	case ctx.Err() != nil:
		return pe.err // the client went away
	}
	var op *net.OpError
	if errors.As(pe.err, &op) && op.Op == "dial" {
		return noLeader("cannot reach the leader at %s: %v", target, pe.err)
	}
	if r.Method == http.MethodGet {
		return noLeader("forwarding to the leader at %s failed: %v", target, pe.err)
	}
	return unavailable("forwarding to the leader at %s failed, the outcome is unknown: %v", target, pe.err)
}

// close releases idle connections to the leader.
func (f *forwarder) close() {
	if t, ok := f.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}
