package lockd_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	lockd "github.com/lockd/lockd/clients/go"
)

// TestErrorIsSentinel maps every error code of API.md to its sentinel.
func TestErrorIsSentinel(t *testing.T) {
	sentinels := map[string]error{
		"invalid_argument":    lockd.ErrInvalidArgument,
		"unauthenticated":     lockd.ErrUnauthenticated,
		"permission_denied":   lockd.ErrPermissionDenied,
		"not_found":           lockd.ErrNotFound,
		"already_exists":      lockd.ErrAlreadyExists,
		"lock_held":           lockd.ErrLockHeld,
		"lock_delayed":        lockd.ErrLockDelayed,
		"not_holder":          lockd.ErrNotHolder,
		"precondition_failed": lockd.ErrPreconditionFailed,
		"session_expired":     lockd.ErrSessionExpired,
		"compacted":           lockd.ErrCompacted,
		"too_large":           lockd.ErrTooLarge,
		"not_leader":          lockd.ErrNotLeader,
		"too_many_requests":   lockd.ErrTooManyRequests,
		"no_leader":           lockd.ErrNoLeader,
		"unavailable":         lockd.ErrUnavailable,
	}
	for code, want := range sentinels {
		t.Run(code, func(t *testing.T) {
			body := `{"error": {"code": "` + code + `", "message": "m", "leader": "http://l:1", "retry_after_ms": 1500}}`
			resp := &http.Response{StatusCode: 409, Header: http.Header{"X-Lockd-Index": {"42"}}, Body: io.NopCloser(strings.NewReader(body))}
			err := lockd.ErrorFromResponse(resp)
			if !errors.Is(err, want) {
				t.Fatalf("%v does not match %v", err, want)
			}
			for other, s := range sentinels {
				if other != code && errors.Is(err, s) {
					t.Fatalf("%v also matches %v", err, s)
				}
			}
			ae := apiErr(t, err)
			if ae.Code != code || ae.Message != "m" || ae.Leader != "http://l:1" || ae.RetryAfter != 1500*time.Millisecond || ae.Index != 42 {
				t.Fatalf("decoded %+v", ae)
			}
		})
	}
	// A body that is not an API error: the status decides.
	resp := &http.Response{StatusCode: 502, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("bad gateway"))}
	if err := lockd.ErrorFromResponse(resp); !errors.Is(err, lockd.ErrUnavailable) {
		t.Fatalf("502: %v", err)
	}
	resp = &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(""))}
	if err := lockd.ErrorFromResponse(resp); err != nil {
		t.Fatalf("200: %v", err)
	}
}

// TestErrorsFromTheCell provokes, on a real cell, every error code a
// client can cause, and checks it with errors.Is.
func TestErrorsFromTheCell(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	c := newClient(t, cell.URLs())
	s := newSession(t, c)
	p := func(rest string) string { return cellPath(cell, "errors/"+rest) }

	_, err := lockd.NewSession(ctx, c, lockd.WithTTL(10*time.Millisecond))
	check(t, "ttl out of bounds", err, lockd.ErrInvalidArgument, 400)
	_, err = c.Get(ctx, "/ls/"+cell.Name()+"/a/../b")
	check(t, "bad path", err, lockd.ErrInvalidArgument, 400)
	_, err = c.Get(ctx, "relative/path")
	check(t, "relative path (refused locally)", err, lockd.ErrInvalidArgument, 0)
	_, err = c.CheckSequencer(ctx, "garbage")
	check(t, "garbled sequencer", err, lockd.ErrInvalidArgument, 400)

	_, err = c.Get(ctx, p("missing"))
	check(t, "missing node", err, lockd.ErrNotFound, 404)
	_, err = c.Session(ctx, "00000000000fffff")
	check(t, "unknown session", err, lockd.ErrNotFound, 404)

	if _, err := c.Put(ctx, p("once"), []byte("1"), lockd.CreateOnly()); err != nil {
		t.Fatal(err)
	}
	_, err = c.Put(ctx, p("once"), []byte("2"), lockd.CreateOnly())
	check(t, "create-only on an existing node", err, lockd.ErrAlreadyExists, 409)

	_, err = c.Put(ctx, p("once"), []byte("2"), lockd.IfContentGeneration(7))
	check(t, "wrong content generation", err, lockd.ErrPreconditionFailed, 412)
	n, err := c.Put(ctx, p("once"), []byte("2"), lockd.IfContentGeneration(1))
	if err != nil || n.ContentGeneration != 2 || string(n.Contents) != "2" {
		t.Fatalf("compare-and-set: %+v, %v", n, err)
	}
	err = c.Delete(ctx, p("once"), lockd.IfInstance(n.Instance+1000))
	check(t, "wrong instance", err, lockd.ErrPreconditionFailed, 412)
	err = c.Delete(ctx, cellPath(cell, "errors"))
	check(t, "non-empty directory", err, lockd.ErrPreconditionFailed, 412)

	_, err = c.Put(ctx, p("big"), make([]byte, 300<<10))
	check(t, "contents over 256 KiB", err, lockd.ErrTooLarge, 413)

	holder := lockd.NewMutex(s, p("lock"))
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	other := lockd.NewMutex(newSession(t, c), p("lock"))
	check(t, "try-acquire of a held lock", other.TryLock(ctx), lockd.ErrLockHeld, 409)

	// Two handles of one session: re-acquiring returns the same hold, so the
	// second release names a generation no longer held.
	twin := lockd.NewMutex(s, p("lock"))
	if err := twin.TryLock(ctx); err != nil || twin.Generation() != holder.Generation() {
		t.Fatalf("re-acquire in the same session: %v (generation %d, want %d)", err, twin.Generation(), holder.Generation())
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	check(t, "release of a hold already released", twin.Unlock(ctx), lockd.ErrNotHolder, 409)

	gone := newSession(t, c)
	if err := gone.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Session(ctx, gone.ID())
	check(t, "ended session", err, lockd.ErrSessionExpired, 410)
}

func check(t *testing.T, what string, err, want error, status int) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
	var ae *lockd.Error
	if !errors.As(err, &ae) {
		t.Fatalf("%s: %v is not a *lockd.Error", what, err)
	}
	if ae.Status != status {
		t.Fatalf("%s: status %d, want %d", what, ae.Status, status)
	}
}

// TestLockDelayAfterExpiry lets a holder's session expire on the cell: the
// lock is free but held back for the lock-delay, so a try-acquire gets
// ErrLockDelayed with a retry-after, and a waiting Lock gets it after the
// delay.
func TestLockDelayAfterExpiry(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	path := cellPath(cell, "delayed")
	proxy := newCutProxy(t, cell.LeaderURL())
	gc := newClient(t, []string{proxy.URL()}, lockd.WithoutDiscovery())
	gs := newSession(t, gc, lockd.WithTTL(time.Second), lockd.WithLockDelay(2*time.Second))
	if err := lockd.NewMutex(gs, path).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	c := newClient(t, cell.URLs())
	m := lockd.NewMutex(newSession(t, c), path)
	var err error
	eventually(t, 10*time.Second, "the holder's session expires on the cell", func() bool {
		err = m.TryLock(ctx)
		return !errors.Is(err, lockd.ErrLockHeld)
	})
	check(t, "try-acquire within the lock-delay", err, lockd.ErrLockDelayed, 409)
	if ra := apiErr(t, err).RetryAfter; ra <= 0 || ra > 2*time.Second {
		t.Fatalf("retry-after %v, want within (0, 2s]", ra)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock through the lock-delay: %v", err)
	}
}

// TestNoLeader stops two of three replicas: no leader can be elected, and
// a call to the last one gives up after its retry window with ErrNoLeader.
// (Without WithoutDiscovery the client would also try the stopped replicas
// it learned of, and might end on their lost connections: ErrUnavailable.)
func TestNoLeader(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	keep := cell.Follower()
	for i := range cell.Replicas() {
		if i != keep {
			cell.StopReplica(i)
		}
	}
	c := newClient(t, []string{cell.URL(keep)}, lockd.WithoutDiscovery(), lockd.WithRetryWindow(500*time.Millisecond))
	start := time.Now()
	_, err := c.Get(ctx, cellPath(cell, "x"))
	if !errors.Is(err, lockd.ErrNoLeader) {
		t.Fatalf("read without a leader: %v, want ErrNoLeader", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("gave up after %v, before the retry window", d)
	}
	// A stale read needs no leader.
	if _, err := c.Get(ctx, "/ls/"+cell.Name(), lockd.Stale()); err != nil {
		t.Fatalf("stale read: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	// The replica holds a request for up to an election's length waiting for
	// a leader, so a ctx shorter than that may end before any answer: the
	// error is the deadline, carrying ErrNoLeader only if an answer came.
	_, err = c.Get(sctx, cellPath(cell, "x"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with a short ctx: %v, want DeadlineExceeded", err)
	}
}

// TestUnreachable makes every endpoint abort connections: a write whose
// request was sent is not repeated and reports ErrUnavailable at once.
func TestUnreachable(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	proxy := newCutProxy(t, cell.LeaderURL())
	proxy.Cut()
	c := newClient(t, []string{proxy.URL()}, lockd.WithoutDiscovery(), lockd.WithRetryWindow(5*time.Second))
	start := time.Now()
	_, err := c.Put(ctx, cellPath(cell, "x"), []byte("1"))
	check(t, "put through a dead link", err, lockd.ErrUnavailable, 0)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a write of unknown outcome was retried for %v", d)
	}
	// Reads are retried until the window closes.
	start = time.Now()
	_, err = c.Get(ctx, cellPath(cell, "x"))
	check(t, "read through a dead link", err, lockd.ErrUnavailable, 0)
	if d := time.Since(start); d < 4*time.Second {
		t.Fatalf("a read gave up after %v, before the retry window", d)
	}
}

// TestNotLeaderRedirect runs a cell whose followers answer not_leader
// instead of forwarding: a client that knows only a follower follows the
// leader hint and then prefers the leader.
func TestNotLeaderRedirect(t *testing.T) {
	cell := apitest.NewCellWith(t, apitest.Options{Replicas: 3, NoForward: true})
	ctx := testCtx(t)
	f := cell.Follower()
	c := newClient(t, []string{cell.URL(f)})
	s := newSession(t, c)
	if err := lockd.NewMutex(s, cellPath(cell, "redirected")).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Endpoints()[0], cell.LeaderURL(); got != want {
		t.Fatalf("preferred endpoint %s, want the leader %s", got, want)
	}
	if c.LeaderID() != cell.ID(cell.Leader()) || c.LastIndex() == 0 {
		t.Fatalf("leader id %q, last index %d", c.LeaderID(), c.LastIndex())
	}
	info, err := c.Cluster(ctx)
	if err != nil || info.Leader != cell.ID(cell.Leader()) || len(info.Replicas) != 3 {
		t.Fatalf("cluster %+v, %v", info, err)
	}
}
