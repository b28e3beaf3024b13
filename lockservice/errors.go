package lockservice

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a Machine returns (in Result.Err or from a
// read) wraps exactly one of them; test with errors.Is and map to the API
// code with Code. A command that fails with any of them changed nothing.
var (
	// ErrInvalidArgument: a malformed command, a bad path, an out-of-range
	// number, a garbled sequencer, or a request id reused for another call.
	ErrInvalidArgument = errors.New("lockservice: invalid argument")
	// ErrNotFound: the node, session, lock or wait does not exist (a session
	// id never seen).
	ErrNotFound = errors.New("lockservice: not found")
	// ErrAlreadyExists: create_only on an existing node.
	ErrAlreadyExists = errors.New("lockservice: already exists")
	// ErrLockHeld: a try-acquire while another session holds the lock or
	// waits ahead, or a wait whose deadline passed before it was granted.
	ErrLockHeld = errors.New("lockservice: lock held")
	// ErrLockDelayed: a try-acquire of a lock that is free but within
	// lock-delay. The *Error carries RetryAfterMs.
	ErrLockDelayed = errors.New("lockservice: lock delayed")
	// ErrNotHolder: release of a lock or generation the session does not hold.
	ErrNotHolder = errors.New("lockservice: not holder")
	// ErrPreconditionFailed: an if_* mismatch, delete of a non-empty
	// directory or of a locked node, a file/directory kind conflict.
	ErrPreconditionFailed = errors.New("lockservice: precondition failed")
	// ErrSessionExpired: the named session expired or was ended.
	ErrSessionExpired = errors.New("lockservice: session expired")
	// ErrTooLarge: contents or a command over its size limit.
	ErrTooLarge = errors.New("lockservice: too large")
	// ErrCompacted: a watch index older than the retained event history.
	ErrCompacted = errors.New("lockservice: compacted")
)

// codes maps each sentinel to its stable API code (API.md, "Errors").
var codes = [...]struct {
	err  error
	code string
}{
	{ErrInvalidArgument, "invalid_argument"},
	{ErrNotFound, "not_found"},
	{ErrAlreadyExists, "already_exists"},
	{ErrLockHeld, "lock_held"},
	{ErrLockDelayed, "lock_delayed"},
	{ErrNotHolder, "not_holder"},
	{ErrPreconditionFailed, "precondition_failed"},
	{ErrSessionExpired, "session_expired"},
	{ErrTooLarge, "too_large"},
	{ErrCompacted, "compacted"},
}

// Code returns the stable API error code of err ("invalid_argument",
// "lock_held", ...): "" for nil, "internal" for an error that wraps none of
// the sentinels.
func Code(err error) string {
	if err == nil {
		return ""
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// sentinelForCode is the inverse of Code, used to rebuild recorded errors
// from a snapshot.
func sentinelForCode(code string) error {
	for _, c := range codes {
		if c.code == code {
			return c.err
		}
	}
	return nil
}

// Error is the concrete error type of the package: a sentinel (Err) and a
// human-readable detail. It is a plain value built only from the command and
// the state, so every replica builds the same one.
type Error struct {
	// Err is one of the sentinels above.
	Err error
	// Msg says what was wrong, lowercase, without the sentinel text.
	Msg string
	// RetryAfterMs is set with ErrLockDelayed: how long until the lock-delay
	// ends, measured from the applying command's time.
	RetryAfterMs int64
}

// Error implements error.
func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Msg
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// RetryAfterMs returns the retry hint carried by an ErrLockDelayed error, or 0.
func RetryAfterMs(err error) int64 {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfterMs
	}
	return 0
}

func errorf(sentinel error, format string, args ...any) error {
	return &Error{Err: sentinel, Msg: fmt.Sprintf(format, args...)}
}
