package lockd_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	lockd "github.com/lockd/lockd/clients/go"
)

// TestElectionOneLeaderAtATime runs three candidates; an observer sees one
// leader at a time, with rising generations; each resignation hands over to
// the next candidate; Proclaim changes the value, and a deposed leader
// cannot proclaim.
func TestElectionOneLeaderAtATime(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	path := cellPath(cell, "election/primary")
	observer := newClient(t, cell.URLs())
	octx, ocancel := context.WithCancel(ctx)
	leaders := observer.ObserveElection(octx, path)

	var mu sync.Mutex
	leading := map[int]bool{}
	var es []*lockd.Election
	won := make(chan int, 3)
	for i := range 3 {
		c := newClient(t, cell.URLs())
		e := lockd.NewElection(newSession(t, c, lockd.WithLabel(fmt.Sprint("candidate-", i))), path)
		es = append(es, e)
		go func() {
			if err := e.Campaign(ctx, fmt.Sprint("node-", i)); err != nil {
				t.Errorf("Campaign %d: %v", i, err)
				return
			}
			mu.Lock()
			leading[i] = true
			n := len(leading)
			mu.Unlock()
			if n != 1 {
				t.Errorf("candidate %d won while %d lead", i, n-1)
			}
			won <- i
		}()
	}
	var lastGen uint64
	seen := map[string]bool{}
	for round := range 3 {
		i := recv(t, won, 10*time.Second, "a winner")
		e := es[i]
		if !e.IsLeader() {
			t.Fatalf("winner %d does not lead", i)
		}
		li := recv(t, leaders, 10*time.Second, "observed leader")
		if li.Session != e.Session().ID() || li.Value != fmt.Sprint("node-", i) || li.Generation != e.Generation() {
			t.Fatalf("round %d: observed %+v, want candidate %d (session %s, generation %d)", round, li, i, e.Session().ID(), e.Generation())
		}
		if li.Generation <= lastGen || seen[li.Session] {
			t.Fatalf("round %d: leader %+v after generation %d", round, li, lastGen)
		}
		lastGen, seen[li.Session] = li.Generation, true
		got, err := e.Leader(ctx)
		if err != nil || got.Session != li.Session || got.Sequencer != e.Sequencer() {
			t.Fatalf("Leader: %+v, %v", got, err)
		}
		if round == 0 {
			if err := e.Proclaim(ctx, "node-0-v2"); err != nil {
				t.Fatalf("Proclaim: %v", err)
			}
			li := recv(t, leaders, 10*time.Second, "proclaimed value")
			if li.Value != "node-0-v2" || li.Generation != lastGen {
				t.Fatalf("after Proclaim observed %+v", li)
			}
		}
		mu.Lock()
		delete(leading, i)
		mu.Unlock()
		if err := e.Resign(ctx); err != nil {
			t.Fatalf("Resign: %v", err)
		}
		if e.IsLeader() {
			t.Fatal("leads after Resign")
		}
		if err := e.Proclaim(ctx, "late"); !errors.Is(err, lockd.ErrElectionNotLeader) {
			t.Fatalf("Proclaim after Resign: %v, want ErrElectionNotLeader", err)
		}
	}
	if _, err := observer.ElectionLeader(ctx, path); !errors.Is(err, lockd.ErrElectionNoLeader) {
		t.Fatalf("leader after everyone resigned: %v", err)
	}
	if _, err := observer.ElectionLeader(ctx, cellPath(cell, "election/never")); !errors.Is(err, lockd.ErrElectionNoLeader) {
		t.Fatalf("leader of an election nobody ran: %v", err)
	}
	ocancel()
	for range leaders { // closed when its ctx ends
	}
}

// TestElectionDeposedLeaderCannotProclaim expires a leader's session while
// it is cut off; the next candidate wins and a late Proclaim of the old
// leader does not overwrite the new value.
func TestElectionDeposedLeaderCannotProclaim(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	path := cellPath(cell, "election/deposed")
	proxy := newCutProxy(t, cell.LeaderURL())
	oldC := newClient(t, []string{proxy.URL()}, lockd.WithoutDiscovery(), lockd.WithRetryWindow(200*time.Millisecond))
	old := lockd.NewElection(newSession(t, oldC, lockd.WithTTL(time.Second), lockd.WithLockDelay(0)), path)
	if err := old.Campaign(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, cell.URLs())
	next := lockd.NewElection(newSession(t, c), path)
	done := make(chan error, 1)
	go func() { done <- next.Campaign(ctx, "new") }()
	proxy.Cut()
	if err := recv(t, done, 10*time.Second, "successor's Campaign"); err != nil {
		t.Fatal(err)
	}
	<-old.Session().Done()
	if old.IsLeader() {
		t.Fatal("old leader still believes it leads")
	}
	if err := old.Proclaim(ctx, "stale"); !errors.Is(err, lockd.ErrSessionExpired) {
		t.Fatalf("deposed Proclaim: %v, want ErrSessionExpired", err)
	}
	li, err := next.Leader(ctx)
	if err != nil || li.Value != "new" || li.Session != next.Session().ID() {
		t.Fatalf("leader %+v, %v", li, err)
	}
}

// TestElectionProclaimIsFenced ends the leader's session behind its back
// (an operator's DELETE), lets a successor win, and checks that the old
// leader, which has not noticed yet, cannot overwrite the successor's value.
func TestElectionProclaimIsFenced(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	path := cellPath(cell, "election/fenced")
	c := newClient(t, cell.URLs())
	old := lockd.NewElection(newSession(t, c, lockd.WithTTL(3*time.Second)), path)
	if err := old.Campaign(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	next := lockd.NewElection(newSession(t, c), path)
	done := make(chan error, 1)
	go func() { done <- next.Campaign(ctx, "new") }()

	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, cell.LeaderURL()+"/v1/sessions/"+old.Session().ID(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("operator DELETE: %s", resp.Status)
	}
	if err := recv(t, done, 10*time.Second, "successor's Campaign"); err != nil {
		t.Fatal(err)
	}
	err = old.Proclaim(ctx, "stale")
	if !errors.Is(err, lockd.ErrElectionNotLeader) && !errors.Is(err, lockd.ErrSessionExpired) {
		t.Fatalf("deposed Proclaim: %v, want ErrElectionNotLeader or ErrSessionExpired", err)
	}
	li, err := next.Leader(ctx)
	if err != nil || li.Value != "new" {
		t.Fatalf("leader %+v, %v; want value new", li, err)
	}
	// The old session hears of its end at its next KeepAlive.
	select {
	case <-old.Session().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the old session did not hear of its end")
	}
	if !errors.Is(old.Session().Err(), lockd.ErrSessionExpired) {
		t.Fatalf("old session ended with %v", old.Session().Err())
	}
}
