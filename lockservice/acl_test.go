package lockservice

import (
	"bytes"
	"reflect"
	"testing"
)

func TestPerms(t *testing.T) {
	p, err := ParsePerms([]string{"lock", "read"})
	if err != nil || p != PermRead|PermLock {
		t.Fatal(p, err)
	}
	if got := p.Strings(); !reflect.DeepEqual(got, []string{"read", "lock"}) {
		t.Fatal(got)
	}
	if !p.Has(PermRead) || p.Has(PermWrite) || !PermAdmin.Has(PermWrite|PermLock) {
		t.Fatal("Has")
	}
	for _, bad := range [][]string{{"read", "read"}, {"exec"}, {""}} {
		if _, err := ParsePerms(bad); Code(err) != "invalid_argument" {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if Perm(0).String() != "none" || len(Perm(0).Strings()) != 0 {
		t.Fatal("none")
	}
}

func TestACLCommandsValidate(t *testing.T) {
	h := newHarness(t)
	h.tick(0)
	for _, c := range []Command{
		{Kind: KindSetACL, Path: p("a"), Perms: []string{"read"}},                         // no principal
		{Kind: KindSetACL, Path: p("a") + "/", Principal: "x", Perms: []string{"read"}},   // trailing slash
		{Kind: KindSetACL, Path: "/ls/other/a", Principal: "x"},                           // other cell
		{Kind: KindSetACL, Path: p("a"), Principal: "x y"},                                // bad principal
		{Kind: KindSetACL, Path: p("a"), Principal: "x", Perms: []string{"root"}},         // bad perm
		{Kind: KindDeleteACL, Path: p("a"), Principal: "x", Perms: []string{"read"}},      // perms not allowed
		{Kind: KindCreateSession, Principal: "*"},                                         // wildcard owner
		{Kind: KindPutNode, Path: p("a"), Principal: "x"},                                 // principal not allowed
		{Kind: KindSetACL, Path: p("a"), Principal: "x", Session: "0000000000000001"},     // session not allowed
		{Kind: KindSetACL, Path: p("a"), Principal: string(make([]byte, 65)), Perms: nil}, // too long
	} {
		before := h.snapshot()
		h.fail(c, "invalid_argument")
		if a := h.snapshot(); !bytes.Equal(stripApplied(before), stripApplied(a)) {
			t.Fatalf("%+v changed the state", c)
		}
	}
	h.fail(Command{Kind: KindDeleteACL, Path: p("a"), Principal: "x"}, "not_found")
}

// stripApplied compares snapshots without the applied index (a refused
// command still takes its index).
func stripApplied(b []byte) []byte {
	i := bytes.Index(b, []byte(`"applied":`))
	j := bytes.Index(b, []byte(`,"now_ms"`))
	if i < 0 || j < 0 {
		return b
	}
	return append(append([]byte{}, b[:i]...), b[j:]...)
}

func TestACLResolution(t *testing.T) {
	h := newHarness(t)
	root := PathPrefix + testCell
	static, err := NewStaticACL(testCell, []ACLRule{
		{Prefix: root, Principal: "ops", Perms: PermRead},
		{Prefix: p("teamA") + "/", Principal: "teamA", Perms: PermRead | PermWrite | PermLock},
		{Prefix: p("pub"), Principal: Everyone, Perms: PermRead},
	})
	if err != nil {
		t.Fatal(err)
	}
	perm := func(who, path string) Perm { return h.m.Permissions(who, path, static) }
	cases := []struct {
		who, path string
		want      Perm
	}{
		{"ops", root, PermRead},
		{"ops", p("teamA/x"), PermRead},
		{"teamA", p("teamA"), PermRead | PermWrite | PermLock},
		{"teamA", p("teamA/x/y"), PermRead | PermWrite | PermLock},
		{"teamA", p("teamAB"), 0}, // segment-wise prefixes only
		{"teamA", root, 0},
		{"teamA", p("pub/x"), PermRead},
		{"ops", p("pub/x"), PermRead},
		{"nobody", p("x"), 0},
	}
	for _, c := range cases {
		if got := perm(c.who, c.path); got != c.want {
			t.Errorf("%s at %s: %v, want %v", c.who, c.path, got, c.want)
		}
	}
	if g := h.m.ACLGeneration(p("teamA/x")); g != 0 {
		t.Fatalf("static rules have generation 0, got %d", g)
	}

	// A replicated rule overrides the static one for the same principal and
	// prefix; an empty rule denies below a grant; another principal's rule
	// does not affect teamA.
	r := h.ok(Command{Kind: KindSetACL, Path: p("teamA"), Principal: "teamA", Perms: []string{"read"}})
	set1 := r.Index
	if got := perm("teamA", p("teamA/x")); got != PermRead {
		t.Fatalf("override: %v", got)
	}
	h.ok(Command{Kind: KindSetACL, Path: p("teamA/secret"), Principal: "teamA"})
	set2 := h.index
	h.ok(Command{Kind: KindSetACL, Path: p("teamA/shared"), Principal: "teamB", Perms: []string{"read", "lock"}})
	set3 := h.index
	if got := perm("teamA", p("teamA/secret/k")); got != 0 {
		t.Fatalf("deny rule: %v", got)
	}
	if got := perm("teamA", p("teamA/shared/k")); got != PermRead {
		t.Fatalf("another principal's rule changed teamA: %v", got)
	}
	if got := perm("teamB", p("teamA/shared/k")); got != PermRead|PermLock {
		t.Fatalf("teamB: %v", got)
	}
	// The admin permission implies the others.
	h.ok(Command{Kind: KindSetACL, Path: p("teamA"), Principal: "lead", Perms: []string{"admin"}})
	if got := perm("lead", p("teamA/x")); !got.Has(PermWrite | PermLock | PermRead) {
		t.Fatalf("admin: %v", got)
	}

	// acl_generation: the last change at any prefix of the path.
	h.ok(Command{Kind: KindPutNode, Path: p("teamA/shared/k")})
	h.ok(Command{Kind: KindPutNode, Path: p("other")})
	n, _ := h.m.GetNode(p("teamA/shared/k"))
	if n.ACLGeneration != h.index-2 { // the "lead" rule at teamA
		t.Fatalf("acl_generation %d, want %d (rules at %d %d %d)", n.ACLGeneration, h.index-2, set1, set2, set3)
	}
	if o, _ := h.m.GetNode(p("other")); o.ACLGeneration != 0 {
		t.Fatalf("uncovered node has acl_generation %d", o.ACLGeneration)
	}
	before := n.ACLGeneration
	h.ok(Command{Kind: KindDeleteACL, Path: p("teamA"), Principal: "lead"})
	del := h.index
	n, _ = h.m.GetNode(p("teamA/shared/k"))
	if n.ACLGeneration != del || n.ACLGeneration <= before {
		t.Fatalf("delete did not raise acl_generation: %d -> %d", before, n.ACLGeneration)
	}
	// Deleting the override falls back to the static rule.
	h.ok(Command{Kind: KindDeleteACL, Path: p("teamA"), Principal: "teamA"})
	if got := perm("teamA", p("teamA/x")); got != PermRead|PermWrite|PermLock {
		t.Fatalf("fallback to static: %v", got)
	}
	if rules := h.m.ACLRules(p("teamA")); len(rules) != 2 || rules[0].Prefix != p("teamA/secret") {
		t.Fatalf("rules: %+v", rules)
	}
	if !h.m.HasACLRule(p("teamA/secret"), "teamA") || h.m.HasACLRule(p("teamA"), "teamA") {
		t.Fatal("HasACLRule")
	}

	// Snapshots carry the rules and the generations.
	snap := h.snapshot()
	twin := newHarness(t)
	if err := twin.m.Restore(snap); err != nil {
		t.Fatal(err)
	}
	mustEqualSnapshots(t, snap, twin.snapshot())
	n, _ = h.m.GetNode(p("teamA/shared/k"))
	n2, _ := twin.m.GetNode(p("teamA/shared/k"))
	if n2.ACLGeneration != n.ACLGeneration || twin.m.Permissions("teamB", p("teamA/shared/k"), static) != PermRead|PermLock {
		t.Fatalf("restored ACLs differ: %d vs %d, %v", n2.ACLGeneration, n.ACLGeneration, twin.m.Permissions("teamB", p("teamA/shared/k"), static))
	}
}

func TestSessionPrincipal(t *testing.T) {
	h := newHarness(t)
	a := h.ok(Command{Kind: KindCreateSession, Principal: "teamA"}).Session
	if a.Principal != "teamA" {
		t.Fatal(a)
	}
	anon := h.ok(Command{Kind: KindCreateSession}).Session.ID
	h.acquire(p("l"), anon, ModeExclusive, 0)
	h.acquire(p("l"), a.ID, ModeExclusive, 60_000)
	if u := h.m.UsageOf("teamA"); u != (Usage{Sessions: 1, Waiters: 1}) {
		t.Fatalf("usage %+v", u)
	}
	if u := h.m.UsageOf(""); u != (Usage{Sessions: 1}) {
		t.Fatalf("anonymous usage %+v", u)
	}
	snap := h.snapshot()
	if !bytes.Contains(snap, []byte(`"principal":"teamA"`)) {
		t.Fatalf("snapshot lacks the principal: %s", snap)
	}
	twin := newHarness(t)
	if err := twin.m.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if s, _ := twin.m.GetSession(a.ID); s.Principal != "teamA" {
		t.Fatal("principal not restored")
	}
	if err := twin.m.Restore(bytes.Replace(snap, []byte(`"principal":"teamA"`), []byte(`"principal":"a b"`), 1)); err == nil {
		t.Fatal("restored a bad principal")
	}
}
