package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
)

// client talks HTTP to one replica and checks what every response must
// carry (X-Lockd-Index).
type client struct {
	t     testing.TB
	base  string
	hc    *http.Client
	token string // sent as Authorization: Bearer when set
}

// as returns a client of the same replica that sends token.
func (c *client) as(token string) *client {
	cp := *c
	cp.token = token
	return &cp
}

func newClient(t testing.TB, base string) *client {
	return &client{t: t, base: base, hc: &http.Client{Timeout: 30 * time.Second}}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request; body is a string (sent as is), []byte, nil, or a
// value encoded as JSON.
func (c *client) do(method, path string, body any, header ...string) *response {
	c.t.Helper()
	return c.doCtx(context.Background(), method, path, body, header...)
}

func (c *client) doCtx(ctx context.Context, method, path string, body any, header ...string) *response {
	c.t.Helper()
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
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	if _, err := strconv.ParseUint(res.Header.Get(wire.HeaderIndex), 10, 64); err != nil {
		c.t.Errorf("%s %s: %d response without a valid %s header (%q)", method, path, res.StatusCode, wire.HeaderIndex, res.Header.Get(wire.HeaderIndex))
	}
	return &response{Status: res.StatusCode, Header: res.Header, Body: data}
}

// want checks the status and decodes the body into v (when not nil).
func (r *response) want(t testing.TB, status int, v any) *response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if v != nil {
		reflect.ValueOf(v).Elem().SetZero() // no leftovers from an earlier decode
		if err := json.Unmarshal(r.Body, v); err != nil {
			t.Fatalf("decoding %s: %v", r.Body, err)
		}
	}
	return r
}

// wantError checks the status and the error code, and returns the body.
func (r *response) wantError(t testing.TB, status int, code string) wire.ErrorBody {
	t.Helper()
	var e wire.ErrorResponse
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("status %d, body %s: not an error body: %v", r.Status, r.Body, err)
	}
	if r.Status != status || e.Error.Code != code {
		t.Fatalf("got %d %s (%s), want %d %s", r.Status, e.Error.Code, e.Error.Message, status, code)
	}
	if e.Error.Message == "" {
		t.Errorf("error %s without a message", code)
	}
	return e.Error
}

func (r *response) index(t testing.TB) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(r.Header.Get(wire.HeaderIndex), 10, 64)
	if err != nil {
		t.Fatalf("bad %s: %v", wire.HeaderIndex, err)
	}
	return n
}

// newSession creates a session and returns it.
func (c *client) newSession(ttlMs, lockDelayMs int64, label string) wire.Session {
	c.t.Helper()
	var out wire.SessionResponse
	c.do("POST", "/v1/sessions", wire.CreateSessionRequest{TTLMs: &ttlMs, LockDelayMs: &lockDelayMs, Label: label}).
		want(c.t, http.StatusCreated, &out)
	return out.Session
}

func (c *client) acquire(req wire.AcquireRequest) *response {
	c.t.Helper()
	return c.do("POST", "/v1/locks/acquire", req)
}

func (c *client) grant(req wire.AcquireRequest) wire.Grant {
	c.t.Helper()
	var out wire.LockResponse
	c.acquire(req).want(c.t, http.StatusOK, &out)
	return out.Lock
}

func (c *client) release(path, sess string, gen uint64) {
	c.t.Helper()
	var out wire.ReleaseResponse
	c.do("POST", "/v1/locks/release", wire.ReleaseRequest{Path: path, Session: sess, Generation: gen}).want(c.t, http.StatusOK, &out)
	if !out.Released {
		c.t.Fatalf("release of %s answered released=false", path)
	}
}

func (c *client) lock(path string) wire.LockState {
	c.t.Helper()
	var out wire.LockStateResponse
	c.do("GET", "/v1/locks"+path, nil).want(c.t, http.StatusOK, &out)
	return out.Lock
}

// eventually polls cond every few milliseconds until it holds or the
// deadline passes (polling with a deadline, never sleeping to synchronize).
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leaderClient returns a cell and a client of its leader.
func leaderClient(t *testing.T, replicas int) (*apitest.Cell, *client) {
	t.Helper()
	c := apitest.NewCell(t, replicas)
	return c, newClient(t, c.LeaderURL())
}

func ptr[T any](v T) *T { return &v }

func jsonInto(b []byte, v any) error { return json.Unmarshal(b, v) }

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
