package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/lockd/lockd/api/wire"
)

func TestSessionRoutes(t *testing.T) {
	_, c := leaderClient(t, 3)

	// Create with defaults (empty body) and with every field.
	var def wire.SessionResponse
	c.do("POST", "/v1/sessions", nil).want(t, http.StatusCreated, &def)
	if def.Session.TTLMs != wire.DefaultTTLMs || def.Session.LockDelayMs != wire.DefaultLockDelayMs {
		t.Errorf("defaults: ttl %d lock-delay %d", def.Session.TTLMs, def.Session.LockDelayMs)
	}
	var full wire.SessionResponse
	res := c.do("POST", "/v1/sessions", `{"ttl_ms": 5000, "lock_delay_ms": 0, "label": "billing-worker", "host": "h1", "pid": 42}`).
		want(t, http.StatusCreated, &full)
	s := full.Session
	if s.TTLMs != 5000 || s.LockDelayMs != 0 || s.Label != "billing-worker" || s.Host != "h1" || s.PID != 42 {
		t.Errorf("created %+v", s)
	}
	if s.ID == "" || s.CreatedIndex == 0 || res.index(t) != s.CreatedIndex {
		t.Errorf("id %q created_index %d, header index %d", s.ID, s.CreatedIndex, res.index(t))
	}
	if s.LeaseRemainingMs <= 0 || s.LeaseRemainingMs > 5000 || s.Locks == nil || s.Ephemerals == nil {
		t.Errorf("lease %d, locks %v, ephemerals %v", s.LeaseRemainingMs, s.Locks, s.Ephemerals)
	}
	if res.Header.Get(wire.HeaderLeader) == "" {
		t.Errorf("no %s header", wire.HeaderLeader)
	}

	// Get, list, keepalive (empty body and {}).
	var got wire.SessionResponse
	c.do("GET", "/v1/sessions/"+s.ID, nil).want(t, http.StatusOK, &got)
	if got.Session.ID != s.ID || got.Session.Label != "billing-worker" {
		t.Errorf("get %+v", got.Session)
	}
	var list wire.SessionsResponse
	c.do("GET", "/v1/sessions", nil).want(t, http.StatusOK, &list)
	if len(list.Sessions) != 2 || list.Sessions[0].ID != def.Session.ID || list.Sessions[1].ID != s.ID {
		t.Errorf("list %+v", list.Sessions)
	}
	var ka wire.SessionResponse
	c.do("POST", "/v1/sessions/"+s.ID+"/keepalive", nil).want(t, http.StatusOK, &ka)
	c.do("POST", "/v1/sessions/"+s.ID+"/keepalive", "{}").want(t, http.StatusOK, &ka)
	if ka.Session.LeaseRemainingMs <= 0 || ka.Session.LeaseRemainingMs > 5000 {
		t.Errorf("keepalive lease %d", ka.Session.LeaseRemainingMs)
	}

	// End it: 204, then it is gone for good.
	c.do("DELETE", "/v1/sessions/"+s.ID, nil).want(t, http.StatusNoContent, nil)
	c.do("GET", "/v1/sessions/"+s.ID, nil).wantError(t, http.StatusGone, wire.CodeSessionExpired)
	c.do("POST", "/v1/sessions/"+s.ID+"/keepalive", nil).wantError(t, http.StatusGone, wire.CodeSessionExpired)
	c.do("DELETE", "/v1/sessions/"+s.ID, nil).wantError(t, http.StatusGone, wire.CodeSessionExpired)
	c.do("GET", "/v1/sessions/00000000000fffff", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
	c.do("GET", "/v1/sessions", nil).want(t, http.StatusOK, &list)
	if len(list.Sessions) != 1 {
		t.Errorf("after end: %+v", list.Sessions)
	}
}

// TestKeepAlive keeps a short session alive well past its TTL, then lets it
// expire.
func TestKeepAlive(t *testing.T) {
	_, c := leaderClient(t, 3)
	s := c.newSession(1000, 0, "kept")
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond) // pacing keepalives, not synchronizing
	defer tick.Stop()
	for time.Since(start) < 2500*time.Millisecond {
		<-tick.C
		var ka wire.SessionResponse
		c.do("POST", "/v1/sessions/"+s.ID+"/keepalive", nil).want(t, http.StatusOK, &ka)
		if r := ka.Session.LeaseRemainingMs; r < 500 || r > 1000 {
			t.Fatalf("lease remaining %d after a keepalive", r)
		}
	}
	c.do("GET", "/v1/sessions/"+s.ID, nil).want(t, http.StatusOK, nil)
	// Stop: it expires within TTL plus the service's check interval.
	eventually(t, 5*time.Second, "the session to expire", func() bool {
		return c.do("GET", "/v1/sessions/"+s.ID, nil).Status == http.StatusGone
	})
}
