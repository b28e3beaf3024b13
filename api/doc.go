// Package api is lockd's HTTP/JSON API, version 1, on echo v4: the routes,
// fields, error codes and event types of API.md (served as
// /v1/openapi.json, which a test keeps equal to the registered routes).
// Wire shapes live in api/wire, which the Go SDK shares.
//
// The package is thin: it decodes, validates, calls session.Service or
// reads the lockservice.Machine, and encodes. Business rules live in
// lockservice (what a command does) and session (time and leases).
//
// # Use
//
//	srv := api.New(api.Options{Service: svc, Self: "1", Leader: leaderFn, Logger: log})
//	hs := &http.Server{Addr: addr, Handler: srv.Handler()}
//	go hs.ListenAndServe()
//	...
//	srv.Shutdown(ctx) // ends watch streams and blocking waits first
//	hs.Shutdown(ctx)
//
// # Requests
//
//   - Bodies are one JSON object; unknown fields, trailing data and
//     malformed JSON are invalid_argument; a body over 512 KiB is too_large
//     (413), as are contents over 256 KiB. Numbers out of the bounds of
//     API.md are invalid_argument.
//   - Node paths follow their route prefix as they are (/v1/nodes/ls/local/a
//     is /ls/local/a) and are checked with lockservice.ValidatePath: no
//     relative paths, no empty, "." or ".." segments, no escapes.
//   - Every command is checked with lockservice.Command.Validate before it
//     is proposed. Commands that name a session that is not live, and
//     releases (without request_id) of a hold the session does not have, are
//     answered from a linearizable read of the state instead of being
//     proposed, so bad input never takes a log slot: the machine (its
//     snapshot, applied index included) is unchanged by any refused input.
//     Apply remains the authority for everything else.
//
// # Errors
//
// One HTTPErrorHandler writes every error as
// {"error": {"code", "message", "leader", "retry_after_ms"}} with the
// status of API.md: lockservice sentinels by lockservice.Code,
// session.ErrUnavailable as 503 unavailable (outcome unknown: retry with the
// same request_id), no reachable leader as 503 no_leader, routing errors as
// not_found / method_not_allowed.
//
// # Headers
//
// Every response carries X-Lockd-Index, X-Lockd-Leader (when a leader is
// known) and X-Lockd-Replica (the replica that answered). For a write,
// X-Lockd-Index is the command's index (or the applied index after it); for
// a read, the applied index taken just before reading, so the header never
// runs ahead of the answer: a watch resumed from it may repeat an event,
// never miss one.
//
// # Leader and forwarding
//
// Writes, and reads without ?stale=true, are registered with a middleware
// that needs the leader. When Options.Leader names another replica, the
// request is proxied there (httputil.ReverseProxy to the leader's client
// URL, with X-Lockd-Forwarded: <self>). When this replica believes it leads,
// the handler runs; if the service then answers session.ErrNotLeader
// (which it does before proposing or reading, so nothing happened and
// nothing was written), the buffered body is rewound and the request is
// forwarded to whoever Leader() names now. A request that already carries
// X-Lockd-Forwarded, or any request with Options.NoForward, is answered 421
// not_leader with the leader's client URL instead: forwarding never chains.
// No known leader (or an unreachable one) is 503 no_leader; a forwarded
// write whose connection broke after sending is 503 unavailable.
//
// Reads are linearizable: the handler calls Service.Read (the lease read,
// or a log barrier) before reading the machine. ?stale=true answers from
// this replica's applied state. Watches are always served locally.
//
// # Locks
//
// POST /v1/locks/acquire with wait_ms > 0 blocks until the grant or the
// deadline, which the cell enforces (then 409 lock_held). The HTTP request's
// context (and Shutdown) end the wait here only: the queued waiter stays in
// the cell until its deadline, and may still be granted; a retry with the
// same request_id joins the same wait, and release with the grant's
// generation gives it back.
//
// # Watches
//
// GET /v1/watch/{path} reads the event history of the local machine:
// with Accept: text/event-stream, one SSE message per event ("id: <index>",
// "event: <type>", "data: <Event JSON>"), the events of one index written
// and flushed together, comment lines every Options.SSEKeepAlive when idle,
// resumable with Last-Event-ID; otherwise a long-poll (?since=N&wait_ms=M)
// answering {"events", "index"}, where index is what to ask from next. A
// position below the retained history is 410 compacted (the client re-reads
// state and resumes from that answer's X-Lockd-Index); a stream that falls
// behind mid-way gets a final "event: error" with the compacted body.
//
// # Logging
//
// Requests are logged at debug level by Options.Logger.Named("api").
package api
