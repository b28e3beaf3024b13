package lockd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EventType names what an Event reports (API.md, "Watches").
type EventType string

// Event types. EventCompacted is the SDK's own (see ResumeAfterCompaction).
const (
	EventNodeCreated     EventType = "node_created"
	EventContentsChanged EventType = "contents_changed"
	EventNodeDeleted     EventType = "node_deleted"
	EventChildAdded      EventType = "child_added"
	EventChildRemoved    EventType = "child_removed"
	EventLockAcquired    EventType = "lock_acquired"
	EventLockReleased    EventType = "lock_released"
	EventLockConflict    EventType = "lock_conflict"
	EventSessionExpired  EventType = "session_expired"
	EventLeaderChanged   EventType = "leader_changed"
	// EventCompacted: the watch fell behind the cell's retained history and
	// goes on from Index; events before it were missed, so re-read the state
	// you follow.
	EventCompacted EventType = "compacted"
)

// Event is one change, stamped with the log index that caused it; one index
// may carry several events. Generation is the lock generation for lock_*
// events and the content generation for node_created, contents_changed and
// node_deleted. Child names the child of child_added/child_removed (Path is
// the parent); Leader names the new leader replica of leader_changed.
type Event struct {
	Index      uint64
	Type       EventType
	Path       string
	Session    string
	Generation uint64
	Child      string
	Leader     string
}

// Watcher is a running watch (Client.Watch).
type Watcher struct {
	c      *Client
	path   string
	cfg    watchConfig
	events chan Event

	ready     chan struct{} // closed once the first attempt connected or failed
	readyOnce sync.Once

	mu    sync.Mutex
	err   error
	index uint64 // events up to here were delivered (or skipped)

	// Resume position: the index of the last delivered event and how many
	// events of that index were delivered, so that a reconnect asks from the
	// index before and skips those (a connection may break inside an index).
	given   bool // pos is set (else: from the cell's current index)
	pos     uint64
	lastIdx uint64
	lastN   int
}

// Watch follows the events of path (and, with Recursive, of everything
// below it) from now, or from SinceIndex. It returns once the watch is
// established (so a change made after Watch returns is seen), or after its
// first attempt failed, or when ctx ends. The events come on
// Watcher.Events in index order, each once: when the connection breaks or
// the replica goes away, the watch reconnects (to any endpoint, with backoff)
// and resumes after the last event it delivered. Events is closed when ctx
// ends or the watch fails for good; then Watcher.Err says why (nil when ctx
// ended it). Falling behind the cell's retained history ends the watch with
// ErrCompacted, or with ResumeAfterCompaction goes on with an
// EventCompacted.
//
// By default the watch is a Server-Sent Events stream; LongPoll makes it a
// series of long-poll requests.
func (c *Client) Watch(ctx context.Context, path string, opts ...WatchOption) *Watcher {
	cfg := watchConfig{buffer: 64, idle: 45 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	w := &Watcher{c: c, path: path, cfg: cfg, events: make(chan Event, max(cfg.buffer, 0)),
		given: cfg.sinceSet, pos: cfg.since, index: cfg.since, ready: make(chan struct{})}
	go w.run(ctx)
	select {
	case <-w.ready:
	case <-ctx.Done():
	}
	return w
}

// markReady lets Watch return: the watch has its position, so every event
// after Watch returns will be delivered (or the first attempt failed, and
// the watch goes on trying in the background).
func (w *Watcher) markReady() { w.readyOnce.Do(func() { close(w.ready) }) }

// Events returns the channel of events; it is closed when the watch ends.
func (w *Watcher) Events() <-chan Event { return w.events }

// Err returns why the watch ended once Events is closed: nil when its ctx
// ended, else the error (e.g. matching ErrCompacted or ErrInvalidArgument).
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Index returns the watch's position: every event up to it was delivered.
func (w *Watcher) Index() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.index
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.events)
	defer w.markReady()
	end := func(err error) {
		if ctx.Err() != nil {
			err = nil
		}
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	}
	u, err := nodeURL("/v1/watch", w.path)
	if err != nil {
		end(err)
		return
	}
	pendingCompacted := false
	for attempt := 0; ; attempt++ {
		if err := w.c.checkOpen(); err != nil {
			end(err)
			return
		}
		ep := w.c.current()
		var progressed bool
		if w.cfg.longPoll > 0 {
			progressed, err = w.poll(ctx, ep, u, &pendingCompacted)
		} else {
			progressed, err = w.stream(ctx, ep, u, &pendingCompacted)
		}
		if ctx.Err() != nil {
			end(nil)
			return
		}
		if progressed {
			attempt = 0
		}
		var ae *Error
		switch {
		case errors.Is(err, ErrCompacted) && w.cfg.resume:
			errors.As(err, &ae)
			w.lastN = 0
			if ae.Index > 0 {
				w.given, w.pos = true, ae.Index
				if !w.deliver(ctx, Event{Index: ae.Index, Type: EventCompacted}) {
					end(nil)
					return
				}
			} else {
				w.given, pendingCompacted = false, true
			}
			continue
		case err == nil:
			continue // the stream ended cleanly (e.g. the replica shut down)
		case errors.As(err, &ae) && permanentWatchError(ae):
			end(fmt.Errorf("watching %s: %w", w.path, err))
			return
		}
		w.markReady()
		w.c.failed(ep)
		delay := backoff(attempt)
		if ae != nil && ae.Code == "too_many_requests" {
			delay = max(delay, ae.RetryAfter)
		}
		w.c.log.Debug("lockd: watch reconnecting", "path", w.path, "endpoint", ep, "err", err, "delay", delay)
		if sleepCtx(ctx, delay) != nil {
			end(nil)
			return
		}
	}
}

// permanentWatchError reports whether a watch cannot go on after e.
func permanentWatchError(e *Error) bool {
	switch e.Code {
	case "unavailable", "no_leader", "not_leader", "too_many_requests", codeRedirect:
		return false
	}
	return true
}

// query returns the position parameters of the next request.
func (w *Watcher) query() url.Values {
	q := url.Values{}
	if w.cfg.recursive {
		q.Set("recursive", "true")
	}
	if w.given {
		since := w.pos
		if w.lastN > 0 && w.lastIdx > 0 {
			since = w.lastIdx - 1
		}
		q.Set("since", strconv.FormatUint(since, 10))
	}
	return q
}

// accept delivers ev unless it was delivered before a reconnect; it reports
// false when ctx ended.
func (w *Watcher) accept(ctx context.Context, ev Event, resumedFrom uint64, skip *int) bool {
	if ev.Index <= resumedFrom && w.given {
		return true // at or before the position asked for: old
	}
	if *skip > 0 && ev.Index == w.lastIdx {
		*skip--
		return true
	}
	*skip = 0
	if ev.Index != w.lastIdx {
		w.lastIdx, w.lastN = ev.Index, 0
	}
	w.lastN++
	w.given, w.pos = true, ev.Index
	return w.deliver(ctx, ev)
}

func (w *Watcher) deliver(ctx context.Context, ev Event) bool {
	select {
	case w.events <- ev:
	case <-ctx.Done():
		return false
	}
	w.mu.Lock()
	w.index = max(w.index, ev.Index)
	w.mu.Unlock()
	return true
}

// advance moves the position to index (an answer said nothing before it is
// missing).
func (w *Watcher) advance(index uint64) {
	if index > w.pos || !w.given {
		w.given, w.pos = true, max(w.pos, index)
		if index > w.lastIdx {
			w.lastN = 0
		}
		w.mu.Lock()
		w.index = max(w.index, index)
		w.mu.Unlock()
	}
}

// stream runs one Server-Sent Events connection; progressed reports whether
// it delivered anything.
func (w *Watcher) stream(ctx context.Context, ep, u string, pendingCompacted *bool) (progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(w.cfg.idle, cancel) // no byte, not even a keepalive comment: reconnect
	defer idle.Stop()
	q := w.query()
	resumedFrom, skip := w.pos, 0
	if w.lastN > 0 && w.lastIdx > 0 {
		resumedFrom, skip = w.lastIdx-1, w.lastN
	}
	resp, err := w.c.send(sctx, ep, &call{method: http.MethodGet, path: u, query: q, accept: "text/event-stream", extra: -1}, nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return false, &Error{Code: "unavailable", Message: "watch answered " + resp.Header.Get("Content-Type") + ", not an event stream"}
	}
	if !w.given {
		w.advance(headerIndex(resp.Header))
		resumedFrom = w.pos
	}
	w.markReady()
	if *pendingCompacted {
		*pendingCompacted = false
		if !w.deliver(ctx, Event{Index: w.pos, Type: EventCompacted}) {
			return true, nil
		}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var typ, data string
	for sc.Scan() {
		idle.Reset(w.cfg.idle)
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				typ = value
			case "data":
				if data != "" {
					data += "\n"
				}
				data += value
			}
			continue // "id", "retry", comments ("" field): nothing to do
		}
		if data == "" {
			typ = ""
			continue
		}
		if typ == "error" {
			var we wireError
			if json.Unmarshal([]byte(data), &we) == nil && we.Error.Code != "" {
				return progressed, &Error{Code: we.Error.Code, Message: we.Error.Message}
			}
			return progressed, &Error{Code: "unavailable", Message: "watch stream error: " + data}
		}
		var we wireEvent
		if err := json.Unmarshal([]byte(data), &we); err != nil {
			return progressed, &Error{Code: "unavailable", Message: "undecodable watch event", cause: err}
		}
		typ, data = "", ""
		if !w.accept(ctx, eventFrom(we), resumedFrom, &skip) {
			return true, nil
		}
		progressed = true
	}
	if err := sc.Err(); err != nil {
		return progressed, &Error{Code: "unavailable", Message: "watch stream broke", cause: err}
	}
	return progressed, &Error{Code: "unavailable", Message: "watch stream ended"}
}

// poll runs long-poll requests on ep until one fails.
func (w *Watcher) poll(ctx context.Context, ep, u string, pendingCompacted *bool) (progressed bool, err error) {
	for {
		q := w.query()
		resumedFrom, skip := w.pos, 0
		if w.lastN > 0 && w.lastIdx > 0 {
			resumedFrom, skip = w.lastIdx-1, w.lastN
		}
		wait := w.cfg.longPoll
		if !w.given {
			wait = 0 // first learn where "now" is, then wait from there
		} else {
			w.markReady()
		}
		q.Set("wait_ms", strconv.FormatInt(durMs(wait), 10))
		resp, err := w.c.send(ctx, ep, &call{method: http.MethodGet, path: u, query: q, extra: wait}, nil)
		if err != nil {
			return progressed, err
		}
		var wp wirePoll
		if _, err := w.c.finish(resp, &wp); err != nil {
			return progressed, err
		}
		if *pendingCompacted {
			*pendingCompacted = false
			if !w.deliver(ctx, Event{Index: wp.Index, Type: EventCompacted}) {
				return true, nil
			}
		}
		for _, we := range wp.Events {
			if !w.accept(ctx, eventFrom(we), resumedFrom, &skip) {
				return true, nil
			}
			progressed = true
		}
		w.advance(wp.Index)
		w.lastN = 0 // a long-poll answer holds whole indices
	}
}

func eventFrom(w wireEvent) Event {
	return Event{Index: w.Index, Type: EventType(w.Type), Path: w.Path, Session: w.Session, Generation: w.Generation,
		Child: w.Child, Leader: w.Leader}
}
