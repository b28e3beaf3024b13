package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// GET /v1/watch/{path}[?recursive=true][&since=N][&wait_ms=M]
//
// Served from this replica's applied state on any replica (no forwarding):
// events carry their log index, so a client that reconnects to another
// replica resumes where it was, or hears compacted. With Accept:
// text/event-stream it streams Server-Sent Events; otherwise it is a
// long-poll that answers {"events", "index"} as soon as an event matches or
// wait_ms runs out.
//
// The position: Last-Event-ID (a resumed stream), else since, else the
// applied index now (only new events).
func (s *Server) watch(c echo.Context) error {
	path, err := nodePath(c, s.cell)
	if err != nil {
		return err
	}
	recursive, err := boolParam(c, "recursive")
	if err != nil {
		return err
	}
	since, given, err := uintParam(c, "since")
	if err != nil {
		return err
	}
	if v := c.Request().Header.Get(wire.HeaderLastEventID); v != "" {
		if since, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64); err != nil {
			return invalid("%s %q is not a log index", wire.HeaderLastEventID, truncate(v, 32))
		}
		given = true
	}
	waitMs, _, err := uintParam(c, "wait_ms")
	if err != nil {
		return err
	}
	if waitMs > lockservice.MaxWaitMs {
		return invalid("wait_ms %d outside 0..%d", waitMs, lockservice.MaxWaitMs)
	}
	if err := s.authorize(c, path, lockservice.PermRead); err != nil {
		return err
	}
	closeWatch, err := s.principalFrom(c).state.openWatch()
	if err != nil {
		return err
	}
	defer closeWatch()
	if !s.beginStream() {
		return unavailable("replica %s is shutting down", s.self)
	}
	defer s.streams.Done()
	applied := s.m.AppliedIndex()
	if !given {
		since = applied
	}
	// Refuse a compacted position before answering anything.
	if _, err := s.m.EventsSince(since, path, recursive); err != nil {
		setIndex(c, applied)
		return err
	}
	visible := s.eventFilter(c, path)
	if strings.Contains(c.Request().Header.Get(echo.HeaderAccept), "text/event-stream") {
		return s.streamEvents(c, path, recursive, since, visible)
	}
	return s.longPoll(c, path, recursive, since, time.Duration(waitMs)*time.Millisecond, visible)
}

// eventFilter drops the events the principal may not read now: in a
// recursive watch, those of paths below the watched one under a rule that
// takes read away; in any watch, everything once read of the watched path
// itself is revoked (a stream then ends, see streamEvents). Nil for an
// administrator.
func (s *Server) eventFilter(c echo.Context, path string) func([]lockservice.Event) []lockservice.Event {
	p := s.principalFrom(c)
	if s.isAdmin(p) {
		return nil
	}
	return func(evs []lockservice.Event) []lockservice.Event {
		out := evs[:0:0]
		for _, e := range evs {
			at := e.Path
			if at == "" {
				at = path // pathless events reach only recursive watches of the root
			}
			if s.perms(p, at).Has(lockservice.PermRead) {
				out = append(out, e)
			}
		}
		return out
	}
}

// longPoll answers the events after since, waiting up to wait for one.
func (s *Server) longPoll(c echo.Context, path string, recursive bool, since uint64, wait time.Duration,
	visible func([]lockservice.Event) []lockservice.Event) error {
	ctx, cancel := s.waitContext(c)
	defer cancel()
	ctx, cancelWait := context.WithTimeout(ctx, wait)
	defer cancelWait()
	evs, index, err := s.m.WatchEvents(ctx, since, path, recursive)
	for err == nil && visible != nil {
		if evs = visible(evs); len(evs) > 0 {
			break
		}
		since = index // nothing this principal may see up to index: wait on
		evs, index, err = s.m.WatchEvents(ctx, since, path, recursive)
	}
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded), s.base.Err() != nil:
		// The wait ran out (or the replica is shutting down): no events.
	case errors.Is(err, context.Canceled):
		return err // the client went away
	default:
		setIndex(c, index)
		return err
	}
	index = max(index, since)
	setIndex(c, index)
	return c.JSON(http.StatusOK, wire.WatchResponse{Events: wireEvents(evs), Index: index})
}

// streamEvents writes Server-Sent Events until the client goes, the
// replica shuts down, or the stream falls behind the retained history
// (then a final "error" event carries the compacted error body).
//
// One log index can carry several events. They are written and flushed in
// one piece, and only the last event of an index carries "id: <index>"
// (SSE keeps the previous id for events without one), so a stream cut in
// the middle of an index resumes from the index before it and repeats that
// index whole rather than losing its tail.
func (s *Server) streamEvents(c echo.Context, path string, recursive bool, pos uint64,
	visible func([]lockservice.Event) []lockservice.Event) error {
	ctx, cancel := s.waitContext(c)
	defer cancel()
	res := c.Response()
	h := res.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	setIndex(c, pos)
	res.WriteHeader(http.StatusOK)
	res.Flush()

	keepalive := time.NewTicker(s.opts.SSEKeepAlive)
	defer keepalive.Stop()
	var buf strings.Builder
	for {
		applied, changed := s.m.Notify()
		evs, err := s.m.EventsSince(pos, path, recursive)
		if err != nil {
			writeSSEError(&buf, s.toError(err))
			_, _ = res.Write([]byte(buf.String()))
			res.Flush()
			return nil
		}
		if len(evs) > 0 {
			pos = max(pos, evs[len(evs)-1].Index)
		}
		if visible != nil {
			if !s.perms(s.principalFrom(c), path).Has(lockservice.PermRead) {
				writeSSEError(&buf, forbidden("%s may no longer read %s", s.principalFrom(c), path))
				_, _ = res.Write([]byte(buf.String()))
				res.Flush()
				return nil
			}
			evs = visible(evs)
		}
		if len(evs) > 0 {
			buf.Reset()
			for i, e := range evs {
				last := i == len(evs)-1 || evs[i+1].Index != e.Index
				writeSSEEvent(&buf, wireEvent(e), last)
			}
			if _, err := res.Write([]byte(buf.String())); err != nil {
				return nil
			}
			res.Flush()
		}
		// Everything up to applied was in the history when EventsSince ran.
		pos = max(pos, applied)
		select {
		case <-changed:
		case <-keepalive.C:
			if _, err := res.Write([]byte(": keepalive\n\n")); err != nil {
				return nil
			}
			res.Flush()
		case <-ctx.Done():
			return nil
		}
	}
}

func writeSSEEvent(b *strings.Builder, e wire.Event, withID bool) {
	data, _ := json.Marshal(e)
	if withID {
		fmt.Fprintf(b, "id: %d\n", e.Index)
	}
	fmt.Fprintf(b, "event: %s\ndata: %s\n\n", e.Type, data)
}

func writeSSEError(b *strings.Builder, e *Error) {
	b.Reset()
	data, _ := json.Marshal(wire.ErrorResponse{Error: wire.ErrorBody{Code: e.Code, Message: e.Message}})
	fmt.Fprintf(b, "event: error\ndata: %s\n\n", data)
}
