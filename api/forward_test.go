package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockd/lockd/api"
	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
)

func TestForwarding(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	leader := cell.Leader()
	f := newClient(t, cell.URL(cell.Follower()))

	// A write through a follower is answered by the leader.
	var n wire.NodeResponse
	res := f.do("PUT", "/v1/nodes/ls/local/fwd", `{"contents": "via follower"}`).want(t, http.StatusCreated, &n)
	if got := res.Header.Get(wire.HeaderReplica); got != cell.ID(leader) {
		t.Errorf("write answered by replica %q, leader is %s", got, cell.ID(leader))
	}
	if res.Header.Get(wire.HeaderLeader) != cell.ID(leader) || res.index(t) < n.Node.CreateIndex {
		t.Errorf("headers %v", res.Header)
	}
	// So is a linearizable read, which sees the write at once.
	res = f.do("GET", "/v1/nodes/ls/local/fwd", nil).want(t, http.StatusOK, &n)
	if *n.Node.Contents != "via follower" || res.Header.Get(wire.HeaderReplica) != cell.ID(leader) {
		t.Errorf("read %+v from %s", n.Node, res.Header.Get(wire.HeaderReplica))
	}
	// Sessions, keepalives, blocking acquires and errors go through too.
	s := f.newSession(10000, 0, "via-follower")
	f.do("POST", "/v1/sessions/"+s.ID+"/keepalive", nil).want(t, http.StatusOK, nil)
	g := f.grant(wire.AcquireRequest{Path: "/ls/local/fwd-lock", Session: s.ID, WaitMs: 1000})
	f.do("PUT", "/v1/nodes/ls/local/fwd", `{"create_only": true}`).wantError(t, http.StatusConflict, wire.CodeAlreadyExists)
	f.release("/ls/local/fwd-lock", s.ID, g.Generation)

	// A request that was already forwarded is not forwarded again.
	e := f.do("GET", "/v1/nodes/ls/local/fwd", nil, wire.HeaderForwarded, "9").wantError(t, http.StatusMisdirectedRequest, wire.CodeNotLeader)
	if e.Leader != cell.URL(leader) {
		t.Errorf("not_leader hint %q, leader at %s", e.Leader, cell.URL(leader))
	}
	// The leader serves a forwarded request itself.
	newClient(t, cell.URL(leader)).do("GET", "/v1/nodes/ls/local/fwd", nil, wire.HeaderForwarded, "9").want(t, http.StatusOK, nil)
}

func TestNoForward(t *testing.T) {
	cell := apitest.NewCellWith(t, apitest.Options{NoForward: true})
	leader := cell.Leader()
	f := newClient(t, cell.URL(cell.Follower()))
	for _, r := range []struct{ method, path, body string }{
		{"PUT", "/v1/nodes/ls/local/x", `{"contents": "x"}`},
		{"GET", "/v1/nodes/ls/local", ""},
		{"POST", "/v1/sessions", ""},
		{"GET", "/v1/locks", ""},
	} {
		var body any
		if r.body != "" {
			body = r.body
		}
		e := f.do(r.method, r.path, body).wantError(t, http.StatusMisdirectedRequest, wire.CodeNotLeader)
		if e.Leader != cell.URL(leader) {
			t.Errorf("%s %s: leader hint %q, want %s", r.method, r.path, e.Leader, cell.URL(leader))
		}
	}
	// Stale reads, watches and operator routes are local.
	f.do("GET", "/v1/nodes/ls/local?stale=true", nil).want(t, http.StatusOK, nil)
	f.do("GET", "/v1/watch/ls/local?since=0", nil).want(t, http.StatusOK, nil)
	f.do("GET", "/v1/cluster", nil).want(t, http.StatusOK, nil)
	// The leader answers.
	newClient(t, cell.URL(leader)).do("PUT", "/v1/nodes/ls/local/x", `{"contents": "x"}`).want(t, http.StatusCreated, nil)
}

// TestFailover: when the leader stops, a follower forwards to the new one;
// the old one, started again on its storage, catches up and forwards too.
func TestFailover(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	old := cell.Leader()
	c := newClient(t, cell.URL(old))
	c.do("PUT", "/v1/nodes/ls/local/durable", `{"contents": "before"}`).want(t, http.StatusCreated, nil)
	cell.StopReplica(old)
	var other int
	for i := range cell.Replicas() {
		if i != old {
			other = i
		}
	}
	oc := newClient(t, cell.URL(other))
	eventually(t, 10*time.Second, "a write after failover", func() bool {
		return oc.do("PUT", "/v1/nodes/ls/local/durable", `{"contents": "after"}`).Status == http.StatusOK
	})
	if cell.Leader() == old {
		t.Fatal("stopped replica leads")
	}
	cell.StartReplica(old)
	idx := oc.do("GET", "/v1/nodes/ls/local/durable", nil).want(t, http.StatusOK, nil).index(t)
	cell.WaitApplied(idx)
	var n wire.NodeResponse
	c.do("GET", "/v1/nodes/ls/local/durable?stale=true", nil).want(t, http.StatusOK, &n)
	if *n.Node.Contents != "after" || n.Node.ContentGeneration != 2 {
		t.Errorf("restarted replica reads %+v", n.Node)
	}
	c.do("GET", "/v1/nodes/ls/local/durable", nil).want(t, http.StatusOK, &n)
}

// TestShutdownEndsStreams: Shutdown ends open event streams and long-polls
// promptly.
func TestShutdownEndsStreams(t *testing.T) {
	cell := apitest.NewCell(t, 1)
	st := openSSE(t, cell.URL(0)+"/v1/watch/ls/local?recursive=true")
	poll := make(chan int, 1)
	go func() {
		res, err := http.Get(cell.URL(0) + "/v1/watch/ls/local?wait_ms=60000")
		if err != nil {
			poll <- -1
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		poll <- res.StatusCode
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := cell.Server(0).Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if _, err := st.next(); err != io.EOF {
		t.Errorf("stream after shutdown: %v, want EOF", err)
	}
	select {
	case code := <-poll:
		// 200 with no events when it was waiting, 503 if it came too late.
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Errorf("long-poll ended with %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll still open after shutdown")
	}
	newClient(t, cell.URL(0)).do("GET", "/v1/watch/ls/local", nil).wantError(t, http.StatusServiceUnavailable, wire.CodeUnavailable)
}

// TestForwardAfterNotLeader: a replica that believes it leads runs the
// handler; when the service refuses as not the leader (before doing
// anything), the request is forwarded to the leader named now, body and
// all; with no other leader known it is no_leader.
func TestForwardAfterNotLeader(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	leader, fol := cell.Leader(), cell.Follower()
	var calls atomic.Int32
	var truthful atomic.Bool
	truthful.Store(true)
	srv := api.New(api.Options{
		Service: cell.Service(fol), Self: cell.ID(fol),
		Leader: func() (string, string) {
			// The first question of each request gets a stale answer.
			if calls.Add(1) == 1 || !truthful.Load() {
				return cell.ID(fol), cell.URL(fol)
			}
			return cell.ID(leader), cell.URL(leader)
		},
	})
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("PUT", "/v1/nodes/ls/local/retried", strings.NewReader(`{"contents": "body kept"}`)))
	if rec.Code != http.StatusCreated || rec.Header().Get(wire.HeaderReplica) != cell.ID(leader) {
		t.Fatalf("forwarded after not-leader: %d from %q: %s", rec.Code, rec.Header().Get(wire.HeaderReplica), rec.Body)
	}
	var n wire.NodeResponse
	newClient(t, cell.URL(leader)).do("GET", "/v1/nodes/ls/local/retried", nil).want(t, http.StatusOK, &n)
	if *n.Node.Contents != "body kept" {
		t.Errorf("contents %q", *n.Node.Contents)
	}
	// Nobody else to ask: no_leader with a retry hint.
	truthful.Store(false)
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/locks", nil))
	var e wire.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusServiceUnavailable ||
		e.Error.Code != wire.CodeNoLeader || e.Error.RetryAfterMs <= 0 {
		t.Fatalf("no leader: %d %s", rec.Code, rec.Body)
	}
}
