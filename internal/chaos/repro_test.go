package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/internal/testcell"
)

// TestReproPausedLeaderStaleRead reproduces the first bug the harness found
// (seed 1 of the CI profile: a linearizable GET answered with a value 8
// writes old). A leader that is SIGSTOPped for longer than its lease, while
// the others elect a new leader and take writes, answers the linearizable
// reads that were waiting for it from its stale state when it continues: its
// lease is counted in Paxos ticks, and ticks are only counted when a
// time.Ticker fires, so the seconds it spent stopped never happened on its
// clock and the lease still looked valid (DESIGN.md trap 8). Fixed: the
// Node's clock now follows elapsed monotonic time (paxos.Node.advanceClock;
// unit regression test paxos TestStalledLeaderDoesNotServeStaleLeaseReads),
// and this stays as the end-to-end regression test.
func TestReproPausedLeaderStaleRead(t *testing.T) {
	nw, err := NewNetwork(replicas)
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	cell := testcell.Start(t, testcell.Options{LogLevel: "info", Addresses: nw.Addresses})
	t.Cleanup(nw.Heal)
	leader := cell.WaitLeader(20 * time.Second)
	urls := cell.URLs()
	hc := newHTTPClient()
	ctx := context.Background()
	const path = "/ls/local/repro/x"
	put := func(url, v string) reply {
		return do(ctx, hc, 2*time.Second, http.MethodPut, url+"/v1/nodes"+path, wire.PutNodeRequest{Contents: &v})
	}
	if r := put(urls[leader-1], "before"); r.outcome() != OK {
		t.Fatalf("first write: %v", r)
	}
	// Stop the leader, and cut it off so that nothing deposes it when it
	// continues (an isolated leader must stop serving reads when its lease
	// runs out, whatever happened meanwhile).
	cell.Pause(leader)
	nw.Partition([][]uint32{{leader}, othersThan(leader)}, Drop)
	resumed := false
	defer func() {
		if !resumed {
			cell.Resume(leader)
		}
	}()

	// The others elect a new leader and take a newer write.
	other := urls[leader%uint32(len(urls))]
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := put(other, "after")
		if r.outcome() == OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write through %s while replica %d is stopped: %v", other, leader, r)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	// Every read below starts after "after" was acknowledged, so each must
	// see it (or fail). First some that wait, written whole into the
	// stopped leader's sockets; then some sent once it continues.
	const readers = 8
	var queued []net.Conn
	for range readers {
		c, err := net.Dial("tcp", cell.Replica(leader).Client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "GET /v1/nodes%s HTTP/1.1\r\nHost: lockd\r\nConnection: close\r\n\r\n", path); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, c)
	}
	cell.Resume(leader)
	resumed = true
	var got []reply
	for _, c := range queued {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			got = append(got, reply{Err: err})
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = append(got, reply{Status: resp.StatusCode, Body: body, Err: err})
	}
	for range readers {
		got = append(got, do(ctx, hc, 2*time.Second, http.MethodGet, urls[leader-1]+"/v1/nodes"+path, nil))
	}
	stale := 0
	for _, r := range got {
		var nr wire.NodeResponse
		if r.outcome() == OK && r.decode(&nr) == nil && nr.Node.Contents != nil && *nr.Node.Contents == "before" {
			stale++
		}
	}
	if stale > 0 {
		t.Fatalf("%d of %d linearizable reads sent to the stopped leader %d after %q was acknowledged answered %q "+
			"(first answer: %s)", stale, len(got), leader, "after", "before", fmt.Sprint(got[0]))
	}
	t.Logf("first answer: %v", got[0])
}

// TestReproResumedLeaderExpiresLiveSessions: a leader SIGSTOPped for longer
// than a session's TTL answers the KeepAlives that waited for it with 410
// session_expired when it continues, although the session is alive (the new
// leader keeps it). KeepAlive consults only the lease table, whose leadership
// flag session.Service.Run updates every 25 ms, and whose deadlines all
// passed while the process was stopped.
//
//	go test ./internal/chaos -run TestReproResumedLeaderExpiresLiveSessions -v
func TestReproResumedLeaderExpiresLiveSessions(t *testing.T) {
	nw, err := NewNetwork(replicas)
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	cell := testcell.Start(t, testcell.Options{LogLevel: "info", Addresses: nw.Addresses})
	t.Cleanup(nw.Heal)
	leader := cell.WaitLeader(20 * time.Second)
	urls := cell.URLs()
	w := &world{start: time.Now(), urls: urls, hc: newHTTPClient(), opTimeout: 2 * time.Second, logf: t.Logf}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	other := int(leader % uint32(len(urls))) // index of a replica that is not the leader
	s, err := w.createSession(ctx, 2*time.Second, 0, "repro", other)
	if err != nil {
		t.Fatal(err)
	}
	w.startKeepAlive(ctx, s, 300*time.Millisecond, other)
	defer s.end()

	cell.Pause(leader)
	nw.Partition([][]uint32{{leader}, othersThan(leader)}, Drop) // nothing deposes it when it continues
	resumed := false
	defer func() {
		if !resumed {
			cell.Resume(leader)
		}
	}()
	const queued = 8
	var wg sync.WaitGroup
	got := make([]reply, queued)
	for i := range queued {
		wg.Go(func() {
			got[i] = do(ctx, w.hc, 30*time.Second, http.MethodPost, urls[leader-1]+"/v1/sessions/"+s.ID+"/keepalive", nil)
		})
	}
	// Stopped for longer than TTL plus grace: every lease on its table ran out.
	deadline := time.Now().Add(20 * time.Second)
	for !s.valid(w.now()) || time.Since(w.start) < 5*time.Second {
		if time.Now().After(deadline) || s.expired.Load() {
			t.Fatalf("the session did not live on through the other replicas (expired %v)", s.expired.Load())
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	cell.Resume(leader)
	resumed = true
	wg.Wait()
	expired := 0
	for _, r := range got {
		if r.Code == wire.CodeSessionExpired {
			expired++
		}
	}
	var sr wire.SessionResponse
	alive := w.readUntil(ctx, "/v1/sessions/"+s.ID, &sr).outcome() == OK
	if expired > 0 && alive {
		t.Fatalf("%d of %d KeepAlives queued at the stopped leader %d were answered session_expired, yet the session is alive",
			expired, queued, leader)
	}
	t.Logf("answers: %v; alive %v", got[0], alive)
}
