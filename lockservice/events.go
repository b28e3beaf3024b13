package lockservice

import (
	"context"
	"sort"
)

// EventType names what an Event reports (API.md, "Watches").
type EventType string

// Event types.
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
)

// Event is one change, stamped with the index of the command that caused it.
// One command may cause many events; they share its index and keep the order
// in which they happened.
//
// Generation depends on the type: the lock generation for lock_*; the
// content generation for node_created, contents_changed and node_deleted;
// 0 otherwise. Child names the child for child_added/child_removed (Path is
// the parent directory). Leader is set for leader_changed. session_expired
// and leader_changed have no Path.
type Event struct {
	Index      uint64    `json:"index"`
	Type       EventType `json:"type"`
	Path       string    `json:"path,omitempty"`
	Session    string    `json:"session,omitempty"`
	Generation uint64    `json:"generation"`
	Child      string    `json:"child,omitempty"`
	Leader     string    `json:"leader,omitempty"`
}

// Matches reports whether e is seen by a watch of path (recursive: path and
// everything below it). An empty path watches everything. Events without a
// path (session_expired, leader_changed) are seen by watches of everything
// and by recursive watches of the cell root.
func (e *Event) Matches(path string, recursive bool) bool {
	if path == "" {
		return true
	}
	if e.Path == "" {
		return recursive && cellOf(path) != "" && path == PathPrefix+cellOf(path)
	}
	if recursive {
		return under(e.Path, path)
	}
	return e.Path == path
}

// eventLog is the bounded event history: a ring of the newest events.
// Every event with Index > horizon is retained.
type eventLog struct {
	buf     []Event
	start   int
	n       int
	horizon uint64
}

func newEventLog(capacity int) *eventLog {
	return &eventLog{buf: make([]Event, capacity)}
}

func (l *eventLog) at(i int) *Event { return &l.buf[(l.start+i)%len(l.buf)] }

func (l *eventLog) append(evs []Event) {
	for _, e := range evs {
		if l.n == len(l.buf) {
			l.horizon = max(l.horizon, l.buf[l.start].Index)
			l.start = (l.start + 1) % len(l.buf)
			l.n--
		}
		l.buf[(l.start+l.n)%len(l.buf)] = e
		l.n++
	}
}

// reset empties the history; events up to index are gone.
func (l *eventLog) reset(index uint64) {
	clear(l.buf)
	l.start, l.n, l.horizon = 0, 0, index
}

// since returns the retained events after index that match the filter.
func (l *eventLog) since(index uint64, path string, recursive bool) ([]Event, error) {
	if index < l.horizon {
		return nil, errorf(ErrCompacted, "index %d is below the retained history, which starts after %d", index, l.horizon)
	}
	first := sort.Search(l.n, func(i int) bool { return l.at(i).Index > index })
	var out []Event
	for i := first; i < l.n; i++ {
		if e := l.at(i); e.Matches(path, recursive) {
			out = append(out, *e)
		}
	}
	return out, nil
}

// EventsSince returns the retained events with index above since that a watch
// of path sees (see Event.Matches), oldest first. It fails with ErrCompacted
// when events after since are no longer all retained (the history is a ring
// of Config.EventHistory events, and starts empty after Restore), and with
// ErrInvalidArgument for a bad path. An empty path means every event.
func (m *Machine) EventsSince(since uint64, path string, recursive bool) ([]Event, error) {
	if path != "" {
		if err := ValidatePath(m.cell, path); err != nil {
			return nil, err
		}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.events.since(since, path, recursive)
}

// WatchEvents is the long-poll: it returns as soon as at least one event
// after since matches the watch (see EventsSince), with the applied index at
// that moment. When ctx ends first it returns no events, the applied index
// and ctx's error.
func (m *Machine) WatchEvents(ctx context.Context, since uint64, path string, recursive bool) ([]Event, uint64, error) {
	if path != "" {
		if err := ValidatePath(m.cell, path); err != nil {
			return nil, 0, err
		}
	}
	for {
		m.mu.RLock()
		evs, err := m.events.since(since, path, recursive)
		applied, ch := m.st.applied, m.changed
		m.mu.RUnlock()
		if err != nil || len(evs) > 0 {
			return evs, applied, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, applied, ctx.Err()
		}
	}
}

// emit records an event of the command being applied.
func (tx *applyTx) emit(typ EventType, path, session string, gen uint64) {
	tx.events = append(tx.events, Event{Index: tx.index, Type: typ, Path: path, Session: session, Generation: gen})
}

func (tx *applyTx) emitChild(typ EventType, parent, child string) {
	tx.events = append(tx.events, Event{Index: tx.index, Type: typ, Path: parent, Child: child})
}
