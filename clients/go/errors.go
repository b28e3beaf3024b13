package lockd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors, one per error code of the API (API.md, "Errors"). Every
// error a call returns for an answer of the cell is an *Error whose Is
// matches the sentinel of its code, so callers write
//
//	if errors.Is(err, lockd.ErrLockHeld) { ... }
//
// and use errors.As with *Error for the details (message, leader hint,
// retry-after).
var (
	// ErrInvalidArgument: malformed request, bad path, out-of-range number or
	// garbled sequencer (400). Never applied.
	ErrInvalidArgument = errors.New("lockd: invalid argument")
	// ErrUnauthenticated: missing or wrong token (401).
	ErrUnauthenticated = errors.New("lockd: unauthenticated")
	// ErrPermissionDenied: an ACL forbids the call (403).
	ErrPermissionDenied = errors.New("lockd: permission denied")
	// ErrNotFound: the node, session or lock does not exist (404).
	ErrNotFound = errors.New("lockd: not found")
	// ErrAlreadyExists: a create-only put found the node (409).
	ErrAlreadyExists = errors.New("lockd: already exists")
	// ErrLockHeld: a try-acquire, or a wait whose deadline passed, while
	// another session holds the lock (409).
	ErrLockHeld = errors.New("lockd: lock held")
	// ErrLockDelayed: a try-acquire of a lock that is free but within its
	// lock-delay; *Error.RetryAfter says for how long (409).
	ErrLockDelayed = errors.New("lockd: lock delayed")
	// ErrNotHolder: a release of a generation the session does not hold
	// (409); also returned, without asking the cell, by Unlock of a lock this
	// Mutex does not hold.
	ErrNotHolder = errors.New("lockd: not holder")
	// ErrPreconditionFailed: an if_* condition did not hold, or a delete of a
	// non-empty directory (412).
	ErrPreconditionFailed = errors.New("lockd: precondition failed")
	// ErrSessionExpired: the session expired or was ended (410); also
	// returned, without asking the cell, by calls on a Session whose local
	// deadline passed (see Session).
	ErrSessionExpired = errors.New("lockd: session expired")
	// ErrCompacted: a watch asked for events below the retained history
	// (410); *Error.Index is the index to re-read state at and resume from
	// (0 when the stream fell behind mid-way: reconnect without an index).
	ErrCompacted = errors.New("lockd: compacted")
	// ErrTooLarge: body or contents over the limit (413).
	ErrTooLarge = errors.New("lockd: too large")
	// ErrNotLeader: the replica was told not to forward; *Error.Leader says
	// where to go (421). The Client follows it itself; callers see it only
	// when every retry was refused.
	ErrNotLeader = errors.New("lockd: not leader")
	// ErrTooManyRequests: a rate or quota limit (429), with RetryAfter.
	ErrTooManyRequests = errors.New("lockd: too many requests")
	// ErrNoLeader: no leader reachable now (503). Never applied; the Client
	// retries it within its retry window.
	ErrNoLeader = errors.New("lockd: no leader")
	// ErrUnavailable: the outcome is unknown (503), or no replica could be
	// reached. The write may or may not have been applied.
	ErrUnavailable = errors.New("lockd: unavailable")
)

// SDK errors that no API code stands for.
var (
	// ErrSessionClosed: the Session was ended with Close.
	ErrSessionClosed = errors.New("lockd: session closed")
	// ErrElectionNoLeader: the election has no leader now (Election.Leader).
	ErrElectionNoLeader = errors.New("lockd: election has no leader")
	// ErrElectionNotLeader: Proclaim or Resign by a candidate that does not
	// lead (any more).
	ErrElectionNotLeader = errors.New("lockd: not the election leader")
	// ErrClientClosed: the Client was closed.
	ErrClientClosed = errors.New("lockd: client closed")
)

// codeSentinels maps API error codes to their sentinels.
var codeSentinels = map[string]error{
	"invalid_argument":    ErrInvalidArgument,
	"unauthenticated":     ErrUnauthenticated,
	"permission_denied":   ErrPermissionDenied,
	"not_found":           ErrNotFound,
	"already_exists":      ErrAlreadyExists,
	"lock_held":           ErrLockHeld,
	"lock_delayed":        ErrLockDelayed,
	"not_holder":          ErrNotHolder,
	"precondition_failed": ErrPreconditionFailed,
	"session_expired":     ErrSessionExpired,
	"compacted":           ErrCompacted,
	"too_large":           ErrTooLarge,
	"not_leader":          ErrNotLeader,
	"too_many_requests":   ErrTooManyRequests,
	"no_leader":           ErrNoLeader,
	"unavailable":         ErrUnavailable,
}

// Error is an error answer of the cell (API.md, "Errors"), or one the
// Client made up for a failure of the same kind (Code "unavailable" when no
// replica answered). Is matches the sentinel of Code.
type Error struct {
	Code       string        // API error code, e.g. "lock_held"
	Message    string        // the cell's message
	Status     int           // HTTP status; 0 when the Client made the error up
	Leader     string        // client URL of the leader, when the cell said
	RetryAfter time.Duration // when the cell said to come back later
	Index      uint64        // X-Lockd-Index of the answer, when given

	cause   error // the transport error behind a made-up "unavailable"
	notSent bool  // no connection was made: certainly not applied
}

func (e *Error) Error() string {
	msg := "lockd: " + e.Code
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	if e.Status != 0 {
		msg += " (" + strconv.Itoa(e.Status) + ")"
	}
	return msg
}

// Unwrap returns the transport error behind an error the Client made up
// (e.g. a refused connection), or nil.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	s, ok := codeSentinels[e.Code]
	return ok && s == target
}

// ErrorFromResponse turns a non-2xx response with an API error body into an
// *Error, and any other non-2xx response into an *Error whose Code is
// derived from the status. It returns nil for a 2xx response and leaves the
// body to the caller then; otherwise it reads (at most 64 KiB of) the body.
// Services behind FenceMiddleware answer in the same shape, so their callers
// can use it too.
func ErrorFromResponse(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return decodeError(resp.StatusCode, resp.Header, body)
}

func decodeError(status int, h http.Header, body []byte) *Error {
	e := &Error{Status: status, Index: headerIndex(h)}
	var w wireError
	if json.Unmarshal(body, &w) == nil && w.Error.Code != "" {
		e.Code, e.Message, e.Leader = w.Error.Code, w.Error.Message, w.Error.Leader
		e.RetryAfter = time.Duration(w.Error.RetryAfterMs) * time.Millisecond
		return e
	}
	// Not an API error body: a proxy, a replica starting up, a panic page.
	e.Code = statusCode(status)
	e.Message = http.StatusText(status)
	if len(body) > 0 && len(body) < 200 {
		e.Message = fmt.Sprintf("%s: %q", e.Message, body)
	}
	if ra := h.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
	}
	return e
}

// statusCode guesses the code of a response that has no API error body.
// Anything 5xx is "unavailable": the outcome of a write is unknown. Other
// statuses get "http_<status>", which matches no sentinel.
func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_argument"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "permission_denied"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusMisdirectedRequest:
		return "not_leader"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	}
	if status >= 500 {
		return "unavailable"
	}
	return "http_" + strconv.Itoa(status)
}

func headerIndex(h http.Header) uint64 {
	n, _ := strconv.ParseUint(h.Get(headerIndexName), 10, 64)
	return n
}
