package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
)

// sseEvent is one parsed Server-Sent Events message.
type sseEvent struct {
	ID, Event, Data string
}

// sseStream reads an event stream.
type sseStream struct {
	t        testing.TB
	res      *http.Response
	rd       *bufio.Reader
	cancel   context.CancelFunc
	comments int
	// openIndex is the index of the last event read without an id: the
	// next event must belong to the same index.
	openIndex uint64
}

func openSSE(t testing.TB, url string, header ...string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(res.Body)
		cancel()
		t.Fatalf("stream answered %d %s: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	if res.Header.Get(wire.HeaderIndex) == "" {
		t.Errorf("stream without %s", wire.HeaderIndex)
	}
	s := &sseStream{t: t, res: res, rd: bufio.NewReader(res.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() {
	s.cancel()
	s.res.Body.Close()
}

// next returns the next event (skipping comments), or io.EOF.
func (s *sseStream) next() (sseEvent, error) {
	var ev sseEvent
	seen := false
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if seen {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
			s.comments++
		case strings.HasPrefix(line, "id: "):
			ev.ID, seen = line[4:], true
		case strings.HasPrefix(line, "event: "):
			ev.Event, seen = line[7:], true
		case strings.HasPrefix(line, "data: "):
			ev.Data, seen = line[6:], true
		}
	}
}

// events reads n events and checks each message's fields agree.
func (s *sseStream) events(n int) []wire.Event {
	s.t.Helper()
	var out []wire.Event
	for len(out) < n {
		ev, err := s.next()
		if err != nil {
			s.t.Fatalf("after %d events: %v", len(out), err)
		}
		var e wire.Event
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			s.t.Fatalf("event data %q: %v", ev.Data, err)
		}
		// Only the last event of an index carries its id, so an event
		// without one must be followed by another of the same index.
		if (ev.ID != "" && ev.ID != strconv.FormatUint(e.Index, 10)) || ev.Event != e.Type ||
			(s.openIndex != 0 && e.Index != s.openIndex) {
			s.t.Fatalf("message id %q event %q, data %+v (index %d still open)", ev.ID, ev.Event, e, s.openIndex)
		}
		s.openIndex = 0
		if ev.ID == "" {
			s.openIndex = e.Index
		}
		out = append(out, e)
	}
	return out
}

func types(evs []wire.Event) string {
	var b []string
	for _, e := range evs {
		b = append(b, e.Type+":"+e.Path)
	}
	return strings.Join(b, " ")
}

func TestWatchSSE(t *testing.T) {
	cell := apitest.NewCellWith(t, apitest.Options{SSEKeepAlive: 20 * time.Millisecond})
	c := newClient(t, cell.LeaderURL())
	at := c.do("PUT", "/v1/nodes/ls/local/w/a", `{"contents": "1"}`).want(t, http.StatusCreated, nil).index(t)

	// Watch on a follower (watches are local on any replica), from the
	// write's index: the follower may not have applied it yet.
	f := cell.URL(cell.Follower())
	st := openSSE(t, f+"/v1/watch/ls/local/w?recursive=true&since="+strconv.FormatUint(at, 10))
	c.do("PUT", "/v1/nodes/ls/local/w/a", `{"contents": "2"}`).want(t, http.StatusOK, nil)
	c.do("PUT", "/v1/nodes/ls/local/w/b", `{"contents": "3"}`).want(t, http.StatusCreated, nil)
	evs := st.events(3)
	if got := types(evs); got != "contents_changed:/ls/local/w/a node_created:/ls/local/w/b child_added:/ls/local/w" {
		t.Fatalf("events %s", got)
	}
	if evs[0].Generation != 2 || evs[1].Index != evs[2].Index || evs[2].Child != "b" || evs[0].Index >= evs[1].Index {
		t.Errorf("events %+v", evs)
	}
	// Idle: keepalive comments.
	if line, err := st.rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, ": ") {
		t.Fatalf("idle stream sent %q, %v; want a comment", line, err)
	}
	st.close()

	// Resume after the first event with Last-Event-ID: the rest comes again,
	// then what happened while disconnected.
	c.do("DELETE", "/v1/nodes/ls/local/w/a", nil).want(t, http.StatusNoContent, nil)
	re := openSSE(t, f+"/v1/watch/ls/local/w?recursive=true", wire.HeaderLastEventID, strconv.FormatUint(evs[0].Index, 10))
	got := re.events(4)
	if types(got) != "node_created:/ls/local/w/b child_added:/ls/local/w node_deleted:/ls/local/w/a child_removed:/ls/local/w" {
		t.Fatalf("resumed %s", types(got))
	}
	// since= works the same, and a non-recursive watch sees only its node.
	one := openSSE(t, f+"/v1/watch/ls/local/w/b?since="+strconv.FormatUint(evs[0].Index, 10))
	if e := one.events(1); e[0].Type != wire.EventNodeCreated || e[0].Path != "/ls/local/w/b" {
		t.Fatalf("node watch %+v", e)
	}
}

func TestWatchLongPoll(t *testing.T) {
	cell, c := leaderClient(t, 3)
	start := c.do("PUT", "/v1/nodes/ls/local/lp", `{"contents": "1"}`).want(t, http.StatusCreated, nil).index(t)

	// Nothing new: the wait runs out with no events and the same position.
	var w wire.WatchResponse
	c.do("GET", "/v1/watch/ls/local/lp?since="+strconv.FormatUint(start, 10)+"&wait_ms=50", nil).want(t, http.StatusOK, &w)
	if len(w.Events) != 0 || w.Index < start || w.Events == nil {
		t.Fatalf("empty poll %+v", w)
	}
	// An event after since answers at once, with the index to go on from.
	c.do("GET", "/v1/watch/ls/local/lp?since="+strconv.FormatUint(start-1, 10), nil).want(t, http.StatusOK, &w)
	if len(w.Events) != 1 || w.Events[0].Type != wire.EventNodeCreated || w.Index < start {
		t.Fatalf("poll %+v", w)
	}
	// A waiting poll (on a follower) wakes up on a write.
	f := newClient(t, cell.URL(cell.Follower()))
	got := make(chan wire.WatchResponse, 1)
	go func() {
		var w wire.WatchResponse
		_ = jsonInto(f.do("GET", "/v1/watch/ls/local/lp?since="+strconv.FormatUint(start, 10)+"&wait_ms=20000", nil).Body, &w)
		got <- w
	}()
	idx := c.do("PUT", "/v1/nodes/ls/local/lp", `{"contents": "2"}`).want(t, http.StatusOK, nil).index(t)
	select {
	case w = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll did not wake up")
	}
	if len(w.Events) != 1 || w.Events[0].Type != wire.EventContentsChanged || w.Events[0].Index != idx || w.Index < idx {
		t.Fatalf("woken poll %+v (write at %d)", w, idx)
	}
}

func TestWatchCompacted(t *testing.T) {
	cell := apitest.NewCellWith(t, apitest.Options{EventHistory: 4})
	c := newClient(t, cell.LeaderURL())
	c.do("PUT", "/v1/nodes/ls/local/many", nil).want(t, http.StatusCreated, nil)
	for i := range 10 {
		c.do("PUT", "/v1/nodes/ls/local/many", `{"contents": "`+strconv.Itoa(i)+`"}`).want(t, http.StatusOK, nil)
	}
	res := c.do("GET", "/v1/watch/ls/local/many?since=1", nil)
	res.wantError(t, http.StatusGone, wire.CodeCompacted)
	// The client re-reads and resumes from the answer's index.
	idx := c.do("GET", "/v1/nodes/ls/local/many", nil).want(t, http.StatusOK, nil).index(t)
	var w wire.WatchResponse
	c.do("GET", "/v1/watch/ls/local/many?since="+strconv.FormatUint(idx, 10), nil).want(t, http.StatusOK, &w)
	// SSE refuses a compacted position before streaming.
	req, _ := http.NewRequest("GET", c.base+"/v1/watch/ls/local/many", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set(wire.HeaderLastEventID, "1")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	(&response{Status: r.StatusCode, Header: r.Header, Body: b}).wantError(t, http.StatusGone, wire.CodeCompacted)

	// A stream that falls behind the history ends with an error event: one
	// command that makes more events than the history holds.
	st := openSSE(t, c.base+"/v1/watch/ls/local?recursive=true&since="+strconv.FormatUint(idx, 10))
	c.do("PUT", "/v1/nodes/ls/local/d1/d2/d3/d4/d5/f", nil).want(t, http.StatusCreated, nil)
	for {
		ev, err := st.next()
		if err != nil {
			t.Fatalf("stream ended without an error event: %v", err)
		}
		if ev.Event == "error" {
			var e wire.ErrorResponse
			if err := json.Unmarshal([]byte(ev.Data), &e); err != nil || e.Error.Code != wire.CodeCompacted {
				t.Fatalf("error event %q", ev.Data)
			}
			break
		}
	}
	if _, err := st.next(); err != io.EOF {
		t.Errorf("after the error event: %v, want EOF", err)
	}
}

// TestSessionExpiry: a session whose keepalives stop expires; its lock is
// free only after its lock-delay, its ephemeral node is deleted, and a
// watcher sees it all in index order.
func TestSessionExpiry(t *testing.T) {
	cell, c := leaderClient(t, 3)
	const lockDelay = 800
	a := c.newSession(1000, lockDelay, "doomed")
	b := c.newSession(30000, 0, "survivor")
	ga := c.grant(wire.AcquireRequest{Path: "/ls/local/exp/lock", Session: a.ID})
	at := c.do("PUT", "/v1/nodes/ls/local/exp/eph", wire.PutNodeRequest{Ephemeral: true, Session: a.ID}).
		want(t, http.StatusCreated, nil).index(t)
	st := openSSE(t, cell.URL(cell.Follower())+"/v1/watch/ls/local?recursive=true&since="+strconv.FormatUint(at, 10))

	// No keepalives: poll until it is gone.
	eventually(t, 10*time.Second, "the session to expire", func() bool {
		return c.do("GET", "/v1/sessions/"+a.ID, nil).Status == http.StatusGone
	})
	expiredSeen := time.Now()
	c.do("GET", "/v1/nodes/ls/local/exp/eph", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
	l := c.lock("/ls/local/exp/lock")
	if len(l.Holders) != 0 || l.LockDelayRemainingMs <= 0 {
		t.Fatalf("lock after expiry %+v", l)
	}
	e := c.acquire(wire.AcquireRequest{Path: "/ls/local/exp/lock", Session: b.ID}).wantError(t, http.StatusConflict, wire.CodeLockDelayed)
	if e.RetryAfterMs <= 0 || e.RetryAfterMs > lockDelay {
		t.Errorf("retry_after_ms %d", e.RetryAfterMs)
	}
	// A wait goes through the lock-delay.
	gb := c.grant(wire.AcquireRequest{Path: "/ls/local/exp/lock", Session: b.ID, WaitMs: 10000})
	if d := time.Since(expiredSeen); d < lockDelay/2*time.Millisecond {
		t.Errorf("granted %v after the expiry was seen, lock-delay is %dms", d, lockDelay)
	}
	if gb.Generation <= ga.Generation {
		t.Errorf("generation %d after %d", gb.Generation, ga.Generation)
	}

	// The watcher: expiry, release, deletion, then the new grant, in order.
	want := map[string]bool{}
	var last uint64
	var expiredAt, grantedAt uint64
	for grantedAt == 0 {
		for _, ev := range st.events(1) {
			if ev.Index < last {
				t.Fatalf("event %+v after index %d", ev, last)
			}
			last = ev.Index
			switch {
			case ev.Type == wire.EventSessionExpired && ev.Session == a.ID:
				expiredAt = ev.Index
			case ev.Type == wire.EventLockReleased && ev.Session == a.ID, ev.Type == wire.EventNodeDeleted && ev.Path == "/ls/local/exp/eph":
				if ev.Index != expiredAt {
					t.Errorf("%s at %d, expiry at %d", ev.Type, ev.Index, expiredAt)
				}
				want[ev.Type] = true
			case ev.Type == wire.EventLockAcquired && ev.Session == b.ID:
				grantedAt = ev.Index
			}
		}
	}
	if expiredAt == 0 || !want[wire.EventLockReleased] || !want[wire.EventNodeDeleted] || grantedAt <= expiredAt {
		t.Errorf("expired at %d, granted at %d, seen %v", expiredAt, grantedAt, want)
	}
}
