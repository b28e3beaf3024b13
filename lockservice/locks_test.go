package lockservice

import (
	"context"
	"reflect"
	"testing"
)

func TestTryAcquire(t *testing.T) {
	h := newHarness(t)
	a, b := h.session(0), h.session(0)
	res := h.acquire(p("app/lock"), a, "", 0)
	g := h.mustGrant(res)
	if g.Mode != ModeExclusive || g.Session != a || g.Path != p("app/lock") || g.Generation == 0 || g.Sequencer == "" {
		t.Fatalf("%+v", g)
	}
	// Acquiring a missing path creates the file (and its parents).
	if got := eventTypes(res.Events); !reflect.DeepEqual(got, []string{
		"node_created " + p("app"), "child_added /ls/test", "node_created " + p("app/lock"),
		"child_added " + p("app"), "lock_acquired " + p("app/lock"),
	}) {
		t.Fatal(got)
	}
	if n := h.node(p("app/lock")); n.Kind != "file" || n.LockGeneration != g.Generation {
		t.Fatalf("%+v", n)
	}
	res = h.fail(Command{Kind: KindAcquire, Path: p("app/lock"), Session: b}, "lock_held")
	if got := eventTypes(res.Events); !reflect.DeepEqual(got, []string{"lock_conflict " + p("app/lock")}) || res.Events[0].Session != b {
		t.Fatal(got)
	}
	h.fail(Command{Kind: KindAcquire, Path: p("app/lock"), Session: b, Mode: ModeShared}, "lock_held")
	// Idempotent re-acquire in the same mode; the other mode is refused.
	if g2 := h.mustGrant(h.acquire(p("app/lock"), a, ModeExclusive, 0)); g2 != g {
		t.Fatalf("%+v != %+v", g2, g)
	}
	h.fail(Command{Kind: KindAcquire, Path: p("app/lock"), Session: a, Mode: ModeShared}, "lock_held")
	// Acquire on a directory is fine; contents with it are not.
	h.mustGrant(h.acquire(p("app"), b, ModeExclusive, 0))
	h.fail(Command{Kind: KindAcquire, Path: p("app"), Session: a, Contents: Bytes([]byte("x"))}, "precondition_failed")
	h.fail(Command{Kind: KindAcquire, Path: p("app/lock/under"), Session: a}, "precondition_failed")
	checkInvariants(t, h.m)
}

func TestReleaseErrors(t *testing.T) {
	h := newHarness(t)
	a, b := h.session(0), h.session(0)
	g := h.mustGrant(h.acquire(p("l"), a, ModeExclusive, 0))
	for _, tt := range []struct {
		name string
		c    Command
		code string
	}{
		{"not holder", Command{Kind: KindRelease, Path: p("l"), Session: b, Generation: g.Generation}, "not_holder"},
		{"wrong generation", Command{Kind: KindRelease, Path: p("l"), Session: a, Generation: g.Generation + 1}, "not_holder"},
		{"never locked", Command{Kind: KindRelease, Path: p("m"), Session: a}, "not_holder"},
		{"bad path", Command{Kind: KindRelease, Path: p("l/"), Session: a}, "invalid_argument"},
	} {
		t.Run(tt.name, func(t *testing.T) { assertRejectedChangesNothing(t, h, tt.c, tt.code) })
	}
	res := h.release(g)
	if !res.Released || !reflect.DeepEqual(eventTypes(res.Events), []string{"lock_released " + p("l")}) {
		t.Fatalf("%+v", res)
	}
	h.fail(Command{Kind: KindRelease, Path: p("l"), Session: a, Generation: g.Generation}, "not_holder")
	if l := h.lock(p("l")); l.Mode != "" || len(l.Holders) != 0 || l.Generation != g.Generation {
		t.Fatalf("%+v", l)
	}
	checkInvariants(t, h.m)
}

// Three waiters are served strictly in arrival order, one at a time, each
// with a higher generation, in the command that released the lock.
func TestFIFOThreeWaiters(t *testing.T) {
	h := newHarness(t)
	owner := h.session(0)
	w1, w2, w3 := h.session(0), h.session(0), h.session(0)
	g := h.mustGrant(h.acquire(p("q"), owner, ModeExclusive, 0))
	var ids []uint64
	for _, s := range []string{w1, w2, w3} {
		res := h.acquire(p("q"), s, ModeExclusive, 60_000)
		if !res.Waiting || res.WaitID != h.index || !hasEvent(res.Events, EventLockConflict, p("q")) {
			t.Fatalf("%+v", res)
		}
		ids = append(ids, res.WaitID)
	}
	// A try by a newcomer is refused while others queue, even at handover.
	l := h.lock(p("q"))
	if len(l.Waiters) != 3 || l.Waiters[0].Session != w1 || l.Waiters[2].Session != w3 || l.Waiters[0].Label != "l" {
		t.Fatalf("%+v", l.Waiters)
	}
	prev := g.Generation
	for i, s := range []string{w1, w2, w3} {
		res := h.release(g)
		if !res.Released {
			t.Fatal(res)
		}
		got, err := h.m.AwaitAcquire(t.Context(), ids[i])
		if err != nil || got.Session != s || got.Generation <= prev {
			t.Fatalf("waiter %d: %+v %v", i, got, err)
		}
		if !reflect.DeepEqual(h.holders(p("q")), []string{s}) {
			t.Fatalf("holders %v, want %s", h.holders(p("q")), s)
		}
		if !hasEvent(res.Events, EventLockAcquired, p("q")) {
			t.Fatal(eventTypes(res.Events))
		}
		prev, g = got.Generation, got
		checkInvariants(t, h.m)
	}
	h.release(g)
	if _, err := h.m.GetLock(p("q"), h.now); err != nil {
		t.Fatal(err)
	}
	if len(h.m.ListLocks(h.now)) != 0 {
		t.Fatal(h.m.ListLocks(h.now))
	}
}

func TestSharedExclusiveInterplay(t *testing.T) {
	h := newHarness(t)
	r1, r2, w, r3, r4, r5 := h.session(0), h.session(0), h.session(0), h.session(0), h.session(0), h.session(0)
	g1 := h.mustGrant(h.acquire(p("rw"), r1, ModeShared, 0))
	g2 := h.mustGrant(h.acquire(p("rw"), r2, ModeShared, 0))
	if g1.Generation != 0 || g2.Generation != 0 || g1.Mode != ModeShared {
		t.Fatalf("shared holds before any writer carry generation 0: %+v %+v", g1, g2)
	}
	if l := h.lock(p("rw")); l.Mode != ModeShared || len(l.Holders) != 2 {
		t.Fatalf("%+v", l)
	}
	h.fail(Command{Kind: KindAcquire, Path: p("rw"), Session: w}, "lock_held")
	ww := h.acquire(p("rw"), w, ModeExclusive, 60_000)
	// A reader behind a queued writer waits (no writer starvation); a try is refused.
	h.fail(Command{Kind: KindAcquire, Path: p("rw"), Session: r3, Mode: ModeShared}, "lock_held")
	wr3 := h.acquire(p("rw"), r3, ModeShared, 60_000)
	wr4 := h.acquire(p("rw"), r4, ModeShared, 60_000)
	wr5 := h.acquire(p("rw"), r5, ModeExclusive, 60_000)
	// The writer waits for every reader.
	h.release(g1)
	if !reflect.DeepEqual(h.holders(p("rw")), []string{r2}) {
		t.Fatal(h.holders(p("rw")))
	}
	h.release(g2)
	gw, err := h.m.AwaitAcquire(t.Context(), ww.WaitID)
	if err != nil || gw.Session != w || gw.Generation == 0 {
		t.Fatal(gw, err)
	}
	// The writer's release grants both queued readers together, then stops
	// at the exclusive waiter.
	res := h.release(gw)
	if !reflect.DeepEqual(h.holders(p("rw")), []string{r3, r4}) {
		t.Fatal(h.holders(p("rw")))
	}
	n := 0
	for _, e := range res.Events {
		if e.Type == EventLockAcquired {
			n++
			if e.Generation != gw.Generation {
				t.Fatalf("shared hold carries %d, want the writer's %d", e.Generation, gw.Generation)
			}
		}
	}
	if n != 2 {
		t.Fatal(eventTypes(res.Events))
	}
	g3, _ := h.m.AwaitAcquire(t.Context(), wr3.WaitID)
	g4, _ := h.m.AwaitAcquire(t.Context(), wr4.WaitID)
	if l := h.lock(p("rw")); len(l.Waiters) != 1 || l.Waiters[0].Session != r5 {
		t.Fatalf("%+v", l)
	}
	h.release(g4)
	h.release(g3)
	g5, err := h.m.AwaitAcquire(t.Context(), wr5.WaitID)
	if err != nil || g5.Generation <= gw.Generation {
		t.Fatal(g5, err)
	}
	checkInvariants(t, h.m)
}

func TestWaitDeadlineEnforcedByTick(t *testing.T) {
	h := newHarness(t)
	a, b, c := h.session(0), h.session(0), h.session(0)
	g := h.mustGrant(h.acquire(p("d"), a, ModeExclusive, 0))
	wb := h.acquire(p("d"), b, ModeExclusive, 1000)
	wc := h.acquire(p("d"), c, ModeExclusive, 5000)
	if at, ok := h.m.NextDeadline(); !ok || at != h.now+1000 {
		t.Fatal(at, ok)
	}
	h.tick(999)
	if len(h.lock(p("d")).Waiters) != 2 {
		t.Fatal("expired early")
	}
	h.tick(1) // exactly at b's deadline: b is out.
	if l := h.lock(p("d")); len(l.Waiters) != 1 || l.Waiters[0].Session != c {
		t.Fatalf("%+v", l.Waiters)
	}
	if _, err := h.m.AwaitAcquire(t.Context(), wb.WaitID); Code(err) != "lock_held" {
		t.Fatal(err)
	}
	if at, _ := h.m.NextDeadline(); at != h.now+4000 {
		t.Fatal(at)
	}
	// A release applied at c's deadline does not grant c: time goes first.
	h.now += 4000
	res := h.release(g)
	if !res.Released || hasEvent(res.Events, EventLockAcquired, p("d")) {
		t.Fatal(eventTypes(res.Events))
	}
	if _, err := h.m.AwaitAcquire(t.Context(), wc.WaitID); Code(err) != "lock_held" {
		t.Fatal(err)
	}
	if _, ok := h.m.NextDeadline(); ok {
		t.Fatal("deadline left")
	}
	checkInvariants(t, h.m)
}

// An expired waiter at the head unblocks shared waiters behind it.
func TestExpiredHeadUnblocksQueue(t *testing.T) {
	h := newHarness(t)
	r, w, r2 := h.session(0), h.session(0), h.session(0)
	h.mustGrant(h.acquire(p("x"), r, ModeShared, 0))
	h.acquire(p("x"), w, ModeExclusive, 1000)
	wr := h.acquire(p("x"), r2, ModeShared, 5000)
	res := h.tick(1000)
	if !hasEvent(res.Events, EventLockAcquired, p("x")) {
		t.Fatal(eventTypes(res.Events))
	}
	if g, err := h.m.AwaitAcquire(t.Context(), wr.WaitID); err != nil || g.Session != r2 {
		t.Fatal(g, err)
	}
	checkInvariants(t, h.m)
}

func TestLockDelayOnExpiry(t *testing.T) {
	h := newHarness(t)
	a := h.session(3000)
	b, c := h.session(0), h.session(0)
	g := h.mustGrant(h.acquire(p("ld"), a, ModeExclusive, 0))
	wb := h.acquire(p("ld"), b, ModeExclusive, 60_000)
	res := h.ok(Command{Kind: KindExpireSession, Session: a})
	if got := eventTypes(res.Events); !reflect.DeepEqual(got, []string{"session_expired ", "lock_released " + p("ld")}) {
		t.Fatal(got)
	}
	l := h.lock(p("ld"))
	if l.Mode != "" || l.LockDelayUntilMs != h.now+3000 || l.LockDelayRemainingMs != 3000 || len(l.Waiters) != 1 {
		t.Fatalf("%+v", l)
	}
	if at, _ := h.m.NextDeadline(); at != h.now+3000 {
		t.Fatal(at)
	}
	h.now += 1000
	res = h.fail(Command{Kind: KindAcquire, Path: p("ld"), Session: c}, "lock_held") // b queues ahead
	if len(res.Events) != 1 || res.Events[0].Type != EventLockConflict {
		t.Fatal(res.Events)
	}
	h.tick(1999)
	if len(h.lock(p("ld")).Holders) != 0 {
		t.Fatal("granted during lock-delay")
	}
	res = h.tick(1)
	if !hasEvent(res.Events, EventLockAcquired, p("ld")) {
		t.Fatal(eventTypes(res.Events))
	}
	gb, err := h.m.AwaitAcquire(t.Context(), wb.WaitID)
	if err != nil || gb.Session != b || gb.Generation <= g.Generation {
		t.Fatal(gb, err)
	}
	checkInvariants(t, h.m)

	// A try in lock-delay with no queue: lock_delayed with retry_after.
	h2 := newHarness(t)
	a2 := h2.session(3000)
	b2 := h2.session(0)
	h2.mustGrant(h2.acquire(p("ld"), a2, ModeExclusive, 0))
	h2.ok(Command{Kind: KindExpireSession, Session: a2})
	h2.now += 1200
	res = h2.fail(Command{Kind: KindAcquire, Path: p("ld"), Session: b2}, "lock_delayed")
	if res.RetryAfterMs != 1800 || RetryAfterMs(res.Err) != 1800 || len(res.Events) != 0 {
		t.Fatalf("%+v", res)
	}
	h2.fail(Command{Kind: KindAcquire, Path: p("ld"), Session: b2, Mode: ModeShared}, "lock_delayed")
	// The node may be deleted in lock-delay; the delay stays.
	h2.ok(Command{Kind: KindDeleteNode, Path: p("ld")})
	h2.fail(Command{Kind: KindAcquire, Path: p("ld"), Session: b2}, "lock_delayed")
	h2.now += 1800
	h2.mustGrant(h2.acquire(p("ld"), b2, ModeExclusive, 0))
	checkInvariants(t, h2.m)
}

func TestNoLockDelayOnEndSession(t *testing.T) {
	h := newHarness(t)
	a := h.session(60_000)
	b := h.session(0)
	h.mustGrant(h.acquire(p("x"), a, ModeExclusive, 0))
	h.ok(Command{Kind: KindEndSession, Session: a})
	if l := h.lock(p("x")); l.LockDelayUntilMs != 0 {
		t.Fatalf("%+v", l)
	}
	h.mustGrant(h.acquire(p("x"), b, ModeExclusive, 0))
	// Zero lock-delay on expiry: free at once too.
	c := h.session(0)
	h.ok(Command{Kind: KindExpireSession, Session: b})
	h.mustGrant(h.acquire(p("x"), c, ModeExclusive, 0))
}

// When a shared holder expires, only exclusive grants wait out its delay.
func TestSharedExpiryDelaysOnlyWriters(t *testing.T) {
	h := newHarness(t)
	r1 := h.session(2000)
	r2, w := h.session(0), h.session(0)
	h.mustGrant(h.acquire(p("s"), r1, ModeShared, 0))
	h.ok(Command{Kind: KindExpireSession, Session: r1})
	h.mustGrant(h.acquire(p("s"), r2, ModeShared, 0))
	h.fail(Command{Kind: KindAcquire, Path: p("s"), Session: w}, "lock_held")
	h.ok(Command{Kind: KindEndSession, Session: r2})
	h.fail(Command{Kind: KindAcquire, Path: p("s"), Session: w}, "lock_delayed")
	ww := h.acquire(p("s"), w, ModeExclusive, 10_000)
	h.tick(2000)
	if g, err := h.m.AwaitAcquire(t.Context(), ww.WaitID); err != nil || g.Session != w {
		t.Fatal(g, err)
	}
	checkInvariants(t, h.m)
}

func TestAcquireIdempotency(t *testing.T) {
	h := newHarness(t)
	a, b := h.session(0), h.session(0)
	acq := Command{Kind: KindAcquire, Path: p("i"), Session: a, RequestID: "r1"}
	g := h.mustGrant(h.apply(acq))
	res := h.apply(acq)
	if !res.Duplicate || res.Grant == nil || *res.Grant != g || len(res.Events) != 0 {
		t.Fatalf("%+v", res)
	}
	// Same request id for another path or kind.
	h.fail(Command{Kind: KindAcquire, Path: p("j"), Session: a, RequestID: "r1"}, "invalid_argument")
	h.fail(Command{Kind: KindRelease, Path: p("i"), Session: a, RequestID: "r1", Generation: g.Generation}, "invalid_argument")
	// Request ids are per session.
	h.fail(Command{Kind: KindAcquire, Path: p("i"), Session: b, RequestID: "r1"}, "lock_held")

	// A refused try is not remembered: its repeat tries again.
	wait := Command{Kind: KindAcquire, Path: p("i"), Session: b, RequestID: "w1", WaitMs: 10_000, Mode: ModeExclusive}
	first := h.apply(wait)
	if !first.Waiting {
		t.Fatal(first)
	}
	again := h.apply(wait)
	if !again.Waiting || !again.Duplicate || again.WaitID != first.WaitID {
		t.Fatalf("%+v", again)
	}
	// Another request id joins the same wait.
	joined := h.apply(Command{Kind: KindAcquire, Path: p("i"), Session: b, RequestID: "w2", WaitMs: 500})
	if !joined.Waiting || joined.WaitID != first.WaitID || joined.Duplicate {
		t.Fatalf("%+v", joined)
	}
	h.fail(Command{Kind: KindAcquire, Path: p("i"), Session: b, Mode: ModeShared, WaitMs: 10}, "precondition_failed")

	rel := Command{Kind: KindRelease, Path: p("i"), Session: a, Generation: g.Generation, RequestID: "rel1"}
	if res := h.apply(rel); !res.Released || res.Duplicate {
		t.Fatal(res)
	}
	if res := h.apply(rel); !res.Released || !res.Duplicate || len(res.Events) != 0 {
		t.Fatalf("retried release: %+v", res)
	}
	// Without the request id the retry is refused.
	h.fail(Command{Kind: KindRelease, Path: p("i"), Session: a, Generation: g.Generation}, "not_holder")
	gb, err := h.m.AwaitAcquire(t.Context(), first.WaitID)
	if err != nil {
		t.Fatal(err)
	}
	for _, rid := range []string{"w1", "w2"} {
		res := h.apply(Command{Kind: KindAcquire, Path: p("i"), Session: b, RequestID: rid, WaitMs: 10_000})
		if !res.Duplicate || res.Grant == nil || *res.Grant != gb {
			t.Fatalf("%s: %+v", rid, res)
		}
	}
	// A wait that timed out answers lock_held to its repeat.
	h.release(gb)
	h.mustGrant(h.acquire(p("i"), a, ModeExclusive, 0))
	late := Command{Kind: KindAcquire, Path: p("i"), Session: b, RequestID: "w3", WaitMs: 100}
	h.apply(late)
	h.tick(100)
	if res := h.apply(late); Code(res.Err) != "lock_held" || !res.Duplicate {
		t.Fatalf("%+v", res)
	}
	checkInvariants(t, h.m)
}

func TestRequestTableIsBounded(t *testing.T) {
	h := newHarness(t)
	h.typed = true
	a := h.session(0)
	h.mustGrant(h.apply(Command{Kind: KindAcquire, Path: p("b"), Session: a, RequestID: "first"}))
	for i := 0; i < RequestIDsPerSession; i++ {
		h.ok(Command{Kind: KindAcquire, Path: p("b"), Session: a, RequestID: string(rune('a'+i%26)) + string(rune(i+0x100))})
	}
	h.m.mu.RLock()
	n := len(h.m.st.sessions[a].reqs.m)
	_, kept := h.m.st.sessions[a].reqs.m["first"]
	h.m.mu.RUnlock()
	if n != RequestIDsPerSession || kept {
		t.Fatal(n, kept)
	}
}

func TestAcquireWithContents(t *testing.T) {
	h := newHarness(t)
	a, b := h.session(0), h.session(0)
	// Created and granted at once: created with the contents.
	res := h.apply(Command{Kind: KindAcquire, Path: p("el"), Session: a, Contents: Bytes([]byte("A"))})
	g := h.mustGrant(res)
	if n := h.node(p("el")); string(n.Contents) != "A" || n.ContentGeneration != 1 {
		t.Fatalf("%+v", n)
	}
	if hasEvent(res.Events, EventContentsChanged, p("el")) {
		t.Fatal(eventTypes(res.Events))
	}
	// Queued: written when granted, in the releasing command.
	w := h.apply(Command{Kind: KindAcquire, Path: p("el"), Session: b, WaitMs: 10_000, Contents: Bytes([]byte("B"))})
	if n := h.node(p("el")); string(n.Contents) != "A" {
		t.Fatal("written before grant")
	}
	res = h.release(g)
	if got := eventTypes(res.Events); !reflect.DeepEqual(got, []string{
		"lock_released " + p("el"), "lock_acquired " + p("el"), "contents_changed " + p("el"),
	}) {
		t.Fatal(got)
	}
	n := h.node(p("el"))
	if string(n.Contents) != "B" || n.ContentGeneration != 2 || n.ModifyIndex != h.index {
		t.Fatalf("%+v", n)
	}
	el, err := h.m.Election(p("el"))
	gb, _ := h.m.AwaitAcquire(t.Context(), w.WaitID)
	if err != nil || el == nil || el.Session != b || string(el.Value) != "B" || el.Generation != gb.Generation || el.Sequencer != gb.Sequencer {
		t.Fatalf("%+v %v", el, err)
	}
	// Existing node, granted at once: contents written (generation +1).
	h.release(gb)
	h.mustGrant(h.apply(Command{Kind: KindAcquire, Path: p("el"), Session: a, Contents: Bytes(nil)}))
	if n := h.node(p("el")); len(n.Contents) != 0 || n.ContentGeneration != 3 {
		t.Fatalf("%+v", n)
	}
}

func TestElection(t *testing.T) {
	h := newHarness(t)
	a := h.session(0)
	if _, err := h.m.Election(p("none")); Code(err) != "not_found" {
		t.Fatal(err)
	}
	h.ok(Command{Kind: KindPutNode, Path: p("e")})
	if el, err := h.m.Election(p("e")); el != nil || err != nil {
		t.Fatal(el, err)
	}
	h.mustGrant(h.acquire(p("e"), a, ModeShared, 0))
	if el, err := h.m.Election(p("e")); el != nil || err != nil {
		t.Fatal("a shared holder is no leader", el, err)
	}
	if _, err := h.m.Election("/ls/x"); Code(err) != "invalid_argument" {
		t.Fatal(err)
	}
}

func TestLockViews(t *testing.T) {
	h := newHarness(t)
	a := h.ok(Command{Kind: KindCreateSession, Label: "A", Host: "ha", PID: 1}).Session.ID
	b := h.ok(Command{Kind: KindCreateSession, Label: "B", Host: "hb", PID: 2}).Session.ID
	g := h.mustGrant(h.acquire(p("v"), a, ModeExclusive, 0))
	sinceIdx := h.index
	h.now += 10
	h.acquire(p("v"), b, ModeShared, 1000)
	l, err := h.m.GetLock(p("v"), h.now+250)
	if err != nil {
		t.Fatal(err)
	}
	want := LockState{
		Path: p("v"), Mode: ModeExclusive, Generation: g.Generation,
		Holders: []Holder{{Session: a, Label: "A", Host: "ha", PID: 1, Mode: ModeExclusive, Generation: g.Generation, SinceIndex: sinceIdx}},
		Waiters: []Waiter{{Session: b, Label: "B", Host: "hb", PID: 2, Mode: ModeShared, WaitID: h.index,
			WaitingSinceMs: h.now, WaitingMs: 250, DeadlineMs: h.now + 1000, SinceIndex: h.index}},
	}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("\n got %+v\nwant %+v", l, want)
	}
	if ls := h.m.ListLocks(h.now + 250); len(ls) != 1 || !reflect.DeepEqual(ls[0], want) {
		t.Fatal(ls)
	}
	if _, err := h.m.GetLock(p("nothing"), 0); Code(err) != "not_found" {
		t.Fatal(err)
	}
	sess, _ := h.m.GetSession(a)
	if !reflect.DeepEqual(sess.Locks, []string{p("v")}) {
		t.Fatal(sess)
	}
}

func TestAwaitAcquire(t *testing.T) {
	h := newHarness(t)
	a, b := h.session(0), h.session(0)
	g := h.mustGrant(h.acquire(p("aw"), a, ModeExclusive, 0))
	w := h.acquire(p("aw"), b, ModeExclusive, 10_000)
	if _, err := h.m.AwaitAcquire(t.Context(), 999_999); Code(err) != "not_found" {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.m.AwaitAcquire(ctx, w.WaitID); err != context.Canceled {
		t.Fatal(err)
	}
	done := make(chan Grant)
	go func() {
		g, err := h.m.AwaitAcquire(t.Context(), w.WaitID)
		if err != nil {
			t.Error(err)
		}
		done <- g
	}()
	h.release(g) // from this goroutine; the waiter wakes up.
	if got := <-done; got.Session != b {
		t.Fatal(got)
	}
}

func TestNowNeverGoesBack(t *testing.T) {
	h := newHarness(t)
	a, b := h.session(0), h.session(0)
	h.mustGrant(h.acquire(p("t"), a, ModeExclusive, 0))
	w := h.acquire(p("t"), b, ModeExclusive, 1000)
	h.ok(Command{Kind: KindTick, NowMs: h.now + 2000})
	// A new leader with a slow clock: time stays where it was.
	h.ok(Command{Kind: KindTick, NowMs: h.now - 5000})
	if h.m.NowMs() != h.now+2000 {
		t.Fatal(h.m.NowMs())
	}
	if _, err := h.m.AwaitAcquire(t.Context(), w.WaitID); Code(err) != "lock_held" {
		t.Fatal(err)
	}
}

func TestLeaderChanged(t *testing.T) {
	h := newHarness(t)
	res := h.ok(Command{Kind: KindLeaderChanged, Leader: "3"})
	if len(res.Events) != 1 || res.Events[0].Type != EventLeaderChanged || res.Events[0].Leader != "3" || h.m.Leader() != "3" {
		t.Fatal(res.Events)
	}
}

func TestApplyIndexOrder(t *testing.T) {
	h := newHarness(t)
	h.session(0)
	before := h.snapshot()
	res := h.m.ApplyCommand(h.index, Command{Kind: KindCreateSession})
	if Code(res.Err) != "invalid_argument" {
		t.Fatal(res)
	}
	mustEqualSnapshots(t, before, h.snapshot())
	// Garbage in the log is consumed and rejected.
	h.index++
	if r := h.m.Apply(h.index, []byte("garbage")).(Result); Code(r.Err) != "invalid_argument" || h.m.AppliedIndex() != h.index {
		t.Fatal(r)
	}
}

// A queued grant re-creates a node deleted since the wait began, and fails
// the wait when it no longer can.
func TestQueuedGrantOnVanishedNode(t *testing.T) {
	h := newHarness(t)
	owner, a, b, c := h.session(0), h.session(0), h.session(0), h.session(0)
	h.ok(Command{Kind: KindPutNode, Path: p("g/h"), Ephemeral: true, Session: owner})
	h.ok(Command{Kind: KindPutNode, Path: p("k/l"), Ephemeral: true, Session: owner})
	ga := h.mustGrant(h.acquire(p("g/h"), a, ModeExclusive, 0))
	gk := h.mustGrant(h.acquire(p("k/l"), a, ModeExclusive, 0))
	wb := h.apply(Command{Kind: KindAcquire, Path: p("g/h"), Session: b, WaitMs: 60_000})
	wc := h.apply(Command{Kind: KindAcquire, Path: p("g/h"), Session: c, WaitMs: 60_000, Mode: ModeShared})
	wk := h.apply(Command{Kind: KindAcquire, Path: p("k/l"), Session: b, WaitMs: 60_000, Contents: Bytes([]byte("v"))})
	h.ok(Command{Kind: KindEndSession, Session: owner})
	// g becomes a file: g/h cannot come back. k/l comes back as a directory.
	h.ok(Command{Kind: KindDeleteNode, Path: p("g")})
	h.ok(Command{Kind: KindPutNode, Path: p("g")})
	h.ok(Command{Kind: KindPutNode, Path: p("k/l"), Dir: true})
	res := h.release(ga)
	for _, id := range []uint64{wb.WaitID, wc.WaitID} {
		if _, err := h.m.AwaitAcquire(t.Context(), id); Code(err) != "precondition_failed" {
			t.Fatalf("wait %d: %v (%v)", id, err, eventTypes(res.Events))
		}
	}
	h.release(gk)
	if _, err := h.m.AwaitAcquire(t.Context(), wk.WaitID); Code(err) != "precondition_failed" {
		t.Fatal(err)
	}
	if len(h.m.ListLocks(h.now)) != 0 {
		t.Fatal(h.m.ListLocks(h.now))
	}
	checkInvariants(t, h.m)
}

// Long-dead deadline entries do not pile up, and old wait outcomes are
// forgotten boundedly.
func TestBoundedBookkeeping(t *testing.T) {
	h := newHarness(t)
	h.typed = true
	a, b := h.session(0), h.session(0)
	var first uint64
	for i := 0; i < maxWaitOutcomes+10; i++ {
		g := h.mustGrant(h.acquire(p("x"), a, ModeExclusive, 0))
		w := h.acquire(p("x"), b, ModeExclusive, MaxWaitMs)
		if i == 0 {
			first = w.WaitID
		}
		h.release(g)
		h.release(h.lock(p("x")).holderGrant(t))
	}
	h.m.mu.RLock()
	heapLen, outcomes := len(h.m.st.deadlines), len(h.m.outcomes)
	h.m.mu.RUnlock()
	if heapLen > 2000 || outcomes != maxWaitOutcomes {
		t.Fatal(heapLen, outcomes)
	}
	if _, err := h.m.AwaitAcquire(t.Context(), first); Code(err) != "not_found" {
		t.Fatal(err)
	}
	checkInvariants(t, h.m)
}

// holderGrant is the grant of the single holder of l.
func (l LockState) holderGrant(t *testing.T) Grant {
	t.Helper()
	if len(l.Holders) != 1 {
		t.Fatalf("%+v", l)
	}
	x := l.Holders[0]
	return Grant{Path: l.Path, Mode: x.Mode, Generation: x.Generation, Session: x.Session}
}
