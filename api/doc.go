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
// # Security
//
// Options.Auth configures it; nil (or no tokens) runs the cell open: every
// request is the anonymous principal, an administrator. With tokens:
//
//   - Authentication. Every route but GET /healthz, /readyz,
//     /v1/openapi.json and the dashboard's assets (/ui, /ui/*) needs
//     "Authorization: Bearer <token>"; the token's SHA-256 is compared in
//     constant time with every configured one. A missing, malformed or
//     unknown token is 401 unauthenticated, decided by the authenticate
//     middleware from the headers alone, before the body is read. Every
//     replica authenticates: a follower refuses before it forwards, and the
//     leader checks the forwarded request (which keeps the header) again.
//   - The replica principal: another replica, known by its client
//     certificate (a verified certificate of the cell CA valid for a
//     replica's host, Auth.IsReplica) or by Auth.ReplicaToken. It may read
//     GET /v1/cluster/self (the cell status fan-out) and nothing else.
//   - Who may reach a route at all (routeClasses in auth.go): the operator
//     routes (/v1/cluster, /v1/cluster/flow, /metrics, GET /v1/sessions,
//     GET /v1/locks, GET /v1/acls, and any route not listed there, such as
//     /debug/pprof) need an administrator: an admin token, or a principal
//     with the admin permission on the cell root. 403 permission_denied
//     otherwise.
//   - Authorization by path. Every other handler, after decoding and
//     validating its input and before it reads or proposes anything, asks
//     for a permission at the node path: read (GET node, watch, lock state,
//     election, sequencer check, at the sequencer's path), write (PUT and
//     DELETE of a node; also for an acquire that writes contents), lock
//     (acquire, release, an ephemeral PUT), admin (the ACL routes at the
//     prefix). Permissions come from lockservice.Machine.Permissions: the
//     rule for the principal (or "*") at the longest prefix of the path that
//     has one, the replicated rules over Auth.ACL's bootstrap ones. A
//     refused request changed nothing, and never took a log slot.
//   - Session ownership. CreateSession records the principal; keepalive,
//     GET and DELETE of a session, acquire, release and ephemeral PUTs with
//     it need the same principal or an administrator (403). A session's
//     principal never changes, so the check cannot go stale.
//   - Recursive watches drop the events of paths below the watched one that
//     the principal may not read (a deny rule further down).
//   - ACL routes: PUT /v1/acls/{prefix} {"principal", "perms"} and
//     DELETE /v1/acls/{prefix}?principal=P go through the log (KindSetACL,
//     KindDeleteACL), so every replica agrees, and change the
//     acl_generation of every node below the prefix; GET /v1/acls/{prefix}
//     lists the rules at and below it (replicated and configured) and, with
//     ?principal=P, what P may do there. The admin permission on the prefix
//     is needed for all three; GET /v1/acls lists every rule (admins).
//
// Authorization reads the replica's applied state: on a follower that
// serves a stale read or a watch it may lag an ACL change by as much as the
// answer itself does; writes and linearizable reads are authorized on the
// leader. An ACL change races requests already past their check, as a
// file's mode change races open files.
//
// # Limits
//
// Per principal (Auth.DefaultLimits, overridden field by field by
// Token.Limits; zero is no limit), answered 429 too_many_requests with
// retry_after_ms before anything is done:
//
//   - requests per second, on every replica (the authenticate middleware);
//   - session creations and keepalives per second: token buckets on the
//     replica that executes them, the leader, so they bound the cell;
//   - live sessions and queued lock waits: counted from the replicated state
//     (lockservice.Machine.UsageOf) plus what is in flight on the leader; an
//     acquire that may wait (wait_ms > 0) is refused at the waiter limit, a
//     try is not;
//   - open watches (streams and long-polls), per replica.
//
// Requests are bounded too: bodies at 512 KiB (413), read within
// Options.BodyTimeout (30s) and only after authentication; contents at
// 256 KiB. The Paxos transport has its own port and connections, which no
// client request shares and no limit here touches.
//
// # Logging
//
// Requests are logged at debug level by Options.Logger.Named("api"), with
// their principal.
package api
