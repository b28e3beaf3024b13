package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
	"github.com/lockd/lockd/session"
)

// Options configures a Server.
type Options struct {
	// Service is this replica's request layer. Required.
	Service *session.Service
	// Cell is the cell name; node paths are /ls/<Cell>/... It must be the
	// machine's cell, which is used (with a warning) when they differ.
	Cell string
	// Self is this replica's id.
	Self string
	// Leader names the leader as this replica knows it: its replica id and
	// client URL, "" when none is known. Required.
	Leader func() (id string, clientURL string)
	// Cluster assembles the body of GET /v1/cluster. Nil answers with what
	// this replica knows (cell and leader).
	Cluster func(ctx context.Context) (any, error)
	// Flow assembles the body of GET /v1/cluster/flow?since=N. Nil answers
	// with no messages.
	Flow func(since uint64) any
	// SelfStatus assembles the body of GET /v1/cluster/self: this replica's
	// own status, which the others fetch to build the cell view. Nil
	// answers with the replica id only.
	SelfStatus func() any
	// Metrics serves GET /metrics (Prometheus); nil answers not_found.
	Metrics http.Handler
	// Ready decides GET /readyz; nil means ready while a leader is known.
	Ready func() error
	// UI serves the dashboard under /ui/; it sees the path with /ui
	// stripped. Nil answers not_found.
	UI http.Handler
	// NoForward makes a follower answer not_leader (with the leader's client
	// URL) instead of forwarding writes and linearizable reads.
	NoForward bool
	// Logger receives request logs (debug) and errors; named "api".
	Logger hclog.Logger
	// Now is the clock for lock-delay and waiting times (default time.Now).
	Now func() time.Time
	// SSEKeepAlive is the interval of comment lines on an idle event stream
	// (default 15s).
	SSEKeepAlive time.Duration
	// ForwardTransport carries forwarded requests (default: a clone of
	// http.DefaultTransport). With TLS, give it the cell CA (and this
	// replica's certificate, for servers that require client certificates).
	ForwardTransport http.RoundTripper
	// Auth configures authentication, ACLs and per-principal limits; nil
	// runs open (every request may do everything). See doc.go, "Security".
	Auth *Auth
	// BodyTimeout bounds reading one request body (default 30s), so a
	// client that sends slowly cannot hold a request open for ever.
	BodyTimeout time.Duration
}

// DefaultBodyTimeout is the default bound on reading one request body.
const DefaultBodyTimeout = 30 * time.Second

// DefaultSSEKeepAlive is the default interval of keepalive comments on an
// idle Server-Sent Events stream.
const DefaultSSEKeepAlive = 15 * time.Second

// Server is the HTTP/JSON API of one replica.
type Server struct {
	opts   Options
	svc    *session.Service
	m      *lockservice.Machine
	cell   string
	self   string
	log    hclog.Logger
	now    func() time.Time
	e      *echo.Echo
	fwd    *forwarder
	lw     leaderWatch
	auth   *authState
	base   context.Context // cancelled by Shutdown: ends watches and waits
	cancel context.CancelFunc

	streamsMu sync.Mutex
	closed    bool
	streams   sync.WaitGroup
}

// New builds the server and registers every route of API.md.
func New(opts Options) *Server {
	if opts.Service == nil {
		panic("api: Options.Service is required")
	}
	if opts.Leader == nil {
		opts.Leader = func() (string, string) { return "", "" }
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SSEKeepAlive <= 0 {
		opts.SSEKeepAlive = DefaultSSEKeepAlive
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	m := opts.Service.Machine()
	if opts.Cell != m.Cell() {
		if opts.Cell != "" {
			opts.Logger.Named("api").Warn("cell name differs from the machine's; using the machine's",
				"cell", opts.Cell, "machine_cell", m.Cell())
		}
		opts.Cell = m.Cell()
	}
	s := &Server{
		opts: opts, svc: opts.Service, m: m, cell: opts.Cell, self: opts.Self,
		log: opts.Logger.Named("api"), now: opts.Now,
	}
	auth, err := newAuthState(opts.Cell, opts.Auth, opts.Now)
	if err != nil {
		panic("api: Options.Auth: " + err.Error())
	}
	s.auth = auth
	s.base, s.cancel = context.WithCancel(context.Background())
	s.fwd = newForwarder(s, opts.ForwardTransport)
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(io.Discard)
	e.HTTPErrorHandler = s.handleError
	e.Use(s.recover, s.logRequests, s.stampHeaders, s.authenticate, s.bufferBody)
	s.e = e
	s.routes()
	return s
}

// Handler returns the server as an http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

// Echo returns the underlying router (for tests and for mounting more
// routes; routes added here are not in the OpenAPI document).
func (s *Server) Echo() *echo.Echo { return s.e }

// Shutdown ends open watch streams and blocking waits at once (waits answer
// unavailable; the queued acquire stays in the cell until its deadline, and
// a retry with the same request_id joins it), then waits for the streams to
// finish or ctx to end. Call it before http.Server.Shutdown, which would
// otherwise wait for streams that never go idle.
func (s *Server) Shutdown(ctx context.Context) error {
	s.streamsMu.Lock()
	s.closed = true
	s.streamsMu.Unlock()
	s.cancel()
	s.fwd.close()
	done := make(chan struct{})
	go func() {
		s.streams.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// beginStream registers a long-lived request (watch) so Shutdown can wait
// for it; false once shutting down.
func (s *Server) beginStream() bool {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.closed {
		return false
	}
	s.streams.Add(1)
	return true
}

// waitContext derives from the request's context one that Shutdown also
// cancels: for watches and blocking acquires.
func (s *Server) waitContext(c echo.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.Request().Context())
	stop := context.AfterFunc(s.base, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// leader returns the leader this replica knows, as (id, client URL).
func (s *Server) leader() (string, string) { return s.opts.Leader() }

// recover turns a handler panic into an internal error (and lets the
// http.ErrAbortHandler of an aborted proxy through).
func (s *Server) recover(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("handler panic", "path", c.Request().URL.Path, "panic", r)
				err = newError(http.StatusInternalServerError, wire.CodeInternal, "internal error")
			}
		}()
		return next(c)
	}
}

// logRequests logs every request at debug level.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.log.IsDebug() {
			return next(c)
		}
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil && !c.Response().Committed {
			status = s.toError(err).Status
		}
		r := c.Request()
		who := ""
		if p, ok := c.Get(principalKey).(*principal); ok {
			who = p.name
		}
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery,
			"status", status, "duration", time.Since(start), "remote", r.RemoteAddr, "principal", who,
			"forwarded_by", r.Header.Get(wire.HeaderForwarded))
		return err
	}
}

// stampHeaders makes every response carry X-Lockd-Index, X-Lockd-Leader and
// X-Lockd-Replica. A handler that reads state sets the index itself, before
// reading, so the header never runs ahead of the state it answers with (a
// watch resumed from it may repeat events, never miss one); a forwarded
// answer keeps the leader's headers.
func (s *Server) stampHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		res := c.Response()
		res.Before(func() {
			h := res.Header()
			if h.Get(wire.HeaderIndex) == "" {
				h.Set(wire.HeaderIndex, strconv.FormatUint(s.m.AppliedIndex(), 10))
			}
			if h.Get(wire.HeaderLeader) == "" {
				if id, u := s.leader(); id != "" {
					h.Set(wire.HeaderLeader, id)
					if u != "" {
						h.Set(wire.HeaderLeaderURL, u)
					}
				}
			}
			if h.Get(wire.HeaderReplica) == "" && s.self != "" {
				h.Set(wire.HeaderReplica, s.self)
			}
		})
		return next(c)
	}
}

// setIndex sets X-Lockd-Index to index.
func setIndex(c echo.Context, index uint64) {
	c.Response().Header().Set(wire.HeaderIndex, strconv.FormatUint(index, 10))
}

// markIndex sets X-Lockd-Index to the applied index now: call it just before
// reading the state the answer shows.
func (s *Server) markIndex(c echo.Context) { setIndex(c, s.m.AppliedIndex()) }

// bufferBody reads a request body whole, refusing one over MaxBodyBytes
// (too_large), so that handlers decode from memory and a request can still
// be forwarded after the local service refused it as not the leader. It
// runs after authentication (an unauthenticated client cannot make the
// replica read 512 KiB), and reading is bounded by Options.BodyTimeout.
func (s *Server) bufferBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Body == nil || r.Body == http.NoBody {
			return next(c)
		}
		if r.ContentLength > wire.MaxBodyBytes {
			return tooLarge("request body of %d bytes is over the limit of %d", r.ContentLength, wire.MaxBodyBytes)
		}
		rc := http.NewResponseController(c.Response())
		deadline := rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout)) == nil
		b, err := io.ReadAll(io.LimitReader(r.Body, wire.MaxBodyBytes+1))
		if deadline {
			_ = rc.SetReadDeadline(time.Time{})
		}
		if err != nil {
			return invalid("reading the request body: %v", err)
		}
		if len(b) > wire.MaxBodyBytes {
			return tooLarge("request body is over the limit of %d bytes", wire.MaxBodyBytes)
		}
		c.Set(bodyKeyName, b)
		rewind(r, b)
		return next(c)
	}
}

const bodyKeyName = "lockd.body"

// body returns the buffered request body (nil when there was none).
func body(c echo.Context) []byte {
	b, _ := c.Get(bodyKeyName).([]byte)
	return b
}

// rewind makes r's body readable again from the start.
func rewind(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// String describes the server for logs.
func (s *Server) String() string { return fmt.Sprintf("api(cell=%s, self=%s)", s.cell, s.self) }
