package lockd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	lockd "github.com/lockd/lockd/clients/go"
)

// TestMutexFIFO runs three clients, each with its own session, on one lock:
// the holder excludes the others, waiters are served in the order they
// queued, and each new hold has a higher generation.
func TestMutexFIFO(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	path := cellPath(cell, "jobs/nightly")
	var ms []*lockd.Mutex
	for i := range 3 {
		// Each client starts at a different replica: followers forward.
		urls := append(cell.URLs()[i:], cell.URLs()[:i]...)
		s := newSession(t, newClient(t, urls))
		ms = append(ms, lockd.NewMutex(s, path))
	}
	observer := newClient(t, cell.URLs())
	if err := ms[0].Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 3)
	waitFor := func(i int) {
		go func() {
			if err := ms[i].Lock(ctx); err != nil {
				t.Errorf("Lock %d: %v", i, err)
				return
			}
			got <- i
		}()
		eventually(t, 5*time.Second, "the waiter queued", func() bool {
			ls, err := observer.LockState(ctx, path)
			return err == nil && len(ls.Waiters) == i
		})
	}
	waitFor(1) // queued first
	waitFor(2) // then this one
	select {
	case i := <-got:
		t.Fatalf("mutex %d got the lock while 0 holds it", i)
	default:
	}
	gen0, seq0 := ms[0].Generation(), ms[0].Sequencer()
	if err := ms[0].Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if i := recv(t, got, 5*time.Second, "next holder"); i != 1 {
		t.Fatalf("mutex %d got the lock, want 1 (FIFO)", i)
	}
	if ms[1].Generation() <= gen0 {
		t.Fatalf("generation %d after %d", ms[1].Generation(), gen0)
	}
	st, err := observer.CheckSequencer(ctx, seq0)
	if err != nil || st.Valid || st.CurrentGeneration != ms[1].Generation() {
		t.Fatalf("old sequencer: %+v, %v; want invalid at generation %d", st, err, ms[1].Generation())
	}
	if err := ms[1].Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if i := recv(t, got, 5*time.Second, "last holder"); i != 2 {
		t.Fatalf("mutex %d got the lock, want 2", i)
	}
	if err := ms[2].Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMutexTryLockAndUnlock(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	c := newClient(t, cell.URLs())
	path := cellPath(cell, "try")
	a := lockd.NewMutex(newSession(t, c), path)
	b := lockd.NewMutex(newSession(t, c), path)

	if err := a.Unlock(ctx); !errors.Is(err, lockd.ErrNotHolder) {
		t.Fatalf("Unlock without a hold: %v, want ErrNotHolder", err)
	}
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if !a.Held() || a.Sequencer() == "" || a.Grant().Path != path || a.Grant().Mode != lockd.ModeExclusive {
		t.Fatalf("after TryLock: held %v grant %+v", a.Held(), a.Grant())
	}
	err := b.TryLock(ctx)
	if !errors.Is(err, lockd.ErrLockHeld) {
		t.Fatalf("TryLock of a held lock: %v, want ErrLockHeld", err)
	}
	if ae := apiErr(t, err); ae.Status != 409 || ae.Code != "lock_held" {
		t.Fatalf("error %+v", ae)
	}
	if err := a.TryLock(ctx); !errors.Is(err, lockd.ErrLockHeld) {
		t.Fatalf("second TryLock on the same handle: %v", err)
	}
	// Lock with a deadline that passes while held: the ctx error, and the
	// cell's lock_held.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = b.Lock(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, lockd.ErrLockHeld) {
		t.Fatalf("Lock past its deadline: %v, want DeadlineExceeded and ErrLockHeld", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Held() || a.Sequencer() != "" {
		t.Fatal("still held after Unlock")
	}
	if err := a.Unlock(ctx); !errors.Is(err, lockd.ErrNotHolder) {
		t.Fatalf("second Unlock: %v, want ErrNotHolder", err)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMutexCancelledLockCleansUp cancels a Lock that waits in the queue:
// when the holder lets go, the abandoned wait must not keep the lock.
func TestMutexCancelledLockCleansUp(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	c := newClient(t, cell.URLs())
	path := cellPath(cell, "abandon")
	a := lockd.NewMutex(newSession(t, c), path)
	b := lockd.NewMutex(newSession(t, c), path)
	third := lockd.NewMutex(newSession(t, c), path)
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Lock(bctx) }()
	eventually(t, 5*time.Second, "b queued", func() bool {
		ls, err := c.LockState(ctx, path)
		return err == nil && len(ls.Waiters) == 1
	})
	cancel()
	if err := recv(t, done, 5*time.Second, "cancelled Lock"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Lock: %v", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// b's wait is granted by the cell, and b's cleanup releases it.
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	defer lcancel()
	if err := third.Lock(lctx); err != nil {
		t.Fatalf("the abandoned wait kept the lock: %v", err)
	}
	if b.Held() {
		t.Fatal("b holds after a cancelled Lock")
	}
}

func TestRWMutex(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	c := newClient(t, cell.URLs())
	path := cellPath(cell, "rw")
	r1 := lockd.NewRWMutex(newSession(t, c), path)
	r2 := lockd.NewRWMutex(newSession(t, c), path)
	w := lockd.NewRWMutex(newSession(t, c), path)
	late := lockd.NewRWMutex(newSession(t, c), path)

	if err := r1.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.TryRLock(ctx); err != nil {
		t.Fatalf("second reader: %v", err)
	}
	if g := r1.Grant(); g == nil || g.Mode != lockd.ModeShared || r1.Sequencer() == "" {
		t.Fatalf("reader grant %+v", g)
	}
	if err := w.TryLock(ctx); !errors.Is(err, lockd.ErrLockHeld) {
		t.Fatalf("writer TryLock under readers: %v, want ErrLockHeld", err)
	}
	wdone := make(chan error, 1)
	go func() { wdone <- w.Lock(ctx) }()
	eventually(t, 5*time.Second, "writer queued", func() bool {
		ls, err := c.LockState(ctx, path)
		return err == nil && len(ls.Waiters) == 1
	})
	// A queued writer goes first: a new reader may not overtake it.
	if err := late.TryRLock(ctx); !errors.Is(err, lockd.ErrLockHeld) {
		t.Fatalf("reader TryRLock with a writer queued: %v, want ErrLockHeld", err)
	}
	if err := r1.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wdone:
		t.Fatalf("writer got the lock with a reader left: %v", err)
	default:
	}
	if err := r2.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, wdone, 5*time.Second, "writer Lock"); err != nil {
		t.Fatal(err)
	}
	if g := w.Grant(); g == nil || g.Mode != lockd.ModeExclusive {
		t.Fatalf("writer grant %+v", g)
	}
	ls, err := c.LockState(ctx, path)
	if err != nil || ls.Mode != lockd.ModeExclusive || len(ls.Holders) != 1 || ls.Holders[0].Session != w.Grant().Session {
		t.Fatalf("lock state %+v, %v", ls, err)
	}
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.RUnlock(ctx); !errors.Is(err, lockd.ErrNotHolder) {
		t.Fatalf("RUnlock without a shared hold: %v", err)
	}
}

// TestLockWaitSurvivesLeaderChange stops the leader while a Lock waits in
// the queue: the wait is repeated with the same request_id on the new
// leader (joining the queued wait, not queueing twice), and the waiter gets
// the lock when the holder lets go.
func TestLockWaitSurvivesLeaderChange(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	path := cellPath(cell, "failover-wait")
	c := newClient(t, cell.URLs())
	holder := lockd.NewMutex(newSession(t, c, lockd.WithTTL(3*time.Second)), path)
	waiter := lockd.NewMutex(newSession(t, c, lockd.WithTTL(3*time.Second)), path)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- waiter.Lock(ctx) }()
	eventually(t, 5*time.Second, "waiter queued", func() bool {
		ls, err := c.LockState(ctx, path)
		return err == nil && len(ls.Waiters) == 1
	})
	old := cell.Leader()
	cell.StopReplica(old)
	eventually(t, 10*time.Second, "a new leader", func() bool { return cell.Leader() != old })
	ls, err := c.LockState(ctx, path)
	if err != nil || len(ls.Waiters) != 1 {
		t.Fatalf("after the leader change: %+v, %v; want one waiter", ls, err)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatalf("Unlock across the leader change: %v", err)
	}
	if err := recv(t, done, 10*time.Second, "waiter's Lock"); err != nil {
		t.Fatalf("waiter: %v", err)
	}
	ls, err = c.LockState(ctx, path)
	if err != nil || len(ls.Holders) != 1 || ls.Holders[0].Session != waiter.Grant().Session || len(ls.Waiters) != 0 {
		t.Fatalf("lock state %+v, %v", ls, err)
	}
}
