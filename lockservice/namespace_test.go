package lockservice

import (
	"reflect"
	"testing"
)

func TestPutNodeCreateAndWrite(t *testing.T) {
	h := newHarness(t)
	res := h.ok(Command{Kind: KindPutNode, Path: p("a/b/c"), Contents: Bytes([]byte("one"))})
	if !res.Created || res.Node.ContentGeneration != 1 || string(res.Node.Contents) != "one" || res.Node.Kind != "file" {
		t.Fatalf("%+v", res.Node)
	}
	got := eventTypes(res.Events)
	wantEv := []string{
		"node_created " + p("a"), "child_added /ls/test",
		"node_created " + p("a/b"), "child_added " + p("a"),
		"node_created " + p("a/b/c"), "child_added " + p("a/b"),
	}
	if !reflect.DeepEqual(got, wantEv) {
		t.Fatalf("events %v", got)
	}
	if e := res.Events[1]; e.Child != "a" || e.Index != h.index {
		t.Fatalf("%+v", e)
	}
	for _, d := range []string{"a", "a/b"} {
		if n := h.node(p(d)); n.Kind != "dir" || n.EphemeralOwner != "" || n.CreateIndex != h.index {
			t.Fatalf("%s: %+v", d, n)
		}
	}
	inst := res.Node.Instance

	res = h.ok(Command{Kind: KindPutNode, Path: p("a/b/c"), Contents: Bytes([]byte("two"))})
	if res.Created || res.Node.ContentGeneration != 2 || res.Node.Instance != inst || res.Node.ModifyIndex != h.index {
		t.Fatalf("%+v", res.Node)
	}
	if got := eventTypes(res.Events); !reflect.DeepEqual(got, []string{"contents_changed " + p("a/b/c")}) {
		t.Fatal(got)
	}
	// Same contents again still counts as a write.
	res = h.ok(Command{Kind: KindPutNode, Path: p("a/b/c"), Contents: Bytes([]byte("two"))})
	if res.Node.ContentGeneration != 3 {
		t.Fatal(res.Node)
	}
	// Conditional write.
	h.fail(Command{Kind: KindPutNode, Path: p("a/b/c"), IfContentGeneration: u64(2)}, "precondition_failed")
	res = h.ok(Command{Kind: KindPutNode, Path: p("a/b/c"), IfContentGeneration: u64(3)})
	if res.Node.ContentGeneration != 4 || len(res.Node.Contents) != 0 {
		t.Fatal(res.Node)
	}
	n := h.node(p("a/b"))
	if !reflect.DeepEqual(n.Children, []string{"c"}) {
		t.Fatal(n.Children)
	}
	checkInvariants(t, h.m)
}

func TestPutNodeErrors(t *testing.T) {
	h := newHarness(t)
	h.ok(Command{Kind: KindPutNode, Path: p("f"), Contents: Bytes([]byte("x"))})
	h.ok(Command{Kind: KindPutNode, Path: p("d"), Dir: true})
	s := h.session(0)
	dead := h.session(0)
	h.ok(Command{Kind: KindEndSession, Session: dead})
	tests := []struct {
		name string
		c    Command
		code string
	}{
		{"create only existing", Command{Kind: KindPutNode, Path: p("f"), CreateOnly: true}, "already_exists"},
		{"create only existing dir", Command{Kind: KindPutNode, Path: p("d"), Dir: true, CreateOnly: true}, "already_exists"},
		{"if gen on missing", Command{Kind: KindPutNode, Path: p("nope"), IfContentGeneration: u64(1)}, "not_found"},
		{"if gen mismatch", Command{Kind: KindPutNode, Path: p("f"), IfContentGeneration: u64(7)}, "precondition_failed"},
		{"file over dir", Command{Kind: KindPutNode, Path: p("d"), Contents: Bytes([]byte("x"))}, "precondition_failed"},
		{"dir over file", Command{Kind: KindPutNode, Path: p("f"), Dir: true}, "precondition_failed"},
		{"under a file", Command{Kind: KindPutNode, Path: p("f/g/h")}, "precondition_failed"},
		{"ephemeral unknown session", Command{Kind: KindPutNode, Path: p("e"), Ephemeral: true, Session: "00000000000000ff"}, "not_found"},
		{"ephemeral dead session", Command{Kind: KindPutNode, Path: p("e"), Ephemeral: true, Session: dead}, "session_expired"},
		{"ephemeral over permanent", Command{Kind: KindPutNode, Path: p("f"), Ephemeral: true, Session: s}, "precondition_failed"},
		{"root", Command{Kind: KindPutNode, Path: "/ls/test", Dir: true}, "invalid_argument"},
		{"too large", Command{Kind: KindPutNode, Path: p("big"), Contents: Bytes(make([]byte, MaxContentsBytes+1))}, "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertRejectedChangesNothing(t, h, tt.c, tt.code)
		})
	}
	// {dir: true} on a directory is a no-op success.
	res := h.ok(Command{Kind: KindPutNode, Path: p("d"), Dir: true})
	if res.Created || res.Node.Kind != "dir" || len(res.Events) != 0 {
		t.Fatalf("%+v", res)
	}
}

func TestDeleteNode(t *testing.T) {
	h := newHarness(t)
	h.ok(Command{Kind: KindPutNode, Path: p("d/f"), Contents: Bytes([]byte("x"))})
	f := h.node(p("d/f"))
	s := h.session(0)
	h.mustGrant(h.acquire(p("locked"), s, ModeExclusive, 0))
	other := h.session(0)
	h.mustGrant(h.acquire(p("awaited"), s, ModeExclusive, 0))
	if r := h.acquire(p("awaited"), other, ModeExclusive, 1000); !r.Waiting {
		t.Fatal(r)
	}
	tests := []struct {
		name string
		c    Command
		code string
	}{
		{"missing", Command{Kind: KindDeleteNode, Path: p("nope")}, "not_found"},
		{"instance mismatch", Command{Kind: KindDeleteNode, Path: p("d/f"), IfInstance: u64(f.Instance + 1)}, "precondition_failed"},
		{"non-empty dir", Command{Kind: KindDeleteNode, Path: p("d")}, "precondition_failed"},
		{"held lock", Command{Kind: KindDeleteNode, Path: p("locked")}, "precondition_failed"},
		{"awaited lock", Command{Kind: KindDeleteNode, Path: p("awaited")}, "precondition_failed"},
		{"root", Command{Kind: KindDeleteNode, Path: "/ls/test"}, "invalid_argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertRejectedChangesNothing(t, h, tt.c, tt.code)
		})
	}
	res := h.ok(Command{Kind: KindDeleteNode, Path: p("d/f"), IfInstance: u64(f.Instance)})
	if got := eventTypes(res.Events); !reflect.DeepEqual(got, []string{"node_deleted " + p("d/f"), "child_removed " + p("d")}) {
		t.Fatal(got)
	}
	if _, err := h.m.GetNode(p("d/f")); Code(err) != "not_found" {
		t.Fatal(err)
	}
	h.ok(Command{Kind: KindDeleteNode, Path: p("d")})
	// Re-create: a new instance, generations start again.
	res = h.ok(Command{Kind: KindPutNode, Path: p("d/f")})
	if res.Node.Instance <= f.Instance || res.Node.ContentGeneration != 1 {
		t.Fatalf("%+v after %+v", res.Node, f)
	}
	checkInvariants(t, h.m)
}

func TestGetNode(t *testing.T) {
	h := newHarness(t)
	for _, c := range []string{"z", "a", "m/x", "B"} {
		h.ok(Command{Kind: KindPutNode, Path: p(c)})
	}
	root := h.node("/ls/test")
	if !reflect.DeepEqual(root.Children, []string{"B", "a", "m", "z"}) || root.Kind != "dir" {
		t.Fatalf("%+v", root)
	}
	if _, err := h.m.GetNode("/ls/test/"); Code(err) != "invalid_argument" {
		t.Fatal(err)
	}
	if _, err := h.m.GetNode(p("q")); Code(err) != "not_found" {
		t.Fatal(err)
	}
	f := h.node(p("a"))
	if f.Children != nil || f.Contents == nil {
		t.Fatalf("%+v", f)
	}
	// Views are copies.
	n := h.node(p("a"))
	n.Contents = append(n.Contents, 'x')
	if len(h.node(p("a")).Contents) != 0 {
		t.Fatal("view aliases state")
	}
}

func TestEphemeralNodes(t *testing.T) {
	for _, kind := range []Kind{KindEndSession, KindExpireSession} {
		t.Run(kind.String(), func(t *testing.T) {
			h := newHarness(t)
			s := h.session(0)
			other := h.session(0)
			res := h.ok(Command{Kind: KindPutNode, Path: p("svc/e1"), Ephemeral: true, Session: s, Contents: Bytes([]byte("addr"))})
			if res.Node.EphemeralOwner != s || h.node(p("svc")).EphemeralOwner != "" {
				t.Fatalf("%+v", res.Node)
			}
			h.ok(Command{Kind: KindPutNode, Path: p("svc/e2"), Ephemeral: true, Session: s})
			h.ok(Command{Kind: KindPutNode, Path: p("svc/e3"), Ephemeral: true, Session: other})
			// The owner may rewrite its node, also with ephemeral set.
			h.ok(Command{Kind: KindPutNode, Path: p("svc/e1"), Ephemeral: true, Session: s, Contents: Bytes([]byte("b"))})
			h.fail(Command{Kind: KindPutNode, Path: p("svc/e1"), Ephemeral: true, Session: other}, "precondition_failed")
			sess, _ := h.m.GetSession(s)
			if !reflect.DeepEqual(sess.Ephemerals, []string{p("svc/e1"), p("svc/e2")}) {
				t.Fatal(sess.Ephemerals)
			}
			res = h.ok(Command{Kind: kind, Session: s})
			for _, e := range []string{"svc/e1", "svc/e2"} {
				if _, err := h.m.GetNode(p(e)); Code(err) != "not_found" {
					t.Fatalf("%s survived: %v", e, err)
				}
				if !hasEvent(res.Events, EventNodeDeleted, p(e)) {
					t.Fatalf("no delete event for %s: %v", e, eventTypes(res.Events))
				}
			}
			h.node(p("svc/e3"))
			h.node(p("svc"))
			checkInvariants(t, h.m)
		})
	}
}

// An ephemeral node deleted by its owner's end while another session waits
// for its lock is re-created by the grant.
func TestEphemeralLockOutlivesNode(t *testing.T) {
	h := newHarness(t)
	owner := h.session(0)
	a := h.session(0)
	b := h.session(0)
	h.ok(Command{Kind: KindPutNode, Path: p("e"), Ephemeral: true, Session: owner})
	g := h.mustGrant(h.acquire(p("e"), a, ModeExclusive, 0))
	w := h.apply(Command{Kind: KindAcquire, Path: p("e"), Session: b, WaitMs: 5000, Contents: Bytes([]byte("b-was-here"))})
	h.ok(Command{Kind: KindEndSession, Session: owner})
	if _, err := h.m.GetNode(p("e")); Code(err) != "not_found" {
		t.Fatal(err)
	}
	if l := h.lock(p("e")); len(l.Holders) != 1 || l.Holders[0].Session != a {
		t.Fatalf("%+v", l)
	}
	checkInvariants(t, h.m)
	res := h.ok(Command{Kind: KindRelease, Path: p("e"), Session: a, Generation: g.Generation})
	if !hasEvent(res.Events, EventNodeCreated, p("e")) {
		t.Fatal(eventTypes(res.Events))
	}
	n := h.node(p("e"))
	if string(n.Contents) != "b-was-here" || n.EphemeralOwner != "" || n.LockGeneration <= g.Generation {
		t.Fatalf("%+v", n)
	}
	gb, err := h.m.AwaitAcquire(t.Context(), w.WaitID)
	if err != nil || gb.Session != b {
		t.Fatal(gb, err)
	}
	checkInvariants(t, h.m)
}

// assertRejectedChangesNothing applies c, expects the error code, and checks
// that the state is exactly what a Tick at the same index and time leaves.
func assertRejectedChangesNothing(t *testing.T, h *harness, c Command, code string) {
	t.Helper()
	twin := newHarness(t)
	if err := twin.m.Restore(h.snapshot()); err != nil {
		t.Fatal(err)
	}
	twin.index, twin.now = h.index, h.now
	res := h.fail(c, code)
	if res.Grant != nil || res.Node != nil || res.Released || res.Waiting || res.Session != nil {
		t.Fatalf("rejected command returned data: %+v", res)
	}
	twin.ok(Command{Kind: KindTick})
	mustEqualSnapshots(t, h.snapshot(), twin.snapshot())
	checkInvariants(t, h.m)
}
