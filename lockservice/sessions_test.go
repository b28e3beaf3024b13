package lockservice

import (
	"reflect"
	"testing"
)

func TestCreateSession(t *testing.T) {
	h := newHarness(t)
	res := h.ok(Command{Kind: KindCreateSession})
	s := res.Session
	if s.ID != sessionID(h.index) || s.ID != "0000000000000001" || s.TTLMs != DefaultTTLMs || s.LockDelayMs != DefaultLockDelayMs || s.CreatedIndex != 1 {
		t.Fatalf("%+v", s)
	}
	if s.Locks == nil || s.Ephemerals == nil {
		t.Fatal("nil lists")
	}
	res = h.ok(Command{Kind: KindCreateSession, TTLMs: 2000, LockDelayMs: i64(0), Label: "billing", Host: "h1", PID: 42})
	want := Session{ID: "0000000000000002", TTLMs: 2000, LockDelayMs: 0, Label: "billing", Host: "h1", PID: 42, CreatedIndex: 2, Locks: []string{}, Ephemerals: []string{}}
	if !reflect.DeepEqual(*res.Session, want) {
		t.Fatalf("%+v", *res.Session)
	}
	got, err := h.m.GetSession(want.ID)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatal(got, err)
	}
	if l := h.m.ListSessions(); len(l) != 2 || l[0].ID != "0000000000000001" || l[1].ID != want.ID {
		t.Fatal(l)
	}
	if l := h.m.LiveSessions(); !reflect.DeepEqual(l, []SessionLease{{"0000000000000001", DefaultTTLMs, 1}, {want.ID, 2000, 2}}) {
		t.Fatal(l)
	}
	h.fail(Command{Kind: KindCreateSession, TTLMs: 999}, "invalid_argument")
}

func TestSessionLookupErrors(t *testing.T) {
	h := newHarness(t)
	ended := h.session(0)
	expired := h.session(0)
	live := h.session(0)
	h.ok(Command{Kind: KindEndSession, Session: ended})
	res := h.ok(Command{Kind: KindExpireSession, Session: expired})
	if got := eventTypes(res.Events); !reflect.DeepEqual(got, []string{"session_expired "}) || res.Events[0].Session != expired {
		t.Fatal(res.Events)
	}
	unknown := "00000000000000aa"
	for _, tt := range []struct {
		id, code string
	}{{ended, "session_expired"}, {expired, "session_expired"}, {unknown, "not_found"}, {"bad id", "invalid_argument"}} {
		if _, err := h.m.GetSession(tt.id); Code(err) != tt.code {
			t.Errorf("GetSession(%s): %v, want %s", tt.id, err, tt.code)
		}
		if tt.code == "invalid_argument" {
			continue
		}
		for _, c := range []Command{
			{Kind: KindEndSession, Session: tt.id},
			{Kind: KindExpireSession, Session: tt.id},
			{Kind: KindAcquire, Path: p("x"), Session: tt.id},
			{Kind: KindRelease, Path: p("x"), Session: tt.id},
			{Kind: KindPutNode, Path: p("x"), Session: tt.id, Ephemeral: true},
		} {
			assertRejectedChangesNothing(t, h, c, tt.code)
		}
	}
	if l := h.m.ListSessions(); len(l) != 1 || l[0].ID != live {
		t.Fatal(l)
	}
}

func TestEndedSessionRecordIsBounded(t *testing.T) {
	h := newHarness(t)
	h.typed = true
	first := h.session(0)
	h.ok(Command{Kind: KindEndSession, Session: first})
	for i := 0; i < MaxEndedSessions; i++ {
		s := h.session(0)
		h.ok(Command{Kind: KindEndSession, Session: s})
	}
	if _, err := h.m.GetSession(first); Code(err) != "not_found" {
		t.Fatalf("oldest ended session: %v", err)
	}
	h.m.mu.RLock()
	n := len(h.m.st.ended.m)
	h.m.mu.RUnlock()
	if n != MaxEndedSessions {
		t.Fatal(n)
	}
	last := sessionID(h.index - 1)
	if _, err := h.m.GetSession(last); Code(err) != "session_expired" {
		t.Fatal(err)
	}
}

func TestEndSessionReleasesEverything(t *testing.T) {
	h := newHarness(t)
	s := h.session(5000)
	other := h.session(0)
	g1 := h.mustGrant(h.acquire(p("a"), s, ModeExclusive, 0))
	h.mustGrant(h.acquire(p("b"), s, ModeShared, 0))
	h.mustGrant(h.acquire(p("c"), other, ModeExclusive, 0))
	w := h.acquire(p("c"), s, ModeExclusive, 10_000)
	wo := h.acquire(p("a"), other, ModeExclusive, 10_000)
	sess, _ := h.m.GetSession(s)
	if !reflect.DeepEqual(sess.Locks, []string{p("a"), p("b")}) {
		t.Fatal(sess.Locks)
	}
	res := h.ok(Command{Kind: KindEndSession, Session: s})
	// Released without lock-delay: other gets a at once.
	if !hasEvent(res.Events, EventLockReleased, p("a")) || !hasEvent(res.Events, EventLockAcquired, p("a")) {
		t.Fatal(eventTypes(res.Events))
	}
	if hasEvent(res.Events, EventSessionExpired, "") {
		t.Fatal("end is not expiry")
	}
	ga, err := h.m.AwaitAcquire(t.Context(), wo.WaitID)
	if err != nil || ga.Session != other || ga.Generation <= g1.Generation {
		t.Fatal(ga, err)
	}
	if _, err := h.m.AwaitAcquire(t.Context(), w.WaitID); Code(err) != "session_expired" {
		t.Fatal(err)
	}
	if _, err := h.m.GetLock(p("b"), h.now); err != nil {
		t.Fatal(err)
	}
	if l := h.lock(p("b")); len(l.Holders) != 0 || l.LockDelayUntilMs != 0 {
		t.Fatalf("%+v", l)
	}
	if l := h.lock(p("c")); len(l.Waiters) != 0 {
		t.Fatalf("%+v", l)
	}
	checkInvariants(t, h.m)
}
