package api_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/paxos"
)

// TestForwardAbandonedWhenLeaderCutOff: a follower forwards a blocking
// acquire to the leader; the leader is then cut off from the other replicas
// (its HTTP port still answers, so the forwarded request would hang there).
// Once the follower sees a new leader, the forward is abandoned with
// unavailable (retry with the same request_id), long before the wait ends.
func TestForwardAbandonedWhenLeaderCutOff(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	l := cell.WaitLeader()
	f := cell.Follower()
	c := newClient(t, cell.URL(f))
	a := c.newSession(30000, 0, "holder")
	b := c.newSession(30000, 0, "waiter")
	c.grant(wire.AcquireRequest{Path: "/ls/local/fwd/lock", Session: a.ID})

	done := make(chan *response, 1)
	start := time.Now()
	go func() {
		done <- c.acquire(wire.AcquireRequest{Path: "/ls/local/fwd/lock", Session: b.ID, WaitMs: 60000, RequestID: "r1"})
	}()
	// Let the forwarded acquire reach the leader and queue there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := cell.Machine(l).GetLock("/ls/local/fwd/lock", 0)
		if err == nil && len(st.Waiters) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the forwarded acquire never queued at the leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	id, _ := strconv.Atoi(cell.ID(l))
	var peers []paxos.NodeID
	for i := 0; i < cell.Replicas(); i++ {
		n, _ := strconv.Atoi(cell.ID(i))
		peers = append(peers, paxos.NodeID(n))
	}
	cell.Network().Isolate(paxos.NodeID(id), peers)

	select {
	case r := <-done:
		r.wantError(t, http.StatusServiceUnavailable, wire.CodeUnavailable)
		t.Logf("forward abandoned after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("the forwarded request still hangs 20s after its leader was cut off")
	}
}
