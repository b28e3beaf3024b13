package api_test

import (
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
)

func TestACLRoutes(t *testing.T) {
	c := securedCell(t, 3)
	leader := newClient(t, c.LeaderURL())
	follower := newClient(t, c.URL(c.Follower())).as(tokAdmin)
	admin, teamA, teamB := leader.as(tokAdmin), leader.as(tokTeamA), leader.as(tokTeamB)

	var n wire.NodeResponse
	admin.do("PUT", "/v1/nodes/ls/local/shared/doc", map[string]string{"contents": "d"}).want(t, http.StatusCreated, &n)
	if n.Node.ACLGeneration != 0 {
		t.Fatalf("acl_generation %d before any rule", n.Node.ACLGeneration)
	}
	teamB.do("GET", "/v1/nodes/ls/local/shared/doc", nil).wantError(t, http.StatusForbidden, wire.CodePermissionDenied)

	// An administrator grants teamB read on /ls/local/shared (through a
	// follower: the rule goes through the log); the node's acl_generation
	// becomes the rule's index on every replica.
	var set wire.ACLResponse
	follower.do("PUT", "/v1/acls/ls/local/shared/", map[string]any{"principal": "teamB", "perms": []string{"read"}}).
		want(t, http.StatusOK, &set)
	if set.ACL.Prefix != "/ls/local/shared" || !reflect.DeepEqual(set.ACL.Perms, []string{"read"}) || set.ACL.Index == 0 {
		t.Fatalf("set: %+v", set.ACL)
	}
	c.WaitApplied(set.ACL.Index)
	for i := 0; i < c.Replicas(); i++ {
		node, err := c.Machine(i).GetNode("/ls/local/shared/doc")
		if err != nil || node.ACLGeneration != set.ACL.Index {
			t.Fatalf("replica %d: acl_generation %d, want %d (%v)", i, node.ACLGeneration, set.ACL.Index, err)
		}
	}
	teamB.do("GET", "/v1/nodes/ls/local/shared/doc", nil).want(t, http.StatusOK, &n)
	if n.Node.ACLGeneration != set.ACL.Index {
		t.Fatalf("acl_generation %d", n.Node.ACLGeneration)
	}
	teamB.do("PUT", "/v1/nodes/ls/local/shared/doc", map[string]string{"contents": "x"}).wantError(t, http.StatusForbidden, wire.CodePermissionDenied)

	// Not an administrator: cannot set, list or delete rules.
	teamA.do("PUT", "/v1/acls/ls/local/shared", map[string]any{"principal": "teamA", "perms": []string{"admin"}}).
		wantError(t, http.StatusForbidden, wire.CodePermissionDenied)
	teamA.do("GET", "/v1/acls", nil).wantError(t, http.StatusForbidden, wire.CodePermissionDenied)

	// Delegation: admin on /ls/local/teamA lets teamA manage rules there,
	// and nowhere else.
	admin.do("PUT", "/v1/acls/ls/local/teamA", map[string]any{"principal": "teamA", "perms": []string{"admin"}}).want(t, http.StatusOK, nil)
	teamA.do("PUT", "/v1/acls/ls/local/teamA/inbox", map[string]any{"principal": "teamB", "perms": []string{"write"}}).
		want(t, http.StatusOK, nil)
	teamB.do("PUT", "/v1/nodes/ls/local/teamA/inbox/msg", map[string]string{"contents": "hi"}).want(t, http.StatusCreated, nil)
	teamB.do("GET", "/v1/nodes/ls/local/teamA/inbox/msg", nil).wantError(t, http.StatusForbidden, wire.CodePermissionDenied)
	teamA.do("PUT", "/v1/acls/ls/local/teamB", map[string]any{"principal": "teamA", "perms": []string{"read"}}).
		wantError(t, http.StatusForbidden, wire.CodePermissionDenied)
	var sub wire.ACLsResponse
	teamA.do("GET", "/v1/acls/ls/local/teamA?principal=teamB", nil).want(t, http.StatusOK, &sub)
	if sub.Effective == nil || len(sub.Effective.Perms) != 0 || len(sub.ACLs) < 3 {
		t.Fatalf("teamA's view: %+v %+v", sub.ACLs, sub.Effective)
	}

	// Bad input is refused before the log; a missing rule is not_found.
	settle(t, c, admin)
	applied := c.Machine(c.Leader()).AppliedIndex()
	before := snapshots(t, c)
	for _, bad := range []any{
		map[string]any{"principal": "teamB"},
		map[string]any{"principal": "ghost", "perms": []string{"read"}},
		map[string]any{"principal": "teamB", "perms": []string{"root"}},
		map[string]any{"principal": "teamB", "perms": []string{"read"}, "extra": 1},
	} {
		admin.do("PUT", "/v1/acls/ls/local/shared", bad).wantError(t, http.StatusBadRequest, wire.CodeInvalidArgument)
	}
	admin.do("PUT", "/v1/acls/ls/other", map[string]any{"principal": "teamB", "perms": []string{}}).
		wantError(t, http.StatusBadRequest, wire.CodeInvalidArgument)
	admin.do("DELETE", "/v1/acls/ls/local/shared?principal=teamA", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
	admin.do("DELETE", "/v1/acls/ls/local/shared", nil).wantError(t, http.StatusBadRequest, wire.CodeInvalidArgument)
	if a := c.Machine(c.Leader()).AppliedIndex(); a != applied || !bytes.Equal(before[c.Leader()], snapshots(t, c)[c.Leader()]) {
		t.Fatalf("refused ACL requests changed the state (applied %d -> %d)", applied, a)
	}

	// The list shows replicated and configured rules; deleting raises the
	// generation again and takes the grant away.
	var all wire.ACLsResponse
	admin.do("GET", "/v1/acls", nil).want(t, http.StatusOK, &all)
	sources := map[string]int{}
	for _, r := range all.ACLs {
		sources[r.Source]++
	}
	if sources["config"] != 2 || sources["log"] != 3 {
		t.Fatalf("rules: %+v", all.ACLs)
	}
	del := admin.do("DELETE", "/v1/acls/ls/local/shared?principal=teamB", nil).want(t, http.StatusNoContent, nil).index(t)
	admin.do("GET", "/v1/nodes/ls/local/shared/doc", nil).want(t, http.StatusOK, &n)
	if n.Node.ACLGeneration != del || del <= set.ACL.Index {
		t.Fatalf("acl_generation %d after the delete at %d", n.Node.ACLGeneration, del)
	}
	teamB.do("GET", "/v1/nodes/ls/local/shared/doc", nil).wantError(t, http.StatusForbidden, wire.CodePermissionDenied)

	// Admin on the cell root makes an operator.
	teamB.do("GET", "/v1/cluster", nil).wantError(t, http.StatusForbidden, wire.CodePermissionDenied)
	admin.do("PUT", "/v1/acls/ls/local", map[string]any{"principal": "teamB", "perms": []string{"admin"}}).want(t, http.StatusOK, nil)
	teamB.do("GET", "/v1/cluster", nil).want(t, http.StatusOK, nil)
	teamB.do("GET", "/v1/sessions", nil).want(t, http.StatusOK, nil)
}

// TestOpenCell: without tokens every request may do everything, tokens or
// not (a client configured for a secured cell works against a local one),
// and sessions have no principal.
func TestOpenCell(t *testing.T) {
	c := apitest.NewCell(t, 1)
	cl := newClient(t, c.URL(0))
	for _, tok := range []string{"", "some-token"} {
		s := cl.as(tok).newSession(10_000, 0, "x")
		if s.Principal != "" {
			t.Fatalf("principal %q on an open cell", s.Principal)
		}
		cl.as(tok).do("GET", "/v1/cluster", nil).want(t, http.StatusOK, nil)
		cl.as(tok).do("PUT", "/v1/acls/ls/local/x", map[string]any{"principal": "anyone", "perms": []string{"read"}}).
			want(t, http.StatusOK, nil)
	}
}

// TestRevokedWatchEnds: a stream whose principal loses read on the watched
// path ends with an error event, and shows nothing written after the
// revocation.
func TestRevokedWatchEnds(t *testing.T) {
	c := securedCell(t, 1)
	leader := newClient(t, c.URL(0))
	admin := leader.as(tokAdmin)
	admin.do("PUT", "/v1/acls/ls/local/shared", map[string]any{"principal": "teamB", "perms": []string{"read"}}).want(t, http.StatusOK, nil)
	stream := openSSE(t, c.URL(0)+"/v1/watch/ls/local/shared/doc", "Authorization", "Bearer "+tokTeamB)
	admin.do("PUT", "/v1/nodes/ls/local/shared/doc", map[string]string{"contents": "1"}).want(t, http.StatusCreated, nil)
	if evs := stream.events(1); evs[0].Type != "node_created" {
		t.Fatalf("events %s", types(evs))
	}
	admin.do("PUT", "/v1/acls/ls/local/shared", map[string]any{"principal": "teamB", "perms": []string{}}).want(t, http.StatusOK, nil)
	admin.do("PUT", "/v1/nodes/ls/local/shared/doc", map[string]string{"contents": "secret"}).want(t, http.StatusOK, nil)
	ev, err := stream.next()
	if err != nil || ev.Event != "error" || !strings.Contains(ev.Data, wire.CodePermissionDenied) {
		t.Fatalf("after the revocation: %+v %v", ev, err)
	}
	if _, err := stream.next(); err == nil {
		t.Fatal("the stream went on after the revocation")
	}
}
