package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/internal/testcell"
)

const (
	floodToken = "flood-token-0123456789"
	calmToken  = "calm-token-0123456789"
)

// TestSessionFloodOnRealCell: on five real replica processes, token
// "flood" creates sessions as fast as many connections can, and is held to
// its rate with 429s, while token "calm" acquires and releases a lock: every
// one of calm's operations succeeds, and its latency stays within a loose
// bound of its baseline measured in the same test. The figures are logged.
func TestSessionFloodOnRealCell(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cell")
	}
	c := testcell.Start(t, testcell.Options{LogLevel: "info", AdminToken: adminToken, Auth: &config.Auth{
		Tokens: []config.Token{
			{Name: "admin", SHA256: config.HashToken(adminToken), Admin: true},
			{Name: "flood", SHA256: config.HashToken(floodToken), Limits: &config.Limits{SessionCreatesPerS: 20}},
			{Name: "calm", SHA256: config.HashToken(calmToken)},
		},
		ACL:          []config.ACLRule{{Prefix: "/ls/local/calm", Principal: "calm", Perms: []string{"read", "write", "lock"}}},
		ReplicaToken: "replica-secret-0123456789",
	}})
	leader := c.Replica(c.WaitLeader(30 * time.Second))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	call := func(token, method, path string, body any) (int, []byte) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, leader.URL()+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := hc.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, out
	}
	code, body := call(calmToken, "POST", "/v1/sessions", map[string]any{"ttl_ms": 60000})
	if code != http.StatusCreated {
		t.Fatalf("calm session: %d %s", code, body)
	}
	var sess struct {
		Session struct{ ID string } `json:"session"`
	}
	_ = json.Unmarshal(body, &sess)

	pairs := 100
	measure := func() []time.Duration {
		var lat []time.Duration
		for i := range pairs {
			start := time.Now()
			code, body := call(calmToken, "POST", "/v1/locks/acquire", map[string]any{"path": "/ls/local/calm/l", "session": sess.Session.ID})
			if code != http.StatusOK {
				t.Fatalf("calm acquire %d: %d %s", i, code, body)
			}
			lat = append(lat, time.Since(start))
			var g struct {
				Lock struct{ Generation uint64 } `json:"lock"`
			}
			_ = json.Unmarshal(body, &g)
			start = time.Now()
			code, body = call(calmToken, "POST", "/v1/locks/release", map[string]any{"path": "/ls/local/calm/l",
				"session": sess.Session.ID, "generation": g.Lock.Generation})
			if code != http.StatusOK {
				t.Fatalf("calm release %d: %d %s", i, code, body)
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	base := measure()

	flooders := 16
	if raceEnabled {
		flooders = 4
	}
	var created, refused, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range flooders {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch code, _ := call(floodToken, "POST", "/v1/sessions", map[string]any{"ttl_ms": 1000}); code {
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
	deadline := time.Now().Add(10 * time.Second)
	for refused.Load() < 50 {
		if time.Now().After(deadline) {
			t.Fatal("the flood was never refused")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	start := time.Now()
	during := measure()
	floodFor := time.Since(start)
	close(stop)
	wg.Wait()

	pct := func(d []time.Duration, p int) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[min(max((len(s)*p+99)/100-1, 0), len(s)-1)]
	}
	bp50, bp99, dp50, dp99 := pct(base, 50), pct(base, 99), pct(during, 50), pct(during, 99)
	t.Logf("real cell, flood from %d connections: %d created, %d refused (429), %d other; calm acquire/release: "+
		"baseline p50 %v p99 %v; during the flood (%v) p50 %v p99 %v; ratios p50 %.2fx p99 %.2fx",
		flooders, created.Load(), refused.Load(), other.Load(), bp50, bp99, floodFor.Round(time.Millisecond),
		dp50, dp99, float64(dp50)/float64(bp50), float64(dp99)/float64(bp99))
	if created.Load() == 0 || refused.Load() < 5*created.Load() {
		t.Errorf("the flood was not throttled: %d created, %d refused", created.Load(), refused.Load())
	}
	if limit := 10*bp99 + 50*time.Millisecond; dp99 > limit {
		t.Errorf("calm p99 %v during the flood, over 10x its baseline p99 %v + 50ms", dp99, bp99)
	}
}
