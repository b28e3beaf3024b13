package lockservice

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// busyHarness builds a state with something of everything.
func busyHarness(t *testing.T) *harness {
	h := newHarness(t)
	a := h.session(2000)
	b := h.session(0)
	c := h.ok(Command{Kind: KindCreateSession, TTLMs: 5000, Label: "c", Host: "hc", PID: 3}).Session.ID
	gone := h.session(0)
	h.ok(Command{Kind: KindEndSession, Session: gone})
	exp := h.session(1000)
	h.ok(Command{Kind: KindPutNode, Path: p("cfg/app"), Contents: Bytes([]byte{0, 1, 2, 0xff})})
	h.ok(Command{Kind: KindPutNode, Path: p("cfg/empty")})
	h.ok(Command{Kind: KindPutNode, Path: p("dir"), Dir: true})
	h.ok(Command{Kind: KindPutNode, Path: p("svc/a"), Ephemeral: true, Session: a, Contents: Bytes([]byte("addr"))})
	h.mustGrant(h.apply(Command{Kind: KindAcquire, Path: p("locks/x"), Session: a, RequestID: "ra"}))
	h.apply(Command{Kind: KindAcquire, Path: p("locks/x"), Session: b, WaitMs: 60_000, RequestID: "rb", Contents: Bytes([]byte("b"))})
	h.apply(Command{Kind: KindAcquire, Path: p("locks/x"), Session: c, WaitMs: 30_000, Mode: ModeShared})
	h.mustGrant(h.acquire(p("locks/r"), b, ModeShared, 0))
	h.mustGrant(h.acquire(p("locks/r"), c, ModeShared, 0))
	h.mustGrant(h.acquire(p("locks/d"), exp, ModeExclusive, 0))
	h.ok(Command{Kind: KindExpireSession, Session: exp}) // locks/d in lock-delay
	h.ok(Command{Kind: KindLeaderChanged, Leader: "1"})
	checkInvariants(t, h.m)
	return h
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := busyHarness(t)
	snap := h.snapshot()
	twin := newHarness(t)
	if err := twin.m.Restore(snap); err != nil {
		t.Fatal(err)
	}
	twin.index, twin.now = h.index, h.now
	mustEqualSnapshots(t, snap, twin.snapshot())
	checkInvariants(t, twin.m)
	if twin.m.AppliedIndex() != h.index || twin.m.Leader() != "1" || twin.m.NowMs() != h.now {
		t.Fatal("counters not restored")
	}
	if a, _ := h.m.NextDeadline(); true {
		if b, _ := twin.m.NextDeadline(); a != b {
			t.Fatal(a, b)
		}
	}
	if !reflect.DeepEqual(h.m.ListLocks(h.now), twin.m.ListLocks(h.now)) || !reflect.DeepEqual(h.m.ListSessions(), twin.m.ListSessions()) {
		t.Fatal("views differ")
	}
	// The same commands give the same results on both from here on.
	sessions := h.m.ListSessions()
	a, b := sessions[0].ID, sessions[1].ID
	rest := []Command{
		{Kind: KindAcquire, Path: p("locks/x"), Session: b, WaitMs: 60_000, RequestID: "rb"}, // duplicate of a queued wait
		{Kind: KindRelease, Path: p("locks/x"), Session: a, Generation: h.lock(p("locks/x")).Generation},
		{Kind: KindTick, NowMs: h.now + 1000},
		{Kind: KindAcquire, Path: p("locks/d"), Session: a},
		{Kind: KindAcquire, Path: p("locks/x"), Session: a, RequestID: "ra"},
		{Kind: KindExpireSession, Session: b},
		{Kind: KindTick, NowMs: h.now + 40_000},
	}
	for _, c := range rest {
		r1, r2 := h.apply(c), twin.apply(c)
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("%v:\n%+v\n%+v", c.Kind, r1, r2)
		}
		mustEqualSnapshots(t, h.snapshot(), twin.snapshot())
		checkInvariants(t, twin.m)
	}
}

func TestSnapshotIsDeterministic(t *testing.T) {
	a, b := busyHarness(t), busyHarness(t)
	mustEqualSnapshots(t, a.snapshot(), b.snapshot())
	for i := 0; i < 20; i++ { // map order differs between calls; bytes must not.
		mustEqualSnapshots(t, a.snapshot(), a.snapshot())
	}
}

func TestRestoreRejects(t *testing.T) {
	h := busyHarness(t)
	good := h.snapshot()
	edit := func(f func(img map[string]any)) []byte {
		var img map[string]any
		if err := json.Unmarshal(good, &img); err != nil {
			t.Fatal(err)
		}
		f(img)
		b, _ := json.Marshal(img)
		return b
	}
	list := func(img map[string]any, k string) []any { return img[k].([]any) }
	obj := func(img map[string]any, k string, i int) map[string]any { return list(img, k)[i].(map[string]any) }
	lockAt := func(img map[string]any, path string) map[string]any {
		for _, l := range list(img, "locks") {
			if m := l.(map[string]any); m["path"] == path {
				return m
			}
		}
		t.Fatal("no lock", path)
		return nil
	}
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("nope")},
		{"trailing", append(append([]byte{}, good...), []byte(" {}")...)},
		{"unknown field", edit(func(img map[string]any) { img["extra"] = 1 })},
		{"version", edit(func(img map[string]any) { img["version"] = 2 })},
		{"cell", edit(func(img map[string]any) { img["cell"] = "other" })},
		{"no root", edit(func(img map[string]any) { img["nodes"] = list(img, "nodes")[1:] })},
		{"orphan node", edit(func(img map[string]any) { obj(img, "nodes", 1)["path"] = p("zzz/q") })},
		{"nodes unsorted", edit(func(img map[string]any) {
			n := list(img, "nodes")
			n[1], n[2] = n[2], n[1]
		})},
		{"ephemeral of nobody", edit(func(img map[string]any) {
			for _, n := range list(img, "nodes") {
				if m := n.(map[string]any); m["path"] == p("svc/a") {
					m["owner"] = "00000000000000ee"
				}
			}
		})},
		{"holder unknown", edit(func(img map[string]any) {
			lockAt(img, p("locks/x"))["holders"].([]any)[0].(map[string]any)["session"] = "00000000000000ee"
		})},
		{"two exclusive", edit(func(img map[string]any) {
			l := lockAt(img, p("locks/r"))
			for _, x := range l["holders"].([]any) {
				x.(map[string]any)["mode"] = "exclusive"
			}
		})},
		{"waiter past deadline", edit(func(img map[string]any) {
			lockAt(img, p("locks/x"))["waiters"].([]any)[0].(map[string]any)["deadline"] = 5
		})},
		{"delay in the past", edit(func(img map[string]any) { lockAt(img, p("locks/d"))["delay_until"] = 5 })},
		{"bad request kind", edit(func(img map[string]any) {
			obj(img, "sessions", 0)["requests"].([]any)[0].(map[string]any)["kind"] = "tick"
		})},
		{"live and ended", edit(func(img map[string]any) {
			obj(img, "ended", 0)["id"] = obj(img, "sessions", 0)["id"]
		})},
		{"ttl out of bounds", edit(func(img map[string]any) { obj(img, "sessions", 0)["ttl_ms"] = 1 })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := New(Config{Cell: testCell})
			if err := m.Restore(good); err != nil {
				t.Fatal(err)
			}
			if err := m.Restore(tt.data); err == nil {
				t.Fatalf("accepted %s", tt.data)
			}
			after, _ := m.Snapshot()
			mustEqualSnapshots(t, good, after)
		})
	}
	// The editing helper itself keeps a good image good.
	m, _ := New(Config{Cell: testCell})
	if err := m.Restore(edit(func(map[string]any) {})); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(good), `"delay_until"`) {
		t.Fatal("busy state has no lock-delay")
	}
}

// Every rejection, whatever its cause, leaves the state as a Tick would.
func TestRejectedCommandsChangeNothing(t *testing.T) {
	h := busyHarness(t)
	ss := h.m.ListSessions()
	a, b := ss[0].ID, ss[1].ID
	x := h.lock(p("locks/x"))
	for _, tt := range []struct {
		name string
		c    Command
		code string
	}{
		{"acquire held", Command{Kind: KindAcquire, Path: p("locks/x"), Session: b, Mode: ModeShared, RequestID: "new"}, "precondition_failed"},
		{"try held", Command{Kind: KindAcquire, Path: p("locks/r"), Session: a, RequestID: "new2"}, "lock_held"},
		{"try delayed", Command{Kind: KindAcquire, Path: p("locks/d"), Session: a, RequestID: "new3"}, "lock_delayed"},
		{"other mode", Command{Kind: KindAcquire, Path: p("locks/x"), Session: a, Mode: ModeShared, RequestID: "new4"}, "lock_held"},
		{"request id reuse", Command{Kind: KindAcquire, Path: p("locks/y"), Session: a, RequestID: "ra"}, "invalid_argument"},
		{"release wrong gen", Command{Kind: KindRelease, Path: p("locks/x"), Session: a, Generation: x.Generation + 9, RequestID: "new5"}, "not_holder"},
		{"delete awaited", Command{Kind: KindDeleteNode, Path: p("locks/x")}, "precondition_failed"},
		{"delete dir", Command{Kind: KindDeleteNode, Path: p("cfg")}, "precondition_failed"},
		{"create only", Command{Kind: KindPutNode, Path: p("cfg/app"), CreateOnly: true}, "already_exists"},
		{"cas", Command{Kind: KindPutNode, Path: p("cfg/app"), IfContentGeneration: u64(9)}, "precondition_failed"},
		{"under file", Command{Kind: KindAcquire, Path: p("cfg/app/x"), Session: a, WaitMs: 100}, "precondition_failed"},
		{"bad bounds", Command{Kind: KindAcquire, Path: p("q"), Session: a, WaitMs: MaxWaitMs + 1}, "invalid_argument"},
		{"end unknown", Command{Kind: KindEndSession, Session: "0000000000000fff"}, "not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) { assertRejectedChangesNothing(t, h, tt.c, tt.code) })
	}
}
