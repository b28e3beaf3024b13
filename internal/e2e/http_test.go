package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// resp is one HTTP answer: status, the decoded JSON body, and the headers.
type resp struct {
	Status int
	Body   map[string]any
	Raw    []byte
	Index  uint64
	Leader string
}

// code returns the error code of an error body.
func (r resp) code() string {
	if e, ok := r.Body["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

func (r resp) obj(key string) map[string]any {
	m, _ := r.Body[key].(map[string]any)
	return m
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

// call sends a JSON request (body may be nil, a string of raw JSON, or a value).
func call(t testing.TB, method, url string, body any) resp {
	t.Helper()
	r, err := tryCall(context.Background(), method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func tryCall(ctx context.Context, method, url string, body any) (resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return resp{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hr, err := httpClient.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer hr.Body.Close()
	raw, err := io.ReadAll(hr.Body)
	if err != nil {
		return resp{}, err
	}
	out := resp{Status: hr.StatusCode, Raw: raw, Leader: hr.Header.Get("X-Lockd-Leader")}
	out.Index, _ = strconv.ParseUint(hr.Header.Get("X-Lockd-Index"), 10, 64)
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &out.Body)
	}
	return out, nil
}

// eventually polls cond with a deadline (never a bare sleep to synchronize).
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func num(v any) uint64 {
	f, _ := v.(float64)
	return uint64(f)
}

// createSession makes a session with the given TTL and lock-delay.
func createSession(t testing.TB, base string, ttlMs, lockDelayMs int, label string) string {
	t.Helper()
	r := call(t, "POST", base+"/v1/sessions", map[string]any{"ttl_ms": ttlMs, "lock_delay_ms": lockDelayMs, "label": label, "host": "e2e", "pid": 1})
	if r.Status != http.StatusCreated {
		t.Fatalf("create session: %d %s", r.Status, r.Raw)
	}
	return r.obj("session")["id"].(string)
}

// keepAlive renews a session against the given URLs (trying each in turn)
// every period until ctx ends.
func keepAlive(ctx context.Context, urls []string, id string, period time.Duration) {
	i := 0
	for {
		for range urls {
			c, cancel := context.WithTimeout(ctx, period)
			r, err := tryCall(c, "POST", urls[i%len(urls)]+"/v1/sessions/"+id+"/keepalive", nil)
			cancel()
			if err == nil && r.Status == http.StatusOK {
				break
			}
			i++
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID    uint64
	Type  string
	Data  map[string]any
	Index uint64
}

// watcher collects SSE events from one watch, in arrival order.
type watcher struct {
	mu     sync.Mutex
	events []sseEvent
	done   chan struct{}
	err    error
}

func (w *watcher) snapshot() []sseEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]sseEvent(nil), w.events...)
}

// watch opens an SSE stream on url (…/v1/watch/…) with Last-Event-ID since.
func watch(ctx context.Context, t testing.TB, url string, since uint64) *watcher {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatUint(since, 10))
	hr, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatalf("watch %s: %v", url, err)
	}
	if hr.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(hr.Body)
		hr.Body.Close()
		t.Fatalf("watch %s: %d %s", url, hr.StatusCode, b)
	}
	w := &watcher{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer hr.Body.Close()
		sc := bufio.NewScanner(hr.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Type != "" {
					w.mu.Lock()
					w.events = append(w.events, ev)
					w.mu.Unlock()
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id:"):
				ev.ID, _ = strconv.ParseUint(strings.TrimSpace(line[3:]), 10, 64)
			case strings.HasPrefix(line, "event:"):
				ev.Type = strings.TrimSpace(line[6:])
			case strings.HasPrefix(line, "data:"):
				_ = json.Unmarshal([]byte(strings.TrimSpace(line[5:])), &ev.Data)
				ev.Index = num(ev.Data["index"])
			}
		}
		w.mu.Lock()
		w.err = sc.Err()
		w.mu.Unlock()
	}()
	return w
}

// hasEvent reports whether events hold one of type typ on path.
func hasEvent(events []sseEvent, typ, path string) bool {
	for _, e := range events {
		if e.Type == typ && (path == "" || e.Data["path"] == path) {
			return true
		}
	}
	return false
}

func describe(events []sseEvent) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "%d:%s:%v ", e.Index, e.Type, e.Data["path"])
	}
	return b.String()
}
