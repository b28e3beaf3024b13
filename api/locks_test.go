package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockd/lockd/api/wire"
)

func TestLockRoutes(t *testing.T) {
	_, c := leaderClient(t, 3)
	a := c.newSession(10000, 0, "a")
	b := c.newSession(10000, 0, "b")
	const p = "/ls/local/jobs/nightly"

	// Acquire creates the node; a repeat of the request id answers the
	// same grant.
	g := c.grant(wire.AcquireRequest{Path: p, Session: a.ID, RequestID: "r1"})
	if g.Path != p || g.Mode != wire.ModeExclusive || g.Session != a.ID || g.Generation == 0 || g.Sequencer == "" {
		t.Fatalf("grant %+v", g)
	}
	if again := c.grant(wire.AcquireRequest{Path: p, Session: a.ID, RequestID: "r1"}); again != g {
		t.Errorf("repeat %+v, first %+v", again, g)
	}
	c.do("GET", "/v1/nodes"+p, nil).want(t, http.StatusOK, nil)

	// Another session's try fails; the lock shows its holder.
	c.acquire(wire.AcquireRequest{Path: p, Session: b.ID}).wantError(t, http.StatusConflict, wire.CodeLockHeld)
	l := c.lock(p)
	if l.Mode != wire.ModeExclusive || l.Generation != g.Generation || len(l.Holders) != 1 || l.Holders[0].Session != a.ID ||
		l.Holders[0].Label != "a" || len(l.Waiters) != 0 {
		t.Errorf("lock %+v", l)
	}
	var locks wire.LocksResponse
	c.do("GET", "/v1/locks", nil).want(t, http.StatusOK, &locks)
	if len(locks.Locks) != 1 || locks.Locks[0].Path != p {
		t.Errorf("locks %+v", locks.Locks)
	}

	// Release with a wrong generation, by a non-holder, then for real.
	c.do("POST", "/v1/locks/release", wire.ReleaseRequest{Path: p, Session: a.ID, Generation: g.Generation + 1}).
		wantError(t, http.StatusConflict, wire.CodeNotHolder)
	c.do("POST", "/v1/locks/release", wire.ReleaseRequest{Path: p, Session: b.ID, Generation: g.Generation}).
		wantError(t, http.StatusConflict, wire.CodeNotHolder)
	var rel wire.ReleaseResponse
	c.do("POST", "/v1/locks/release", wire.ReleaseRequest{Path: p, Session: a.ID, Generation: g.Generation, RequestID: "rel1"}).
		want(t, http.StatusOK, &rel)
	c.do("POST", "/v1/locks/release", wire.ReleaseRequest{Path: p, Session: a.ID, Generation: g.Generation, RequestID: "rel1"}).
		want(t, http.StatusOK, &rel) // a repeat of a done release
	if !rel.Released {
		t.Errorf("released %v", rel.Released)
	}
	if l := c.lock(p); l.Mode != "" || len(l.Holders) != 0 {
		t.Errorf("after release %+v", l)
	}

	// Shared holds.
	ga := c.grant(wire.AcquireRequest{Path: p, Session: a.ID, Mode: wire.ModeShared})
	gb := c.grant(wire.AcquireRequest{Path: p, Session: b.ID, Mode: wire.ModeShared})
	if l := c.lock(p); l.Mode != wire.ModeShared || len(l.Holders) != 2 {
		t.Errorf("shared %+v", l)
	}
	c.release(p, a.ID, ga.Generation)
	c.release(p, b.ID, gb.Generation)
	c.do("GET", "/v1/locks/ls/local/never", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
}

func TestElection(t *testing.T) {
	_, c := leaderClient(t, 3)
	const p = "/ls/local/election/primary"
	a := c.newSession(10000, 0, "a")
	b := c.newSession(10000, 0, "b")
	var none wire.ElectionResponse
	if r := c.do("GET", "/v1/elections"+p, nil).want(t, http.StatusOK, &none); none.Leader != nil || !strings.Contains(string(r.Body), `"leader":null`) {
		t.Fatalf("election with no node: %s, want {\"leader\": null}", r.Body)
	}
	g := c.grant(wire.AcquireRequest{Path: p, Session: a.ID, Contents: ptr("http://a:8080")})
	var e wire.ElectionResponse
	c.do("GET", "/v1/elections"+p, nil).want(t, http.StatusOK, &e)
	if e.Leader == nil || e.Leader.Session != a.ID || e.Leader.Value == nil || *e.Leader.Value != "http://a:8080" ||
		e.Leader.Generation != g.Generation || e.Leader.Sequencer != g.Sequencer {
		t.Fatalf("leader %+v", e.Leader)
	}
	// b campaigns (waits); a resigns; b publishes its value with the grant.
	done := make(chan wire.Grant, 1)
	go func() {
		var out wire.LockResponse
		res := newClient(t, c.base).acquire(wire.AcquireRequest{Path: p, Session: b.ID, WaitMs: 10000, Contents: ptr("http://b:8080")})
		if res.Status == http.StatusOK {
			_ = jsonInto(res.Body, &out)
		}
		done <- out.Lock
	}()
	eventually(t, 5*time.Second, "b to queue", func() bool { return len(c.lock(p).Waiters) == 1 })
	c.release(p, a.ID, g.Generation)
	gb := <-done
	c.do("GET", "/v1/elections"+p, nil).want(t, http.StatusOK, &e)
	if e.Leader == nil || e.Leader.Session != b.ID || *e.Leader.Value != "http://b:8080" || e.Leader.Generation != gb.Generation {
		t.Fatalf("new leader %+v (grant %+v)", e.Leader, gb)
	}
	c.release(p, b.ID, gb.Generation)
	c.do("GET", "/v1/elections"+p, nil).want(t, http.StatusOK, &e)
	if e.Leader != nil {
		t.Errorf("no holder, leader %+v", e.Leader)
	}
}

// TestFIFOHandover queues three waiters and checks that releases hand the
// lock over in queue order, each in the commit that releases.
func TestFIFOHandover(t *testing.T) {
	_, c := leaderClient(t, 3)
	const p = "/ls/local/fifo"
	holder := c.newSession(10000, 0, "holder")
	g0 := c.grant(wire.AcquireRequest{Path: p, Session: holder.ID})

	type result struct {
		who   int
		grant wire.Grant
		err   error
	}
	results := make(chan result, 3)
	var waiters []wire.Session
	for i := range 3 {
		s := c.newSession(10000, 0, "w")
		waiters = append(waiters, s)
		go func() {
			res := newClient(t, c.base).acquire(wire.AcquireRequest{Path: p, Session: s.ID, WaitMs: 20000, RequestID: "fifo"})
			var out wire.LockResponse
			err := jsonInto(res.Body, &out)
			if res.Status != http.StatusOK {
				err = errors.New(string(res.Body))
			}
			results <- result{who: i, grant: out.Lock, err: err}
		}()
		// Queue them one after the other.
		eventually(t, 5*time.Second, "waiter to queue", func() bool { return len(c.lock(p).Waiters) == i+1 })
	}
	l := c.lock(p)
	for i, w := range l.Waiters {
		if w.Session != waiters[i].ID || w.Mode != wire.ModeExclusive {
			t.Fatalf("queue %+v", l.Waiters)
		}
	}
	prev := g0
	c.release(p, holder.ID, g0.Generation)
	for i := range 3 {
		r := <-results
		if r.err != nil || r.who != i || r.grant.Session != waiters[i].ID || r.grant.Generation <= prev.Generation {
			t.Fatalf("grant %d: %+v (want waiter %d after generation %d)", i, r, i, prev.Generation)
		}
		if l := c.lock(p); len(l.Holders) != 1 || l.Holders[0].Session != waiters[i].ID || len(l.Waiters) != 2-i {
			t.Fatalf("after grant %d: %+v", i, l)
		}
		prev = r.grant
		c.release(p, waiters[i].ID, r.grant.Generation)
	}
}

// TestWaitDeadline: a wait whose deadline passes is refused lock_held, by
// the cell, and leaves the queue.
func TestWaitDeadline(t *testing.T) {
	_, c := leaderClient(t, 3)
	const p = "/ls/local/deadline"
	a := c.newSession(10000, 0, "a")
	b := c.newSession(10000, 0, "b")
	c.grant(wire.AcquireRequest{Path: p, Session: a.ID})
	start := time.Now()
	c.acquire(wire.AcquireRequest{Path: p, Session: b.ID, WaitMs: 300}).wantError(t, http.StatusConflict, wire.CodeLockHeld)
	// The cell's clock is whole milliseconds (the leader stamps UnixMilli),
	// so the deadline may fall up to 1 ms early by this wall clock.
	if d := time.Since(start); d < 299*time.Millisecond {
		t.Errorf("refused after %v, before the deadline", d)
	}
	if l := c.lock(p); len(l.Waiters) != 0 || l.Holders[0].Session != a.ID {
		t.Errorf("after the deadline %+v", l)
	}
}

// TestAcquireCancel: the client's going away ends the HTTP wait, not the
// queued waiter, which stays until its deadline; a retry with the same
// request id joins it.
func TestAcquireCancel(t *testing.T) {
	_, c := leaderClient(t, 3)
	const p = "/ls/local/cancel"
	a := c.newSession(10000, 0, "a")
	b := c.newSession(10000, 0, "b")
	g := c.grant(wire.AcquireRequest{Path: p, Session: a.ID})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/locks/acquire",
			jsonBody(wire.AcquireRequest{Path: p, Session: b.ID, WaitMs: 20000, RequestID: "join"}))
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			t.Errorf("acquire answered %d, want the request cancelled", res.StatusCode)
		}
	}()
	eventually(t, 5*time.Second, "b to queue", func() bool { return len(c.lock(p).Waiters) == 1 })
	cancel()
	wg.Wait()
	if l := c.lock(p); len(l.Waiters) != 1 || l.Waiters[0].Session != b.ID {
		t.Fatalf("waiter gone after the request ended: %+v", l)
	}
	joined := make(chan wire.Grant, 1)
	go func() {
		var out wire.LockResponse
		res := newClient(t, c.base).acquire(wire.AcquireRequest{Path: p, Session: b.ID, WaitMs: 20000, RequestID: "join"})
		_ = jsonInto(res.Body, &out)
		joined <- out.Lock
	}()
	eventually(t, 5*time.Second, "the retry to join", func() bool { return len(c.lock(p).Waiters) == 1 })
	c.release(p, a.ID, g.Generation)
	if gb := <-joined; gb.Session != b.ID || gb.Generation <= g.Generation {
		t.Fatalf("joined grant %+v", gb)
	}
	if l := c.lock(p); len(l.Waiters) != 0 || l.Holders[0].Session != b.ID {
		t.Errorf("after the grant %+v", l)
	}
}

// TestSequencers: an old holder's sequencer is no longer valid after the
// lock was handed over; a garbled one is invalid_argument.
func TestSequencers(t *testing.T) {
	_, c := leaderClient(t, 3)
	const p = "/ls/local/fenced"
	a := c.newSession(10000, 0, "a")
	b := c.newSession(10000, 0, "b")
	ga := c.grant(wire.AcquireRequest{Path: p, Session: a.ID})
	var one wire.SequencerResult
	c.do("POST", "/v1/sequencers/check", wire.CheckSequencerRequest{Sequencer: ga.Sequencer}).want(t, http.StatusOK, &one)
	if !one.Valid || one.CurrentGeneration != ga.Generation {
		t.Fatalf("holder's sequencer %+v", one)
	}
	done := make(chan wire.Grant, 1)
	go func() {
		var out wire.LockResponse
		res := newClient(t, c.base).acquire(wire.AcquireRequest{Path: p, Session: b.ID, WaitMs: 10000})
		_ = jsonInto(res.Body, &out)
		done <- out.Lock
	}()
	eventually(t, 5*time.Second, "b to queue", func() bool { return len(c.lock(p).Waiters) == 1 })
	c.release(p, a.ID, ga.Generation)
	gb := <-done
	c.do("POST", "/v1/sequencers/check", wire.CheckSequencerRequest{Sequencer: ga.Sequencer}).want(t, http.StatusOK, &one)
	if one.Valid || one.CurrentGeneration != gb.Generation {
		t.Errorf("old holder's sequencer after handover %+v (new generation %d)", one, gb.Generation)
	}
	var batch wire.CheckSequencersResponse
	c.do("POST", "/v1/sequencers/check", wire.CheckSequencerRequest{Sequencers: []string{ga.Sequencer, gb.Sequencer}}).
		want(t, http.StatusOK, &batch)
	if len(batch.Results) != 2 || batch.Results[0].Valid || !batch.Results[1].Valid {
		t.Errorf("batch %+v", batch.Results)
	}
	c.do("POST", "/v1/sequencers/check", wire.CheckSequencerRequest{Sequencer: "v1:garbage"}).
		wantError(t, http.StatusBadRequest, wire.CodeInvalidArgument)
	c.do("POST", "/v1/sequencers/check", wire.CheckSequencerRequest{Sequencers: []string{gb.Sequencer, "nope"}}).
		wantError(t, http.StatusBadRequest, wire.CodeInvalidArgument)
	c.do("POST", "/v1/sequencers/check?stale=true", wire.CheckSequencerRequest{Sequencer: gb.Sequencer}).want(t, http.StatusOK, &one)
	if !one.Valid {
		t.Errorf("stale check of the holder %+v", one)
	}
}
