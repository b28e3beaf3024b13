package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockd/lockd/api"
	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
)

const (
	tokQuota = "quota-token-0123456789"
	tokFlood = "flood-token-0123456789"
	tokCalm  = "calm-token-0123456789"
)

func limitedCell(t *testing.T, toks ...apitest.Token) (*apitest.Cell, *client) {
	t.Helper()
	return limitedCellWith(t, apitest.Options{Replicas: 3}, toks...)
}

func limitedCellWith(t *testing.T, opts apitest.Options, toks ...apitest.Token) (*apitest.Cell, *client) {
	t.Helper()
	c := securedCellWith(t, opts, func(all *[]apitest.Token) { *all = append(*all, toks...) })
	leader := newClient(t, c.LeaderURL())
	for _, tk := range toks {
		leader.as(tokAdmin).do("PUT", "/v1/acls/ls/local/"+tk.Name, map[string]any{"principal": tk.Name,
			"perms": []string{"read", "write", "lock"}}).want(t, http.StatusOK, nil)
	}
	return c, leader
}

func wantTooMany(t *testing.T, r *response, what string) {
	t.Helper()
	var e wire.ErrorResponse
	if err := json.Unmarshal(r.Body, &e); err != nil || r.Status != http.StatusTooManyRequests ||
		e.Error.Code != wire.CodeTooManyRequests || e.Error.RetryAfterMs <= 0 {
		t.Fatalf("%s: got %d %s, want 429 too_many_requests with retry_after_ms", what, r.Status, r.Body)
	}
}

func TestQuotas(t *testing.T) {
	c, leader := limitedCell(t, apitest.Token{Name: "q", Token: tokQuota, Limits: api.Limits{Sessions: 2, Waiters: 1, Watches: 1}})
	q, admin := leader.as(tokQuota), leader.as(tokAdmin)

	// Sessions: two live at most; ending one makes room.
	s1 := q.newSession(60_000, 0, "1")
	q.newSession(60_000, 0, "2")
	settle(t, c, admin)
	before := snapshots(t, c)
	wantTooMany(t, q.do("POST", "/v1/sessions", map[string]any{}), "third session")
	for i, after := range snapshots(t, c) {
		if !bytes.Equal(before[i], after) {
			t.Fatalf("a refused session creation changed replica %d's state", i)
		}
	}
	admin.newSession(60_000, 0, "admin's own quota is separate")
	q.do("DELETE", "/v1/sessions/"+s1.ID, nil).want(t, http.StatusNoContent, nil)
	s3 := q.newSession(60_000, 0, "3")

	// Waiters: one queued wait; a second acquire that would wait is
	// refused, a try is not.
	holder := admin.newSession(60_000, 0, "holder")
	admin.grant(wire.AcquireRequest{Path: "/ls/local/q/l1", Session: holder.ID})
	admin.grant(wire.AcquireRequest{Path: "/ls/local/q/l2", Session: holder.ID})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := make(chan struct{})
	go func() {
		defer close(waiting)
		req, _ := http.NewRequestWithContext(ctx, "POST", c.LeaderURL()+"/v1/locks/acquire",
			jsonBody(wire.AcquireRequest{Path: "/ls/local/q/l1", Session: s3.ID, WaitMs: 30_000}))
		req.Header.Set("Authorization", "Bearer "+tokQuota)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	eventually(t, 5*time.Second, "the wait to queue", func() bool {
		return len(admin.lock("/ls/local/q/l1").Waiters) == 1
	})
	wantTooMany(t, q.do("POST", "/v1/locks/acquire", wire.AcquireRequest{Path: "/ls/local/q/l2", Session: s3.ID, WaitMs: 1000}),
		"second wait")
	q.do("POST", "/v1/locks/acquire", wire.AcquireRequest{Path: "/ls/local/q/l2", Session: s3.ID}).
		wantError(t, http.StatusConflict, wire.CodeLockHeld)
	cancel()
	<-waiting

	// Watches: one open watch per replica.
	stream := openSSE(t, c.LeaderURL()+"/v1/watch/ls/local/q?recursive=true", "Authorization", "Bearer "+tokQuota)
	wantTooMany(t, q.do("GET", "/v1/watch/ls/local/q?wait_ms=0", nil), "second watch")
	newClient(t, c.URL(c.Follower())).as(tokQuota).do("GET", "/v1/watch/ls/local/q?wait_ms=0", nil).want(t, http.StatusOK, nil)
	stream.close()
	eventually(t, 5*time.Second, "the closed stream to free its slot", func() bool {
		return q.do("GET", "/v1/watch/ls/local/q?wait_ms=0", nil).Status == http.StatusOK
	})
}

func TestRateLimits(t *testing.T) {
	_, leader := limitedCell(t, apitest.Token{Name: "q", Token: tokQuota,
		Limits: api.Limits{SessionCreatesPerS: 2, KeepAlivesPerS: 2, RequestsPerS: 50}})
	q := leader.as(tokQuota)
	s := q.newSession(60_000, 0, "1")
	q.newSession(60_000, 0, "2") // the burst is one second's worth: 2
	wantTooMany(t, q.do("POST", "/v1/sessions", map[string]any{}), "third creation within a second")
	for range 2 {
		if r := q.do("POST", "/v1/sessions/"+s.ID+"/keepalive", nil); r.Status != http.StatusOK && r.Status != http.StatusTooManyRequests {
			t.Fatalf("keepalive: %d %s", r.Status, r.Body)
		}
	}
	wantTooMany(t, q.do("POST", "/v1/sessions/"+s.ID+"/keepalive", nil), "third keepalive within a second")
	eventually(t, 3*time.Second, "the session bucket to refill", func() bool {
		return q.do("POST", "/v1/sessions", map[string]any{}).Status == http.StatusCreated
	})
	// The request rate covers every route.
	var refused bool
	for i := 0; i < 200 && !refused; i++ {
		refused = q.do("GET", "/v1/nodes/ls/local/q?stale=true", nil).Status == http.StatusTooManyRequests
	}
	if !refused {
		t.Fatal("200 requests at once never hit the limit of 50 per second")
	}
}

// TestSessionFloodDoesNotStarveOthers: token A floods session creations
// from many connections; it is throttled to its rate (429s), while token B
// goes on acquiring and releasing a lock, every operation succeeding, with
// a latency not far from its baseline measured in the same test.
//
// The flooding clients run in the test's process, beside the whole cell,
// and compete with it for the CPU as no remote client would: the cell runs
// the production tick (10ms) rather than apitest's 2ms, and under the race
// detector the flood uses fewer connections.
func TestSessionFloodDoesNotStarveOthers(t *testing.T) {
	c, leader := limitedCellWith(t, apitest.Options{Replicas: 3, TickInterval: 10 * time.Millisecond},
		apitest.Token{Name: "flood", Token: tokFlood, Limits: api.Limits{SessionCreatesPerS: 20}},
		apitest.Token{Name: "calm", Token: tokCalm},
	)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	calm := leader.as(tokCalm)
	calm.hc = hc
	sess := calm.newSession(60_000, 0, "calm")

	pairs := 150
	if testing.Short() {
		pairs = 50
	}
	measure := func() []time.Duration {
		var lat []time.Duration
		for i := range pairs {
			start := time.Now()
			r := calm.do("POST", "/v1/locks/acquire", wire.AcquireRequest{Path: "/ls/local/calm/l", Session: sess.ID})
			if r.Status != http.StatusOK {
				t.Fatalf("calm acquire %d: %d %s", i, r.Status, r.Body)
			}
			lat = append(lat, time.Since(start))
			var g wire.LockResponse
			_ = json.Unmarshal(r.Body, &g)
			start = time.Now()
			r = calm.do("POST", "/v1/locks/release", wire.ReleaseRequest{Path: g.Lock.Path, Session: sess.ID, Generation: g.Lock.Generation})
			if r.Status != http.StatusOK {
				t.Fatalf("calm release %d: %d %s", i, r.Status, r.Body)
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	base := measure()

	var created, refused, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	flooders := 16
	if raceEnabled {
		flooders = 4
	}
	for range flooders {
		wg.Go(func() {
			body := []byte(`{"ttl_ms": 1000}`)
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", c.LeaderURL()+"/v1/sessions", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tokFlood)
				res, err := hc.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				_, _ = bytes.NewBuffer(nil).ReadFrom(res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case http.StatusCreated:
					created.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	// Let the flood start before measuring.
	eventually(t, 10*time.Second, "the flood to be refused", func() bool { return refused.Load() > 50 })
	floodStart := time.Now()
	during := measure()
	floodFor := time.Since(floodStart)
	close(stop)
	wg.Wait()

	bp50, bp99 := percentile(base, 50), percentile(base, 99)
	dp50, dp99 := percentile(during, 50), percentile(during, 99)
	t.Logf("flood from %d connections: %d created, %d refused (429), %d other in the run; calm ops: baseline p50 %v p99 %v, "+
		"during the flood (%v) p50 %v p99 %v: ratios p50 %.2fx p99 %.2fx",
		flooders, created.Load(), refused.Load(), other.Load(), bp50, bp99, floodFor.Round(time.Millisecond), dp50, dp99,
		float64(dp50)/float64(bp50), float64(dp99)/float64(bp99))
	total := created.Load() + refused.Load()
	if created.Load() == 0 || refused.Load() < 10*created.Load() {
		t.Errorf("the flood was not throttled: %d created, %d refused of %d", created.Load(), refused.Load(), total)
	}
	// Throttled to its rate: 20/s plus a burst of 20 (per second of flood,
	// generously rounded).
	if maxCreated := int64(20*(floodFor.Seconds()+5) + 20); created.Load() > maxCreated {
		t.Errorf("%d sessions created in %v, over the rate", created.Load(), floodFor)
	}
	if limit := 10*bp99 + 50*time.Millisecond; dp99 > limit {
		t.Errorf("calm p99 %v during the flood, over 10x its baseline p99 %v + 50ms", dp99, bp99)
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}
