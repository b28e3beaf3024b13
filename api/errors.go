package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
	"github.com/lockd/lockd/session"
)

// Error is an answer the API layer decides itself (bad input, routing,
// leadership); errors of the lock service and the session layer are mapped
// by the central error handler instead. It is returned by handlers and
// middleware and written by (*Server).handleError.
type Error struct {
	Status       int
	Code         string
	Message      string
	Leader       string
	RetryAfterMs int64
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

func newError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, wire.CodeInvalidArgument, format, args...)
}

func tooLarge(format string, args ...any) *Error {
	return newError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, format, args...)
}

// noLeaderRetryMs is the retry hint sent with no_leader: about one election.
const noLeaderRetryMs = 100

func noLeader(format string, args ...any) *Error {
	e := newError(http.StatusServiceUnavailable, wire.CodeNoLeader, format, args...)
	e.RetryAfterMs = noLeaderRetryMs
	return e
}

func unavailable(format string, args ...any) *Error {
	return newError(http.StatusServiceUnavailable, wire.CodeUnavailable, format, args...)
}

// statusOf maps every code to its status (API.md, "Errors").
var statusOf = map[string]int{
	wire.CodeInvalidArgument:    http.StatusBadRequest,
	wire.CodeUnauthenticated:    http.StatusUnauthorized,
	wire.CodePermissionDenied:   http.StatusForbidden,
	wire.CodeNotFound:           http.StatusNotFound,
	wire.CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	wire.CodeAlreadyExists:      http.StatusConflict,
	wire.CodeLockHeld:           http.StatusConflict,
	wire.CodeLockDelayed:        http.StatusConflict,
	wire.CodeNotHolder:          http.StatusConflict,
	wire.CodeSessionExpired:     http.StatusGone,
	wire.CodeCompacted:          http.StatusGone,
	wire.CodePreconditionFailed: http.StatusPreconditionFailed,
	wire.CodeTooLarge:           http.StatusRequestEntityTooLarge,
	wire.CodeNotLeader:          http.StatusMisdirectedRequest,
	wire.CodeTooManyRequests:    http.StatusTooManyRequests,
	wire.CodeInternal:           http.StatusInternalServerError,
	wire.CodeNoLeader:           http.StatusServiceUnavailable,
	wire.CodeUnavailable:        http.StatusServiceUnavailable,
}

// toError maps any error a handler returns to the API's answer.
func (s *Server) toError(err error) *Error {
	var ae *Error
	var he *echo.HTTPError
	var le *lockservice.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &he):
		return fromEcho(he)
	case errors.Is(err, session.ErrNotLeader):
		// Only reached when forwarding could not name a leader either.
		return noLeader("replica %s is not the leader and knows of none", s.self)
	case errors.Is(err, session.ErrUnavailable):
		return unavailable("%v", err)
	case s.base.Err() != nil && errors.Is(err, context.Canceled):
		return unavailable("replica %s is shutting down; retry (with the same request_id where the route takes one)", s.self)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return unavailable("the request ended before its outcome was known: %v", err)
	}
	code := lockservice.Code(err)
	if code == wire.CodeInternal {
		return newError(http.StatusInternalServerError, wire.CodeInternal, "internal error: %v", err)
	}
	msg := err.Error()
	if errors.As(err, &le) && le.Msg != "" {
		msg = le.Msg
	}
	return &Error{Status: statusOf[code], Code: code, Message: msg, RetryAfterMs: lockservice.RetryAfterMs(err)}
}

func fromEcho(he *echo.HTTPError) *Error {
	msg := fmt.Sprint(he.Message)
	switch he.Code {
	case http.StatusNotFound:
		return newError(he.Code, wire.CodeNotFound, "no such route")
	case http.StatusMethodNotAllowed:
		return newError(he.Code, wire.CodeMethodNotAllowed, "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return tooLarge("%s", msg)
	}
	if he.Code >= 400 && he.Code < 500 {
		return invalid("%s", msg)
	}
	return newError(http.StatusInternalServerError, wire.CodeInternal, "%s", msg)
}

// handleError is the echo HTTPErrorHandler: the one place that writes errors.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		s.log.Debug("error after the response started", "path", c.Request().URL.Path, "error", err)
		return
	}
	e := s.toError(err)
	if e.Code == wire.CodeInternal {
		s.log.Error("internal error", "method", c.Request().Method, "path", c.Request().URL.Path, "error", err)
	}
	body := wire.ErrorResponse{Error: wire.ErrorBody{
		Code: e.Code, Message: e.Message, Leader: e.Leader, RetryAfterMs: e.RetryAfterMs,
	}}
	if werr := c.JSON(e.Status, body); werr != nil {
		s.log.Debug("cannot write error", "error", werr)
	}
}
