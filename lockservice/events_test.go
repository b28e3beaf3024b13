package lockservice

import (
	"context"
	"testing"
	"time"
)

func TestEventsSince(t *testing.T) {
	h := newHarness(t)
	h.ok(Command{Kind: KindPutNode, Path: p("a/b")})    // 1
	h.ok(Command{Kind: KindPutNode, Path: p("a/b")})    // 2
	h.ok(Command{Kind: KindPutNode, Path: p("c")})      // 3
	s := h.session(0)                                   // 4
	h.ok(Command{Kind: KindExpireSession, Session: s})  // 5
	h.ok(Command{Kind: KindLeaderChanged, Leader: "2"}) // 6
	all, err := h.m.EventsSince(0, "", false)
	if err != nil || len(all) != 9 {
		t.Fatal(eventTypes(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Index < all[i-1].Index {
			t.Fatal("out of order")
		}
	}
	for _, tt := range []struct {
		since     uint64
		path      string
		recursive bool
		want      int
	}{
		{0, p("a/b"), false, 2},   // created, changed
		{1, p("a/b"), false, 1},   // changed
		{0, p("a"), false, 2},     // a created, child_added b
		{0, p("a"), true, 4},      // a created, b created, child_added b, b changed
		{0, "/ls/test", false, 2}, // child_added a, c
		{0, "/ls/test", true, 9},  // everything incl. session and leader events
		{4, "/ls/test", true, 2},  // session_expired, leader_changed
		{6, "", false, 0},         // nothing after the end
		{100, "", false, 0},       // future index
		{0, p("c/d"), true, 0},
	} {
		got, err := h.m.EventsSince(tt.since, tt.path, tt.recursive)
		if err != nil || len(got) != tt.want {
			t.Errorf("since %d %s rec=%v: %v %v, want %d", tt.since, tt.path, tt.recursive, eventTypes(got), err, tt.want)
		}
	}
	if _, err := h.m.EventsSince(0, "/ls/x", false); Code(err) != "invalid_argument" {
		t.Fatal(err)
	}
}

func TestEventsCompacted(t *testing.T) {
	m, err := New(Config{Cell: testCell, EventHistory: 4})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, m: m, now: 1}
	for i := 0; i < 3; i++ { // two events each: node_created, child_added
		h.ok(Command{Kind: KindPutNode, Path: p(string(rune('a' + i)))})
	}
	// Retained: index 2 and 3 (4 events); index 1 is gone.
	if _, err := m.EventsSince(0, "", false); Code(err) != "compacted" {
		t.Fatal(err)
	}
	got, err := m.EventsSince(1, "", false)
	if err != nil || len(got) != 4 || got[0].Index != 2 {
		t.Fatal(got, err)
	}
	// One more event: index 2 is partly dropped, so since=1 is compacted.
	h.ok(Command{Kind: KindPutNode, Path: p("a")})
	if _, err := m.EventsSince(1, "", false); Code(err) != "compacted" {
		t.Fatal(err)
	}
	if got, err := m.EventsSince(2, "", false); err != nil || len(got) != 3 {
		t.Fatal(got, err)
	}
	// After Restore the history starts at the snapshot's index.
	snap := h.snapshot()
	m2, _ := New(Config{Cell: testCell})
	if err := m2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.EventsSince(3, "", false); Code(err) != "compacted" {
		t.Fatal(err)
	}
	if got, err := m2.EventsSince(4, "", false); err != nil || len(got) != 0 {
		t.Fatal(got, err)
	}
}

func TestWatchEventsAndWaitIndex(t *testing.T) {
	h := newHarness(t)
	h.ok(Command{Kind: KindPutNode, Path: p("other")})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	type out struct {
		evs   []Event
		index uint64
		err   error
	}
	ch := make(chan out, 1)
	since := h.m.AppliedIndex()
	go func() {
		evs, idx, err := h.m.WatchEvents(ctx, since, p("w"), true)
		ch <- out{evs, idx, err}
	}()
	waited := make(chan error, 1)
	go func() { waited <- h.m.WaitIndex(ctx, 3) }()
	// Unrelated changes do not wake the watch with nothing.
	h.ok(Command{Kind: KindPutNode, Path: p("other")})
	h.ok(Command{Kind: KindPutNode, Path: p("w/x")})
	o := <-ch
	if o.err != nil || len(o.evs) == 0 || o.evs[0].Path != p("w") || o.index != 3 {
		t.Fatalf("%+v", o)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithCancel(t.Context())
	cancel2()
	evs, idx, err := h.m.WatchEvents(short, 3, "", false)
	if err != context.Canceled || len(evs) != 0 || idx != 3 {
		t.Fatal(evs, idx, err)
	}
	if err := h.m.WaitIndex(short, 99); err != context.Canceled {
		t.Fatal(err)
	}
	idx, notify := h.m.Notify()
	select {
	case <-notify:
		t.Fatal("closed early")
	default:
	}
	h.tick(1)
	<-notify
	if idx != 3 {
		t.Fatal(idx)
	}
}
