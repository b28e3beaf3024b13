package lockd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	headerIndexName  = "X-Lockd-Index"
	headerLeaderName = "X-Lockd-Leader"
	headerLeaderURL  = "X-Lockd-Leader-Url"

	maxResponseBytes = 32 << 20 // generous: lists of sessions or locks
	syncEvery        = 2 * time.Second
	syncAfterFailure = 30 * time.Second
	backoffBase      = 20 * time.Millisecond
	backoffCap       = time.Second
)

// Client talks to a lockd cell over HTTP/JSON. It is safe for concurrent
// use; make one per process and share it.
//
// Any replica answers any request (followers forward to the leader), so the
// Client works with any one reachable endpoint. It learns where the leader is
// (the X-Lockd-Leader header of every answer, the leader URL in error
// answers, redirects, GET /v1/cluster) and sends there first, saving the
// forwarding hop; it moves to the next endpoint when one fails.
//
// # Retries
//
// A call retries, with bounded exponential backoff and jitter, within the
// retry window (WithRetryWindow, default 20s) and its ctx:
//   - failures that prove nothing was applied, for every call: no_leader,
//     not_leader (going where the leader hint says), too_many_requests (after
//     retry_after_ms), redirects, and connections that could not be made;
//   - failures with an unknown outcome (unavailable, a connection lost after
//     the request was sent, an attempt timeout) only for calls where a
//     repeat is harmless: reads, KeepAlive, sequencer checks, acquire and
//     release (which repeat the same request_id, so the cell returns the
//     first answer or joins the first wait), session create (a duplicate is
//     an empty session that expires after its TTL) and session end (a repeat
//     that finds it ended counts as success).
//
// Node writes (Put, Delete) are not repeated after an unknown outcome: they
// return an error matching ErrUnavailable, and the caller decides (read the
// node, or write again with IfContentGeneration).
type Client struct {
	cfg clientConfig
	hc  *http.Client
	log *slog.Logger

	bg   context.Context // background leader discovery; ended by Close
	stop context.CancelFunc

	mu        sync.Mutex
	endpoints []string          // base URLs: configured, then learned
	preferred int               // index in endpoints of the one tried first
	ids       map[string]string // replica id → client URL (GET /v1/cluster)
	leaderID  string            // from the last X-Lockd-Leader
	syncing   bool
	lastSync  time.Time
	closed    bool

	lastIndex atomic.Uint64
}

// New returns a Client for the cell whose replicas answer at endpoints
// ("http://127.0.0.1:7001", or "127.0.0.1:7001" for http). One endpoint is
// enough; more let the Client go on when some are down. New does no I/O.
func New(endpoints []string, opts ...ClientOption) (*Client, error) {
	cfg := defaultClientConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("lockd: no endpoints: %w", ErrInvalidArgument)
	}
	c := &Client{cfg: cfg, ids: map[string]string{}}
	for _, e := range endpoints {
		u, err := normalizeEndpoint(e)
		if err != nil {
			return nil, err
		}
		c.addEndpointLocked(u)
	}
	if cfg.retryWindow <= 0 {
		c.cfg.retryWindow = defaultClientConfig().retryWindow
	}
	if cfg.requestTimeout <= 0 {
		c.cfg.requestTimeout = defaultClientConfig().requestTimeout
	}
	var hc http.Client
	if cfg.httpClient != nil {
		hc = *cfg.httpClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.tls != nil {
			t.TLSClientConfig = cfg.tls.Clone()
		}
		hc.Transport = t
	}
	// Redirects are leader hints: follow them here, keeping the token and
	// the POST body, instead of in net/http.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	c.log = cfg.logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.bg, c.stop = context.WithCancel(context.Background())
	return c, nil
}

func normalizeEndpoint(e string) (string, error) {
	e = strings.TrimSpace(e)
	if !strings.Contains(e, "://") {
		e = "http://" + e
	}
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("lockd: endpoint %q: want http(s)://host:port: %w", e, ErrInvalidArgument)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/"), nil
}

// Close stops the Client's background work and closes its idle
// connections. Calls after Close fail with ErrClientClosed. Sessions made
// with the Client should be closed first.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.hc.CloseIdleConnections()
	return nil
}

// Endpoints returns the endpoints the Client knows: those it was given,
// then those it learned, the preferred one (the leader, when known) first.
func (c *Client) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.endpoints))
	for i := range c.endpoints {
		out = append(out, c.endpoints[(c.preferred+i)%len(c.endpoints)])
	}
	return out
}

// LeaderID returns the replica id of the leader as last reported by the
// cell (X-Lockd-Leader), or "" before any answer named one.
func (c *Client) LeaderID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leaderID
}

// LastIndex returns the highest X-Lockd-Index the Client has seen: the log
// index that its latest answers reflect.
func (c *Client) LastIndex() uint64 { return c.lastIndex.Load() }

func (c *Client) addEndpointLocked(u string) int {
	for i, e := range c.endpoints {
		if e == u {
			return i
		}
	}
	c.endpoints = append(c.endpoints, u)
	return len(c.endpoints) - 1
}

// prefer makes u (a client URL the cell pointed to) the endpoint tried
// first; it reports false if u is not usable (WithoutDiscovery and unknown).
func (c *Client) prefer(u string) bool {
	n, err := normalizeEndpoint(u)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.noDiscovery && !slices.Contains(c.endpoints, n) {
		return false
	}
	if i := c.addEndpointLocked(n); i != c.preferred {
		c.preferred = i
		c.log.Debug("lockd: preferring endpoint", "endpoint", n)
	}
	return true
}

// failed moves the preference away from ep after it failed.
func (c *Client) failed(ep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.endpoints[c.preferred] == ep {
		c.preferred = (c.preferred + 1) % len(c.endpoints)
	}
}

func (c *Client) current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endpoints[c.preferred]
}

func (c *Client) numEndpoints() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.endpoints)
}

// noteHeaders records the index and the leader an answer reports, and moves
// the preference to the leader when its URL is known; when it is not, a
// background GET /v1/cluster (at most every syncEvery) learns it.
func (c *Client) noteHeaders(h http.Header) {
	if idx := headerIndex(h); idx > 0 {
		for {
			old := c.lastIndex.Load()
			if idx <= old || c.lastIndex.CompareAndSwap(old, idx) {
				break
			}
		}
	}
	id := h.Get(headerLeaderName)
	if id == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id != c.leaderID {
		c.log.Debug("lockd: leader reported", "leader", id)
		c.leaderID = id
	}
	if c.cfg.noDiscovery {
		return
	}
	if u := h.Get(headerLeaderURL); u != "" && c.ids[id] == "" {
		if pu, err := url.Parse(u); err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != "" {
			c.ids[id] = strings.TrimRight(u, "/")
		}
	}
	if u, ok := c.ids[id]; ok {
		if i := c.addEndpointLocked(u); i != c.preferred {
			c.preferred = i
		}
		return
	}
	if !c.syncing && !c.closed && time.Since(c.lastSync) >= syncEvery {
		c.syncing = true
		go c.syncInBackground()
	}
}

func (c *Client) syncInBackground() {
	ctx, cancel := context.WithTimeout(c.bg, 3*time.Second)
	defer cancel()
	_, err := c.Cluster(ctx)
	c.mu.Lock()
	c.syncing, c.lastSync = false, time.Now()
	if err != nil {
		// E.g. permission_denied where /v1/cluster is for operators: try
		// rarely; any replica forwards to the leader anyway.
		c.lastSync = c.lastSync.Add(syncAfterFailure - syncEvery)
	}
	c.mu.Unlock()
	if err != nil {
		c.log.Debug("lockd: leader discovery failed", "err", err)
	}
}

// retryPolicy says which failures a call may repeat (see Client).
type retryPolicy int

const (
	// retryUnapplied repeats only failures that prove nothing was applied.
	retryUnapplied retryPolicy = iota
	// retryUnknown also repeats failures with an unknown outcome.
	retryUnknown
)

// call is one logical request, perhaps sent several times.
type call struct {
	method string
	path   string // from /v1/...
	query  url.Values
	body   any
	accept string
	retry  retryPolicy
	extra  time.Duration // added to the per-attempt timeout (server-side waits); <0: none
	// timeout, if set, replaces the Client's per-attempt timeout.
	timeout time.Duration
	// sentAt, if set, is written with the send time of every attempt.
	sentAt *time.Time
	window time.Duration // retry window; 0 means the Client's
	// onRetry, if set, hears every failed attempt that will be retried.
	onRetry func(error)
}

// do sends cl until it succeeds or may not be retried, decodes a 2xx JSON
// answer into out (if non-nil), and returns the answer's X-Lockd-Index.
func (c *Client) do(ctx context.Context, cl call, out any) (uint64, error) {
	var body []byte
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return 0, fmt.Errorf("lockd: encoding request: %w", err)
		}
		body = b
	}
	window := cl.window
	if window <= 0 {
		window = c.cfg.retryWindow
	}
	giveUp := time.Now().Add(window)
	var last error
	for attempt := 0; ; attempt++ {
		if err := c.checkOpen(); err != nil {
			return 0, err
		}
		ep := c.current()
		if cl.sentAt != nil {
			*cl.sentAt = time.Now()
		}
		resp, err := c.send(ctx, ep, &cl, body)
		if err == nil {
			idx, derr := c.finish(resp, out)
			if derr == nil {
				return idx, nil
			}
			err = derr
		}
		if ctx.Err() != nil {
			return 0, ctxErr(ctx, last)
		}
		last = err
		delay, ok := c.retryable(ep, &cl, err, attempt)
		remaining := time.Until(giveUp)
		if !ok || remaining <= 0 {
			return 0, err
		}
		delay = min(delay, remaining) // a last attempt as the window closes
		c.log.Debug("lockd: retrying", "method", cl.method, "path", cl.path, "endpoint", ep, "err", err, "delay", delay)
		if cl.onRetry != nil {
			cl.onRetry(err)
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return 0, ctxErr(ctx, last)
		}
	}
}

func (c *Client) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClientClosed
	}
	return nil
}

// ctxErr is the error of a call whose ctx ended: the ctx's error, and the
// failure that made the call retry, if any.
func ctxErr(ctx context.Context, last error) error {
	if last == nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w (last attempt: %w)", ctx.Err(), last)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff returns the delay before retry number attempt (from 0): doubling
// from backoffBase up to backoffCap, with jitter in [d/2, d].
func backoff(attempt int) time.Duration {
	d := backoffCap
	if attempt < 16 {
		d = min(backoffBase<<attempt, backoffCap)
	}
	return d/2 + rand.N(d/2+1)
}

// retryable decides whether err (from endpoint ep) may be retried, and
// after how long. It moves the endpoint preference as the error suggests.
func (c *Client) retryable(ep string, cl *call, err error, attempt int) (time.Duration, bool) {
	var ae *Error
	if !errors.As(err, &ae) {
		return 0, false
	}
	firstPass := attempt < c.numEndpoints()
	delay := backoff(attempt)
	switch ae.Code {
	case "not_leader", codeRedirect:
		if ae.Leader != "" && ae.Leader != ep && c.prefer(ae.Leader) {
			if firstPass {
				delay = 0
			}
		} else {
			c.failed(ep)
		}
		return delay, true
	case "no_leader":
		if ae.Leader == "" || ae.Leader == ep || !c.prefer(ae.Leader) {
			c.failed(ep)
		}
		return max(delay, min(ae.RetryAfter, backoffCap)), true // retry_after_ms is a hint here
	case "too_many_requests":
		return max(delay, ae.RetryAfter), true
	case "unavailable":
		c.failed(ep)
		if ae.notSent {
			if firstPass {
				delay = 0
			}
			return delay, true
		}
		return delay, cl.retry == retryUnknown
	}
	return 0, false
}

// codeRedirect is the internal code of a 3xx answer: its Location is where
// to go (a leader hint); nothing was applied.
const codeRedirect = "redirect"

// send makes one attempt at ep. A transport failure comes back as an *Error
// with code "unavailable" (notSent when no connection was made).
func (c *Client) send(ctx context.Context, ep string, cl *call, body []byte) (*http.Response, error) {
	u := ep + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// The attempt's timeout lives on in the response body's reader: finish
	// (or the watch stream) cancels it through cancelBody.
	timeout := c.cfg.requestTimeout
	if cl.timeout > 0 {
		timeout = cl.timeout
	}
	var actx context.Context
	var cancel context.CancelFunc
	if cl.extra < 0 {
		actx, cancel = context.WithCancel(ctx) // streams: no timeout
	} else {
		actx, cancel = context.WithTimeout(ctx, timeout+cl.extra)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, u, rd)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("lockd: building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	accept := cl.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "lockd-go/1")
	if c.cfg.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, &Error{Code: "unavailable", Message: "request to " + ep + " failed", cause: err, notSent: notSent(err)}
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	c.noteHeaders(resp.Header)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		defer resp.Body.Close()
		loc, lerr := resp.Location()
		e := &Error{Code: codeRedirect, Message: resp.Status, Status: resp.StatusCode}
		if lerr == nil {
			e.Leader = loc.Scheme + "://" + loc.Host
		}
		return nil, e
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, decodeError(resp.StatusCode, resp.Header, b)
	}
	return resp, nil
}

// finish decodes a 2xx answer into out and closes it. A body that breaks
// off is an unknown outcome: the cell did the work, the answer was lost.
func (c *Client) finish(resp *http.Response, out any) (uint64, error) {
	defer resp.Body.Close()
	idx := headerIndex(resp.Header)
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return idx, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out); err != nil {
		return idx, &Error{Code: "unavailable", Message: "reading the answer failed", cause: err}
	}
	return idx, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// notSent reports whether a transport error happened before the request
// could reach the server (no connection was made).
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// ClusterInfo is the cell as GET /v1/cluster shows it.
type ClusterInfo struct {
	Cell           string
	Leader         string // replica id, "" when none
	LeaderURL      string
	Ballot         string
	LeaseRemaining time.Duration
	Replicas       []ReplicaInfo // in configured order
}

// ReplicaInfo is one replica of ClusterInfo.
type ReplicaInfo struct {
	ID             string
	ClientURL      string
	PeerAddress    string
	Role           string
	Up             bool
	PromisedBallot string
	CommitIndex    uint64
	AppliedIndex   uint64
	Lag            uint64
	SnapshotIndex  uint64
	LastContact    time.Duration // negative: never
	MemberStatus   string
}

// Cluster reads the cell's status (GET /v1/cluster) and learns from it the
// replicas' client URLs and the leader, which later calls go to first.
func (c *Client) Cluster(ctx context.Context) (*ClusterInfo, error) {
	var w wireCluster
	if _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/cluster", retry: retryUnknown}, &w); err != nil {
		return nil, fmt.Errorf("reading cluster status: %w", err)
	}
	info := &ClusterInfo{Cell: w.Cell, Leader: w.Leader, LeaderURL: w.LeaderURL, Ballot: string(w.Ballot),
		LeaseRemaining: ms(w.LeaseRemainingMs)}
	c.mu.Lock()
	learn := !c.cfg.noDiscovery
	for _, r := range w.Replicas {
		info.Replicas = append(info.Replicas, ReplicaInfo{ID: r.ID, ClientURL: r.ClientURL, PeerAddress: r.PeerAddress,
			Role: r.Role, Up: r.Up, PromisedBallot: string(r.PromisedBallot), CommitIndex: r.CommitIndex,
			AppliedIndex: r.AppliedIndex, Lag: r.Lag, SnapshotIndex: r.SnapshotIndex,
			LastContact: ms(r.LastContactMs), MemberStatus: r.MemberStatus})
		if u, err := normalizeEndpoint(r.ClientURL); learn && err == nil && r.ID != "" && r.ClientURL != "" {
			c.ids[r.ID] = u
			c.addEndpointLocked(u)
		}
	}
	c.mu.Unlock()
	if w.LeaderURL != "" && learn {
		c.prefer(w.LeaderURL)
	}
	return info, nil
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

func durMs(d time.Duration) int64 { return d.Milliseconds() }

// nodeURL is the route prefix followed by a node path, as API.md says. A
// path that is not absolute is refused here: it would make another route.
func nodeURL(prefix, path string) (string, error) {
	if !strings.HasPrefix(path, "/") {
		return "", &Error{Code: "invalid_argument", Message: fmt.Sprintf("path %q is not absolute", path)}
	}
	return prefix + (&url.URL{Path: path}).EscapedPath(), nil
}
