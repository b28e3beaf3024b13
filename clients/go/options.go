package lockd

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// ClientOption configures a Client (New).
type ClientOption func(*clientConfig)

type clientConfig struct {
	noDiscovery    bool
	tls            *tls.Config
	httpClient     *http.Client
	token          string
	logger         *slog.Logger
	retryWindow    time.Duration
	requestTimeout time.Duration
}

func defaultClientConfig() clientConfig {
	return clientConfig{
		retryWindow:    20 * time.Second,
		requestTimeout: 10 * time.Second,
	}
}

// WithHTTPClient makes the Client send its requests through hc (for TLS,
// proxies, transports with custom dialers). Default: a client of its own
// with a cloned http.DefaultTransport. hc.Timeout, if set, must exceed the
// longest wait a call asks for (Lock waits up to five minutes per request).
func WithHTTPClient(hc *http.Client) ClientOption {
	return func(c *clientConfig) { c.httpClient = hc }
}

// WithoutDiscovery makes the Client use only the endpoints it was given:
// it does not learn the replicas' client URLs from the cell (GET
// /v1/cluster) nor follow leader hints and redirects to other addresses. For
// clients that reach the cell through a proxy or load balancer, where the
// replicas' own URLs are not reachable. Any replica forwards to the leader,
// so this costs a hop, not correctness.
func WithoutDiscovery() ClientOption {
	return func(c *clientConfig) { c.noDiscovery = true }
}

// WithTLS makes the Client's own HTTP transport use cfg for https
// endpoints (a private CA, client certificates). Ignored with
// WithHTTPClient, whose transport is the caller's.
func WithTLS(cfg *tls.Config) ClientOption {
	return func(c *clientConfig) { c.tls = cfg }
}

// WithToken sends "Authorization: Bearer <token>" on every request.
func WithToken(token string) ClientOption {
	return func(c *clientConfig) { c.token = token }
}

// WithLogger gives the Client a logger for retries, leader changes and
// session state changes (Debug and Warn levels). Default: no logging.
func WithLogger(l *slog.Logger) ClientOption {
	return func(c *clientConfig) { c.logger = l }
}

// WithRetryWindow bounds how long one call goes on retrying transient
// failures (no leader, unreachable replicas, an unknown outcome where a
// retry is safe) before it returns the last error. Default 20s. The call's
// ctx deadline, when earlier, wins.
func WithRetryWindow(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.retryWindow = d }
}

// WithRequestTimeout bounds each single HTTP attempt (a request that waits
// on the cell, like Lock, gets its wait on top). Default 10s.
func WithRequestTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.requestTimeout = d }
}

// SessionOption configures a Session (NewSession).
type SessionOption func(*sessionConfig)

type sessionConfig struct {
	ttl       time.Duration
	lockDelay *time.Duration
	label     string
	margin    time.Duration
	onState   []func(State)
}

// WithTTL sets the session's TTL: how long the cell keeps it after the last
// KeepAlive it heard. 1s to 300s; default (cell's) 10s.
func WithTTL(ttl time.Duration) SessionOption {
	return func(c *sessionConfig) { c.ttl = ttl }
}

// WithLockDelay sets how long a lock this session held stays unavailable
// to others after the session expires holding it. 0 to 60s; default (cell's)
// 15s. Ending the session with Close releases without delay.
func WithLockDelay(d time.Duration) SessionOption {
	return func(c *sessionConfig) { c.lockDelay = &d }
}

// WithLabel names the session for operators (shown beside its locks).
func WithLabel(label string) SessionOption {
	return func(c *sessionConfig) { c.label = label }
}

// WithSkewMargin sets how much earlier than the cell the session gives up:
// its local deadline is the send time of the last successful KeepAlive plus
// the lease it reported, minus this margin. Default max(500ms, TTL/10),
// capped at TTL/2.
func WithSkewMargin(d time.Duration) SessionOption {
	return func(c *sessionConfig) { c.margin = d }
}

// WithStateFunc calls f on every change of the session's state, in order,
// from one goroutine of the session (never concurrently with itself). f must
// not block for long: later changes wait for it.
func WithStateFunc(f func(State)) SessionOption {
	return func(c *sessionConfig) { c.onState = append(c.onState, f) }
}

// GetOption configures Client.Get.
type GetOption func(*getConfig)

type getConfig struct {
	stale    bool
	children bool
}

// Stale answers from the asked replica's applied state, without checking
// with the leader: faster, possibly behind.
func Stale() GetOption { return func(c *getConfig) { c.stale = true } }

// WithChildren adds the sorted names of a directory's children (Node.Children).
func WithChildren() GetOption { return func(c *getConfig) { c.children = true } }

// PutOption configures Client.Put.
type PutOption func(*putConfig)

type putConfig struct {
	dir        bool
	ephemeral  *Session
	createOnly bool
	ifGen      *uint64
}

// CreateOnly fails with ErrAlreadyExists if the node exists.
func CreateOnly() PutOption { return func(c *putConfig) { c.createOnly = true } }

// IfContentGeneration writes only if the node's content generation is gen
// (compare-and-set): else ErrPreconditionFailed, or ErrNotFound if the node
// does not exist.
func IfContentGeneration(gen uint64) PutOption {
	return func(c *putConfig) { c.ifGen = &gen }
}

// Ephemeral makes the written file ephemeral, owned by s: it is deleted
// when s ends or expires.
func Ephemeral(s *Session) PutOption { return func(c *putConfig) { c.ephemeral = s } }

// AsDir creates a directory (contents are ignored); on an existing
// directory it changes nothing.
func AsDir() PutOption { return func(c *putConfig) { c.dir = true } }

// DeleteOption configures Client.Delete.
type DeleteOption func(*deleteConfig)

type deleteConfig struct {
	ifInstance *uint64
}

// IfInstance deletes only the node instance given (Node.Instance), not a
// node re-created at the same path since.
func IfInstance(instance uint64) DeleteOption {
	return func(c *deleteConfig) { c.ifInstance = &instance }
}

// WatchOption configures Client.Watch.
type WatchOption func(*watchConfig)

type watchConfig struct {
	recursive bool
	since     uint64
	sinceSet  bool
	resume    bool
	longPoll  time.Duration
	buffer    int
	idle      time.Duration
}

// Recursive watches the path and everything below it.
func Recursive() WatchOption { return func(c *watchConfig) { c.recursive = true } }

// SinceIndex starts the watch with the events after index (e.g. the Index of
// an earlier Event, or a node's ModifyIndex - 1 to see its last change).
// Default, and SinceIndex(0): from now.
func SinceIndex(index uint64) WatchOption {
	return func(c *watchConfig) { c.since, c.sinceSet = index, index > 0 }
}

// ResumeAfterCompaction makes a watch that fell behind the cell's retained
// history go on from the cell's current index after delivering an Event of
// type EventCompacted (the consumer re-reads the state it cares about),
// instead of ending with ErrCompacted.
func ResumeAfterCompaction() WatchOption { return func(c *watchConfig) { c.resume = true } }

// LongPoll makes the watch use long-polling requests that each wait up to
// wait for events, instead of a Server-Sent Events stream (for proxies that
// buffer streams). 0 means 30s.
func LongPoll(wait time.Duration) WatchOption {
	return func(c *watchConfig) {
		if wait <= 0 {
			wait = 30 * time.Second
		}
		c.longPoll = wait
	}
}

// WatchBuffer sets the capacity of the events channel (default 64). A
// consumer that falls further behind holds up the stream, not the cell.
func WatchBuffer(n int) WatchOption { return func(c *watchConfig) { c.buffer = n } }

// WatchIdleTimeout makes a Server-Sent Events watch reconnect when nothing,
// not even a keepalive comment, arrived for d (a replica cut off without
// closing the connection). Default 45s, three times the cell's default
// keepalive interval.
func WatchIdleTimeout(d time.Duration) WatchOption {
	return func(c *watchConfig) {
		if d > 0 {
			c.idle = d
		}
	}
}
