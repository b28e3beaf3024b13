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
//
// During an election (no leader known, the one named cannot be reached, or
// this replica is not ready to lead yet) a request waits, for up to
// leaderWait and while its client waits, for the next leader instead of
// failing with no_leader at once: it goes on the moment one is known, so a
// failover costs the client the election and no retry backoff on top.

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
			ctx := c.Request().Context()
			deadline := time.Now().Add(leaderWait)
			waiting := func() bool { return ctx.Err() == nil && time.Now().Before(deadline) }
			for {
				id, u := s.leader()
				if id == "" && waiting() {
					s.awaitLeader(ctx, "", deadline)
					continue
				}
				if id != "" && id != s.self {
					err := s.toLeader(c, id, u)
					var ue leaderUnreachable
					if !errors.As(err, &ue) || c.Response().Committed || !waiting() {
						return err
					}
					// Nothing reached the leader it names: it is gone.
					// Go to the next one when it is elected.
					rewind(c.Request(), body(c))
					s.awaitLeader(ctx, id, deadline)
					continue
				}
				err := next(c)
				if !errors.Is(err, session.ErrNotLeader) || c.Response().Committed {
					return err
				}
				rewind(c.Request(), body(c))
				if !waiting() {
					if id, u := s.leader(); id != "" && id != s.self {
						return s.toLeader(c, id, u)
					}
					return noLeader("replica %s is not the leader and knows of none", s.self)
				}
				// Not ready to lead yet, or leadership just moved: look again
				// in a moment.
				s.awaitLeader(ctx, s.self, time.Now().Add(leaderPoll))
			}
		}
	}
}

const (
	// leaderWait bounds how long a request waits for a leader to be
	// elected: about two election timeouts (paxos defaults: 200-300 ms).
	leaderWait = 600 * time.Millisecond
	// leaderPoll is how often a waiting request looks at Leader() again.
	leaderPoll = 5 * time.Millisecond
)

// awaitLeader waits until Leader() names a replica other than not (a replica
// id, or "" for any), or until deadline or ctx's end, whichever is first.
func (s *Server) awaitLeader(ctx context.Context, not string, deadline time.Time) {
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	for time.Now().Before(deadline) {
		if id, _ := s.leader(); id != "" && id != not {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.base.Done():
			return
		case <-t.C:
		}
	}
}

// leaderWatch follows Leader() for every forwarded request at once: one
// poller per server (started by the first forward, ended by Shutdown), not a
// ticker per request, since a blocking acquire may be forwarded for minutes.
type leaderWatch struct {
	once sync.Once
	mu   sync.Mutex
	id   string        // the leader, once seen for forwardMisses polls
	ch   chan struct{} // closed, and replaced, when id changes
}

// leaderChange returns the leader as the watch last saw it settle, and a
// channel closed when that changes.
func (s *Server) leaderChange() (string, <-chan struct{}) {
	w := &s.lw
	w.once.Do(func() {
		w.id, _ = s.leader()
		w.ch = make(chan struct{})
		go s.watchLeader()
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id, w.ch
}

func (s *Server) watchLeader() {
	w := &s.lw
	t := time.NewTicker(forwardPoll)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
		}
		cur, _ := s.leader()
		w.mu.Lock()
		switch {
		case cur == w.id:
			misses = 0
		case misses+1 >= forwardMisses: // a blip does not count as a change
			w.id, misses = cur, 0
			close(w.ch)
			w.ch = make(chan struct{})
		default:
			misses++
		}
		w.mu.Unlock()
	}
}

// awaitLeaderChange returns at the first settled change of leader after
// which the leader is not id, or when ctx ends.
func (s *Server) awaitLeaderChange(ctx context.Context, id string) {
	first := true
	for {
		cur, changed := s.leaderChange()
		if cur != id && !first {
			return
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// forwardPoll is how often the leader watch looks at Leader(), and
// forwardMisses how many polls in a row must see another leader before it
// counts as a change.
const (
	forwardPoll   = 25 * time.Millisecond
	forwardMisses = 3
)

// leaderUnreachable is a forward that could not connect to the leader:
// nothing was sent, so the request may go to the next leader.
type leaderUnreachable struct{ err *Error }

func (e leaderUnreachable) Error() string { return e.err.Error() }
func (e leaderUnreachable) Unwrap() error { return e.err }

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
	return s.fwd.forward(c, id, leaderURL)
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
		// A leader that does not answer a dial in 2 s is gone for our
		// purposes; the request goes to the next one.
		t.DialContext = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}).DialContext
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

// forward sends the request to the leader and copies its answer back. If
// this replica stops seeing that leader while the request is out (a new
// leader was elected, or none is known while it campaigns: the old leader
// may be cut off, and the request would hang until TCP gives up), the forward
// is abandoned and answered unavailable, so the client retries with the same
// request_id.
func (f *forwarder) forward(c echo.Context, leaderID, target string) error {
	p, err := f.proxy(target)
	if err != nil {
		return err
	}
	pe := &proxyErr{}
	// Shutdown ends forwarded requests too (a blocking acquire may wait
	// for minutes at the leader).
	ctx, cancel := f.s.waitContext(c)
	defer cancel()
	moved := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		f.s.awaitLeaderChange(ctx, leaderID)
		if ctx.Err() == nil {
			close(moved)
			cancel()
		}
	}()
	r := c.Request().WithContext(context.WithValue(ctx, proxyErrKey{}, pe))
	p.ServeHTTP(c.Response(), r)
	cancel()
	<-watchDone
	select {
	case <-moved:
		if !c.Response().Committed {
			return unavailable("the leader, replica %s, was replaced while the request was forwarded to it; the outcome is unknown: retry (with the same request_id where the route takes one)", leaderID)
		}
	default:
	}
	switch {
	case pe.err == nil:
		return nil
	case f.s.base.Err() != nil:
		return unavailable("replica %s is shutting down; retry (with the same request_id where the route takes one)", f.s.self)
	case c.Request().Context().Err() != nil:
		return pe.err // the client went away
	}
	var op *net.OpError
	if errors.As(pe.err, &op) && op.Op == "dial" {
		return leaderUnreachable{noLeader("cannot reach the leader at %s: %v", target, pe.err)}
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
