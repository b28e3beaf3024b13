package lockd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	lockd "github.com/lockd/lockd/clients/go"
)

func TestSessionKeepAliveAndClose(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	c := newClient(t, cell.URLs())
	ctx := testCtx(t)
	s := newSession(t, c, lockd.WithTTL(2*time.Second), lockd.WithLabel("keeper"), lockd.WithLockDelay(0))
	if s.TTL() != 2*time.Second || s.LockDelay() != 0 {
		t.Fatalf("TTL %v, lock-delay %v; want 2s, 0", s.TTL(), s.LockDelay())
	}
	if d := time.Until(s.Deadline()); d > 1500*time.Millisecond || d <= 0 {
		t.Fatalf("local deadline in %v: want within the TTL less the 500ms skew margin", d)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != s.ID() || info.Label != "keeper" || info.PID == 0 {
		t.Fatalf("info %+v", info)
	}
	// Alive well past its TTL: the keepalive loop renews it.
	first := s.Deadline()
	eventually(t, 15*time.Second, "two TTLs with renewals", func() bool {
		if err := s.Err(); err != nil {
			t.Fatalf("session ended: %v", err)
		}
		return s.Deadline().Sub(first) > 4*time.Second
	})
	if st := s.State(); st != lockd.StateSafe {
		t.Fatalf("state %v, want safe", st)
	}
	if _, err := c.Session(ctx, s.ID()); err != nil {
		t.Fatalf("the cell lost the session: %v", err)
	}

	states := s.StateChanges()
	if st := recv(t, states, time.Second, "current state"); st != lockd.StateSafe {
		t.Fatalf("first state %v, want safe", st)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := recv(t, states, time.Second, "closed state"); st != lockd.StateClosed {
		t.Fatalf("state %v, want closed", st)
	}
	if _, ok := <-states; ok {
		t.Fatal("state channel not closed after the final state")
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if !errors.Is(context.Cause(s.Context()), lockd.ErrSessionClosed) || !errors.Is(s.Err(), lockd.ErrSessionClosed) {
		t.Fatalf("cause %v, Err %v; want ErrSessionClosed", context.Cause(s.Context()), s.Err())
	}
	_, err = c.Session(ctx, s.ID())
	if !errors.Is(err, lockd.ErrSessionExpired) {
		t.Fatalf("session after Close: %v, want ErrSessionExpired", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// A closed session refuses locally.
	if err := lockd.NewMutex(s, cellPath(cell, "after-close")).TryLock(ctx); !errors.Is(err, lockd.ErrSessionClosed) {
		t.Fatalf("TryLock on a closed session: %v", err)
	}
}

// TestSessionExpiresHereFirst cuts the client off the cell: the session goes
// to jeopardy, then expires here (Done, Context, state) while the cell still
// holds it, and only later on the cell.
func TestSessionExpiresHereFirst(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	proxy := newCutProxy(t, cell.LeaderURL())
	c := newClient(t, []string{proxy.URL()}, lockd.WithoutDiscovery())
	direct := newClient(t, cell.URLs())
	ctx := testCtx(t)

	var got []lockd.State
	seen := make(chan lockd.State, 16)
	s := newSession(t, c, lockd.WithTTL(2*time.Second), lockd.WithSkewMargin(800*time.Millisecond),
		lockd.WithStateFunc(func(st lockd.State) { seen <- st }))
	m := lockd.NewMutex(s, cellPath(cell, "guarded"))
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	work := s.Context() // guarded work would run under this

	proxy.Cut()
	for st := range seen {
		got = append(got, st)
		if st == lockd.StateExpired {
			break
		}
	}
	// The moment the client gave up, the cell still has the session.
	info, err := direct.Session(ctx, s.ID())
	if err != nil {
		t.Fatalf("the cell expired the session before the client did: %v", err)
	}
	if info.LeaseRemaining <= 0 {
		t.Fatalf("lease remaining on the cell %v, want > 0", info.LeaseRemaining)
	}
	if want := []lockd.State{lockd.StateJeopardy, lockd.StateExpired}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("states %v, want %v", got, want)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed on expiry")
	}
	if work.Err() == nil || !errors.Is(context.Cause(work), lockd.ErrSessionExpired) {
		t.Fatalf("Context: err %v cause %v; want cancelled with ErrSessionExpired", work.Err(), context.Cause(work))
	}
	select {
	case <-m.Lost():
	default:
		t.Fatal("Lost not closed on expiry")
	}
	if m.Held() {
		t.Fatal("Held after expiry")
	}
	if err := m.TryLock(ctx); !errors.Is(err, lockd.ErrSessionExpired) {
		t.Fatalf("TryLock on an expired session: %v", err)
	}
	// Later, the cell expires it too.
	eventually(t, 10*time.Second, "the cell expires the session", func() bool {
		_, err := direct.Session(ctx, s.ID())
		return errors.Is(err, lockd.ErrSessionExpired)
	})
}

// TestSessionSurvivesLeaderChange stops the leader under a session that
// holds a lock: KeepAlives move to the new leader within the grace, the
// session never expires, and Unlock works on the new leader.
func TestSessionSurvivesLeaderChange(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	c := newClient(t, cell.URLs())
	ctx := testCtx(t)
	var expired bool
	s := newSession(t, c, lockd.WithTTL(2*time.Second), lockd.WithStateFunc(func(st lockd.State) {
		if st == lockd.StateExpired {
			expired = true
		}
	}))
	m := lockd.NewMutex(s, cellPath(cell, "failover"))
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	old := cell.Leader()
	cell.StopReplica(old)
	eventually(t, 10*time.Second, "a new leader", func() bool { return cell.Leader() != old })
	first := s.Deadline()
	eventually(t, 10*time.Second, "a renewal on the new leader", func() bool {
		return s.Deadline().After(first) && s.State() == lockd.StateSafe
	})
	if s.Err() != nil {
		t.Fatalf("session ended: %v", s.Err())
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock after failover: %v", err)
	}
	ls, err := c.LockState(ctx, m.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Holders) != 0 {
		t.Fatalf("holders after Unlock: %+v", ls.Holders)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if expired {
		t.Fatal("the session expired during the leader change")
	}
}
