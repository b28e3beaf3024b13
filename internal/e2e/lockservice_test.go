// Package e2e tests a real five-process lockd cell through its HTTP API.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockd/lockd/internal/testcell"
)

const lockPath = "/ls/local/app/lock"

func acquireBody(session, path string, waitMs int, reqID string) map[string]any {
	return map[string]any{"path": path, "session": session, "mode": "exclusive", "wait_ms": waitMs, "request_id": reqID}
}

// TestLockContentionFIFOAndFencing: one session holds, three wait in FIFO
// order and get the lock one by one on release; the sequencer of an old
// holder is rejected once the lock has changed hands.
func TestLockContentionFIFOAndFencing(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{})
	cell.WaitLeader(20 * time.Second)
	urls := cell.URLs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var sessions []string
	for i := range 4 {
		id := createSession(t, urls[i%len(urls)], 10000, 0, fmt.Sprintf("worker-%d", i))
		sessions = append(sessions, id)
		go keepAlive(ctx, urls, id, time.Second)
	}
	first := call(t, "POST", urls[0]+"/v1/locks/acquire", acquireBody(sessions[0], lockPath, 0, "a0"))
	if first.Status != http.StatusOK {
		t.Fatalf("first acquire: %d %s", first.Status, first.Raw)
	}
	grant0 := first.obj("lock")
	// A try-acquire by another session is refused while it is held.
	if r := call(t, "POST", urls[1]+"/v1/locks/acquire", acquireBody(sessions[1], lockPath, 0, "try")); r.code() != "lock_held" {
		t.Fatalf("try-acquire of a held lock: %d %s", r.Status, r.Raw)
	}

	// Three waiters queue in a known order (each joins after the previous
	// shows up in the queue), through different replicas.
	type result struct {
		who   int
		grant map[string]any
		code  string
	}
	results := make(chan result, 3)
	for w := 1; w <= 3; w++ {
		go func() {
			r := call(t, "POST", urls[w]+"/v1/locks/acquire", acquireBody(sessions[w], lockPath, 60000, fmt.Sprintf("w%d", w)))
			results <- result{w, r.obj("lock"), r.code()}
		}()
		eventually(t, 10*time.Second, fmt.Sprintf("waiter %d queued", w), func() bool {
			r := call(t, "GET", urls[0]+"/v1/locks"+lockPath, nil)
			ws, _ := r.obj("lock")["waiters"].([]any)
			return len(ws) == w
		})
	}
	r := call(t, "GET", urls[2]+"/v1/locks"+lockPath, nil)
	holders, _ := r.obj("lock")["holders"].([]any)
	if len(holders) != 1 || holders[0].(map[string]any)["label"] != "worker-0" {
		t.Fatalf("holders = %v, want worker-0 (who holds should be one read)", holders)
	}

	prev := grant0
	var order []int
	for i := range 3 {
		holder := sessions[0]
		if i > 0 {
			holder = sessions[order[i-1]]
		}
		rel := call(t, "POST", urls[4]+"/v1/locks/release", map[string]any{
			"path": lockPath, "session": holder, "generation": num(prev["generation"]), "request_id": fmt.Sprintf("rel%d", i)})
		if rel.Status != http.StatusOK {
			t.Fatalf("release by %s: %d %s", holder, rel.Status, rel.Raw)
		}
		got := <-results
		if got.code != "" {
			t.Fatalf("waiter %d: %s", got.who, got.code)
		}
		order = append(order, got.who)
		if num(got.grant["generation"]) <= num(prev["generation"]) {
			t.Fatalf("generation did not rise: %v then %v", prev["generation"], got.grant["generation"])
		}
		// Fencing: the previous holder's sequencer is now stale; the new one is valid.
		chk := call(t, "POST", urls[3]+"/v1/sequencers/check", map[string]any{"sequencers": []any{prev["sequencer"], got.grant["sequencer"]}})
		res, _ := chk.Body["results"].([]any)
		if len(res) != 2 || res[0].(map[string]any)["valid"] != false || res[1].(map[string]any)["valid"] != true {
			t.Fatalf("sequencer check after handover: %s", chk.Raw)
		}
		prev = got.grant
	}
	if !slices.Equal(order, []int{1, 2, 3}) {
		t.Fatalf("grant order %v, want FIFO [1 2 3]", order)
	}
	if r := call(t, "POST", urls[0]+"/v1/sequencers/check", map[string]any{"sequencer": "v1:garbage!"}); r.code() != "invalid_argument" {
		t.Fatalf("garbled sequencer: %d %s", r.Status, r.Raw)
	}
}

// TestSessionExpiryReleasesAfterLockDelay: a holder stops sending
// KeepAlives; its session expires, its ephemeral node goes, its lock is free
// only after the lock-delay, and a watcher sees each event in index order.
func TestSessionExpiryReleasesAfterLockDelay(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{SessionGraceMs: 1000})
	cell.WaitLeader(20 * time.Second)
	urls := cell.URLs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	w := watch(ctx, t, urls[3]+"/v1/watch/ls/local?recursive=true", 0)
	holder := createSession(t, urls[0], 1000, 3000, "doomed")
	other := createSession(t, urls[1], 10000, 0, "patient")
	go keepAlive(ctx, urls, other, time.Second)
	if r := call(t, "PUT", urls[0]+"/v1/nodes/ls/local/app/holder-alive", map[string]any{"contents": "x", "ephemeral": true, "session": holder}); r.Status != http.StatusCreated {
		t.Fatalf("ephemeral put: %d %s", r.Status, r.Raw)
	}
	if r := call(t, "POST", urls[0]+"/v1/locks/acquire", acquireBody(holder, lockPath, 0, "h")); r.Status != http.StatusOK {
		t.Fatalf("acquire: %d %s", r.Status, r.Raw)
	}
	// No KeepAlives for holder: it expires after TTL (plus any grace).
	eventually(t, 15*time.Second, "the holder's session to expire", func() bool {
		return call(t, "GET", urls[1]+"/v1/sessions/"+holder, nil).Status != http.StatusOK
	})
	expiredAt := time.Now()
	if r := call(t, "POST", urls[1]+"/v1/sessions/"+holder+"/keepalive", nil); r.code() != "session_expired" && r.code() != "not_found" {
		t.Fatalf("keepalive of an expired session: %d %s", r.Status, r.Raw)
	}
	if r := call(t, "GET", urls[2]+"/v1/nodes/ls/local/app/holder-alive", nil); r.code() != "not_found" {
		t.Fatalf("ephemeral survived its session: %d %s", r.Status, r.Raw)
	}
	// Within the lock-delay the lock is free but held back.
	r := call(t, "POST", urls[1]+"/v1/locks/acquire", acquireBody(other, lockPath, 0, "early"))
	if time.Since(expiredAt) < 2*time.Second {
		if r.code() != "lock_delayed" {
			t.Fatalf("acquire within lock-delay: %d %s", r.Status, r.Raw)
		}
		if e := r.obj("error"); num(e["retry_after_ms"]) == 0 {
			t.Fatalf("lock_delayed without retry_after_ms: %s", r.Raw)
		}
	}
	// A wait goes on through the lock-delay and is granted after it.
	r = call(t, "POST", urls[2]+"/v1/locks/acquire", acquireBody(other, lockPath, 20000, "wait"))
	if r.Status != http.StatusOK {
		t.Fatalf("acquire through lock-delay: %d %s", r.Status, r.Raw)
	}
	eventually(t, 10*time.Second, "the watcher to see the handover", func() bool {
		return hasEvent(w.snapshot(), "lock_acquired", lockPath) && len(lockAcquired(w.snapshot())) >= 2
	})
	events := w.snapshot()
	for _, want := range []string{"node_created", "lock_acquired", "session_expired", "node_deleted", "lock_released"} {
		if !hasEvent(events, want, "") {
			t.Fatalf("watcher missed %s: %s", want, describe(events))
		}
	}
	for i := 1; i < len(events); i++ {
		if events[i].Index < events[i-1].Index {
			t.Fatalf("events out of index order: %s", describe(events))
		}
	}
}

func lockAcquired(events []sseEvent) []sseEvent {
	var out []sseEvent
	for _, e := range events {
		if e.Type == "lock_acquired" {
			out = append(out, e)
		}
	}
	return out
}

// TestLeaderKillKeepsSessionsAndLocks: SIGKILL the leader replica while
// sessions hold locks. A new leader serves within seconds, the sessions
// survive (grace), the same sessions still hold the same locks, and a watch
// resumed from its last index on another replica misses no event.
func TestLeaderKillKeepsSessionsAndLocks(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{SessionGraceMs: 3000})
	leader := cell.WaitLeader(20 * time.Second)
	var others []string
	for _, r := range cell.Replicas {
		if r.ID != leader {
			others = append(others, r.URL())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	holders := map[string]string{} // path -> session
	for i := range 3 {
		id := createSession(t, others[i%len(others)], 4000, 1000, fmt.Sprintf("holder-%d", i))
		go keepAlive(ctx, others, id, 700*time.Millisecond)
		path := fmt.Sprintf("/ls/local/svc/lock-%d", i)
		if r := call(t, "POST", others[0]+"/v1/locks/acquire", acquireBody(id, path, 0, "x")); r.Status != http.StatusOK {
			t.Fatalf("acquire %s: %d %s", path, r.Status, r.Raw)
		}
		holders[path] = id
	}
	// A watcher on a follower that will survive, with events so far.
	wctx, wcancel := context.WithCancel(ctx)
	w1 := watch(wctx, t, others[0]+"/v1/watch/ls/local/svc?recursive=true", 0)
	eventually(t, 10*time.Second, "three lock_acquired events", func() bool { return len(lockAcquired(w1.snapshot())) >= 3 })

	killed := time.Now()
	cell.Kill(leader)
	// Writes during the failover, through the surviving replicas.
	var wrote []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 20; i++ {
			p := fmt.Sprintf("/ls/local/svc/during-%d", i)
			for {
				r, err := tryCall(ctx, "PUT", others[i%len(others)]+"/v1/nodes"+p, map[string]any{"contents": "v"})
				if err == nil && (r.Status == http.StatusCreated || r.Status == http.StatusOK) {
					mu.Lock()
					wrote = append(wrote, p)
					mu.Unlock()
					break
				}
				if time.Since(killed) > 30*time.Second {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
	newLeader := cell.WaitLeader(20 * time.Second)
	if newLeader == leader {
		t.Fatalf("leader %d was killed but is still reported", leader)
	}
	wg.Wait()
	t.Logf("new leader %d after %v", newLeader, time.Since(killed))
	if len(wrote) != 20 {
		t.Fatalf("only %d of 20 writes succeeded through the failover", len(wrote))
	}
	// Stop the first watcher and resume from its last index on another
	// surviving replica: together they must hold every event once.
	last := w1.snapshot()
	wcancel()
	<-w1.done
	lastIdx := last[len(last)-1].Index
	w2 := watch(ctx, t, others[2]+"/v1/watch/ls/local/svc?recursive=true", lastIdx)
	eventually(t, 15*time.Second, "the resumed watch to see every write", func() bool {
		n := 0
		for _, e := range w2.snapshot() {
			if e.Type == "node_created" && strings.Contains(fmt.Sprint(e.Data["path"]), "during-") {
				n++
			}
		}
		return n == 20-countCreated(last)
	})
	seen := map[uint64]map[string]bool{}
	for _, e := range append(last, w2.snapshot()...) {
		key := e.Type + fmt.Sprint(e.Data["path"])
		if seen[e.Index] == nil {
			seen[e.Index] = map[string]bool{}
		}
		if seen[e.Index][key] {
			t.Fatalf("event %s at %d delivered twice across the resume", key, e.Index)
		}
		seen[e.Index][key] = true
	}
	// Past the grace period, the sessions are alive and hold the same locks.
	eventually(t, 10*time.Second, "the grace period to pass", func() bool { return time.Since(killed) > 6*time.Second })
	for path, sess := range holders {
		r := call(t, "GET", others[1]+"/v1/locks"+path, nil)
		hs, _ := r.obj("lock")["holders"].([]any)
		if len(hs) != 1 || hs[0].(map[string]any)["session"] != sess {
			t.Fatalf("after failover %s holders = %s, want session %s", path, r.Raw, sess)
		}
		if s := call(t, "GET", others[2]+"/v1/sessions/"+sess, nil); s.Status != http.StatusOK {
			t.Fatalf("session %s did not survive the failover: %d %s", sess, s.Status, s.Raw)
		}
	}
}

func countCreated(events []sseEvent) int {
	n := 0
	for _, e := range events {
		if e.Type == "node_created" && strings.Contains(fmt.Sprint(e.Data["path"]), "during-") {
			n++
		}
	}
	return n
}

// TestRestartedReplicaCatchesUp: a replica killed and restarted catches up
// and serves stale reads equal to the leader's state.
func TestRestartedReplicaCatchesUp(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{SnapshotEvery: 50})
	leader := cell.WaitLeader(20 * time.Second)
	victim := leader%5 + 1
	cell.Kill(victim)
	lurl := cell.Replica(leader).URL()
	for i := range 120 {
		if r := call(t, "PUT", fmt.Sprintf("%s/v1/nodes/ls/local/data/k%d", lurl, i%10), map[string]any{"contents": fmt.Sprint(i)}); r.Status >= 300 {
			t.Fatalf("put: %d %s", r.Status, r.Raw)
		}
	}
	cell.Restart(victim)
	vurl := cell.Replica(victim).URL()
	eventually(t, 20*time.Second, "the restarted replica to catch up", func() bool {
		for i := range 10 {
			path := fmt.Sprintf("/v1/nodes/ls/local/data/k%d", i)
			a, err1 := tryCall(context.Background(), "GET", lurl+path, nil)
			b, err2 := tryCall(context.Background(), "GET", vurl+path+"?stale=true", nil)
			if err1 != nil || err2 != nil || a.Status != 200 || b.Status != 200 {
				return false
			}
			an, _ := json.Marshal(a.Body["node"])
			bn, _ := json.Marshal(b.Body["node"])
			if string(an) != string(bn) {
				return false
			}
		}
		return true
	})
}
