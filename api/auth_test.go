package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// Tokens of the secured test cell.
const (
	tokAdmin   = "admin-token-0123456789"
	tokTeamA   = "team-a-token-0123456789"
	tokTeamB   = "team-b-token-0123456789"
	tokNobody  = "nobody-token-0123456789"
	tokReplica = "replica-shared-secret-0123"
)

// securedCell starts a cell with four principals: admin (an administrator),
// teamA and teamB (read, write and lock on /ls/local/teamA and
// /ls/local/teamB by bootstrap rules) and nobody (no rule at all), and the
// replica token.
func securedCell(t *testing.T, replicas int) *apitest.Cell {
	t.Helper()
	return securedCellWith(t, apitest.Options{Replicas: replicas}, nil)
}

func securedCellWith(t *testing.T, opts apitest.Options, mutate func(*[]apitest.Token)) *apitest.Cell {
	t.Helper()
	toks := []apitest.Token{
		{Name: "admin", Token: tokAdmin, Admin: true},
		{Name: "teamA", Token: tokTeamA},
		{Name: "teamB", Token: tokTeamB},
		{Name: "nobody", Token: tokNobody},
	}
	if mutate != nil {
		mutate(&toks)
	}
	rw := lockservice.PermRead | lockservice.PermWrite | lockservice.PermLock
	opts.Auth = apitest.Tokens(toks,
		lockservice.ACLRule{Prefix: "/ls/local/teamA/", Principal: "teamA", Perms: rw},
		lockservice.ACLRule{Prefix: "/ls/local/teamB/", Principal: "teamB", Perms: rw},
	)
	opts.Auth.ReplicaToken = tokReplica
	return apitest.NewCellWith(t, opts)
}

// snapshots returns every running replica's machine snapshot.
func snapshots(t *testing.T, c *apitest.Cell) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < c.Replicas(); i++ {
		if m := c.Machine(i); m != nil {
			b, err := m.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

// settle makes every replica apply everything the leader has (the
// leader_changed record of its election included).
func settle(t *testing.T, c *apitest.Cell, admin *client) {
	t.Helper()
	r := admin.do("PUT", "/v1/nodes/ls/local/settle", map[string]string{"contents": "x"})
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("settle: %d %s", r.Status, r.Body)
	}
	c.WaitApplied(r.index(t))
}

type routeCase struct {
	method, path string
	body         any
	// under is the token of a principal that may not do this (default:
	// nobody, who has no rule and owns nothing).
	under string
}

// TestEveryRouteRefusesBadTokens sends every route, to the leader and to a
// follower, without a token, with a wrong one and with an under-privileged
// one: 401, 401, 403, and no replica's state changes at all.
func TestEveryRouteRefusesBadTokens(t *testing.T) {
	c := securedCell(t, 3)
	leader := newClient(t, c.LeaderURL())
	follower := newClient(t, c.URL(c.Follower()))
	admin, teamA := leader.as(tokAdmin), leader.as(tokTeamA)

	// Fixtures: teamA's session, node, lock and a sequencer, and a rule.
	sess := teamA.newSession(60_000, 0, "a")
	teamA.do("PUT", "/v1/nodes/ls/local/teamA/x", map[string]string{"contents": "v"}).want(t, http.StatusCreated, nil)
	g := teamA.grant(wire.AcquireRequest{Path: "/ls/local/teamA/l", Session: sess.ID})
	admin.do("PUT", "/v1/acls/ls/local/teamA/sub", map[string]any{"principal": "teamB", "perms": []string{"read"}}).
		want(t, http.StatusOK, nil)
	settle(t, c, admin)

	cases := []routeCase{
		{"POST", "/v1/sessions", map[string]any{}, tokReplica}, // any principal may open sessions; the replica may not
		{"GET", "/v1/sessions", nil, tokTeamA},
		{"GET", "/v1/sessions/" + sess.ID, nil, tokTeamB},
		{"DELETE", "/v1/sessions/" + sess.ID, nil, tokTeamB},
		{"POST", "/v1/sessions/" + sess.ID + "/keepalive", nil, tokTeamB},
		{"PUT", "/v1/nodes/ls/local/teamA/x", map[string]string{"contents": "w"}, ""},
		{"PUT", "/v1/nodes/ls/local/teamA/e", map[string]any{"ephemeral": true, "session": sess.ID}, tokTeamB},
		{"GET", "/v1/nodes/ls/local/teamA/x", nil, ""},
		{"DELETE", "/v1/nodes/ls/local/teamA/x", nil, ""},
		{"POST", "/v1/locks/acquire", map[string]any{"path": "/ls/local/teamA/m", "session": sess.ID}, ""},
		{"POST", "/v1/locks/release", map[string]any{"path": g.Path, "session": sess.ID, "generation": g.Generation}, ""},
		{"GET", "/v1/locks", nil, tokTeamA},
		{"GET", "/v1/locks/ls/local/teamA/l", nil, ""},
		{"POST", "/v1/sequencers/check", map[string]any{"sequencer": g.Sequencer}, ""},
		{"GET", "/v1/elections/ls/local/teamA/l", nil, ""},
		{"GET", "/v1/watch/ls/local/teamA?recursive=true&wait_ms=0", nil, ""},
		{"GET", "/v1/acls", nil, tokTeamA},
		{"GET", "/v1/acls/ls/local/teamA", nil, tokTeamA},
		{"PUT", "/v1/acls/ls/local/teamA", map[string]any{"principal": "nobody", "perms": []string{"read"}}, tokTeamA},
		{"DELETE", "/v1/acls/ls/local/teamA/sub?principal=teamB", nil, tokTeamA},
		{"GET", "/v1/cluster", nil, tokTeamA},
		{"GET", "/v1/cluster/flow", nil, tokTeamA},
		{"GET", "/v1/cluster/self", nil, tokTeamA},
		{"GET", "/metrics", nil, tokTeamA},
	}
	covered := map[string]bool{}
	for _, rc := range cases {
		covered[rc.method+" "+routePattern(rc.path)] = true
	}
	var missing []string
	for _, r := range c.Server(0).Echo().Routes() {
		key := r.Method + " " + r.Path
		if r.Method == "echo_route_not_found" || publicRoutes[key] {
			continue
		}
		if !covered[key] {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("routes not covered: %v", missing)
	}

	before, applied := snapshots(t, c), c.Machine(c.Leader()).AppliedIndex()
	for _, rc := range cases {
		for _, cl := range []*client{leader, follower} {
			name := fmt.Sprintf("%s %s via %s", rc.method, rc.path, cl.base)
			cl.do(rc.method, rc.path, rc.body).wantErrorNamed(t, name+" without a token", http.StatusUnauthorized, wire.CodeUnauthenticated)
			cl.as("not-a-token-of-this-cell").do(rc.method, rc.path, rc.body).
				wantErrorNamed(t, name+" with a wrong token", http.StatusUnauthorized, wire.CodeUnauthenticated)
			cl.do(rc.method, rc.path, rc.body, "Authorization", "Basic YWRtaW46YWRtaW4=").
				wantErrorNamed(t, name+" with basic auth", http.StatusUnauthorized, wire.CodeUnauthenticated)
			under := rc.under
			if under == "" {
				under = tokNobody
			}
			cl.as(under).do(rc.method, rc.path, rc.body).
				wantErrorNamed(t, name+" under-privileged", http.StatusForbidden, wire.CodePermissionDenied)
		}
	}
	after := snapshots(t, c)
	for i := range before {
		if !bytes.Equal(before[i], after[i]) {
			t.Fatalf("replica %d's state changed:\nbefore %s\nafter  %s", i, before[i], after[i])
		}
	}
	if a := c.Machine(c.Leader()).AppliedIndex(); a != applied {
		t.Fatalf("applied index moved from %d to %d", applied, a)
	}

	// Public routes answer without a token; the replica token reads
	// /v1/cluster/self.
	for _, p := range []string{"/healthz", "/readyz", "/v1/openapi.json"} {
		leader.do("GET", p, nil).want(t, http.StatusOK, nil)
	}
	if r := leader.do("GET", "/ui/", nil); r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden {
		t.Fatalf("dashboard assets refused: %d", r.Status)
	}
	leader.as(tokReplica).do("GET", "/v1/cluster/self", nil).want(t, http.StatusOK, nil)
	admin.do("GET", "/v1/cluster/self", nil).want(t, http.StatusOK, nil)

	// No such route, or another method: 401 without a token, then what
	// the router says.
	leader.do("GET", "/v1/nope", nil).wantError(t, http.StatusUnauthorized, wire.CodeUnauthenticated)
	leader.as(tokNobody).do("GET", "/v1/nope", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
	leader.as(tokNobody).do("PATCH", "/v1/cluster", nil).wantError(t, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)
}

var publicRoutes = map[string]bool{
	"GET /healthz": true, "GET /readyz": true, "GET /v1/openapi.json": true, "GET /ui": true, "GET /ui/*": true,
}

var sessionInURL = regexp.MustCompile(`^/v1/sessions/[0-9a-f]+`)

// routePattern maps a request path to its echo route pattern.
func routePattern(p string) string {
	p, _, _ = strings.Cut(p, "?")
	if sessionInURL.MatchString(p) {
		p = sessionInURL.ReplaceAllString(p, "/v1/sessions/:id")
	}
	for _, prefix := range []string{"/v1/nodes/", "/v1/locks/", "/v1/elections/", "/v1/watch/", "/v1/acls/"} {
		if strings.HasPrefix(p, prefix) && p != "/v1/locks/acquire" && p != "/v1/locks/release" {
			return prefix + "*"
		}
	}
	return p
}

func (r *response) wantErrorNamed(t testing.TB, name string, status int, code string) {
	t.Helper()
	var e wire.ErrorResponse
	if err := jsonInto(r.Body, &e); err != nil || r.Status != status || e.Error.Code != code {
		t.Fatalf("%s: got %d %s, want %d %s", name, r.Status, truncate(string(r.Body), 300), status, code)
	}
}

// TestTeamConfinedToItsPrefix: a token limited to /ls/local/teamA/ cannot
// read, write, lock or watch outside it, and does not see, in a recursive
// watch of its own prefix, events below a rule that takes read away.
func TestTeamConfinedToItsPrefix(t *testing.T) {
	c := securedCell(t, 3)
	leader := newClient(t, c.LeaderURL())
	admin, teamA := leader.as(tokAdmin), leader.as(tokTeamA)
	admin.do("PUT", "/v1/nodes/ls/local/teamB/x", map[string]string{"contents": "b"}).want(t, http.StatusCreated, nil)
	admin.do("PUT", "/v1/nodes/ls/local/top", map[string]string{"contents": "t"}).want(t, http.StatusCreated, nil)
	sess := teamA.newSession(60_000, 0, "a")

	// Inside: everything works (through a follower too).
	for _, cl := range []*client{teamA, newClient(t, c.URL(c.Follower())).as(tokTeamA)} {
		cl.do("PUT", "/v1/nodes/ls/local/teamA/cfg", map[string]string{"contents": "1"}).want(t, http.StatusCreated, nil)
		cl.do("GET", "/v1/nodes/ls/local/teamA/cfg", nil).want(t, http.StatusOK, nil)
		g := cl.grant(wire.AcquireRequest{Path: "/ls/local/teamA/lock", Session: sess.ID})
		cl.do("GET", "/v1/locks/ls/local/teamA/lock", nil).want(t, http.StatusOK, nil)
		cl.do("POST", "/v1/sequencers/check", map[string]any{"sequencer": g.Sequencer}).want(t, http.StatusOK, nil)
		cl.release(g.Path, sess.ID, g.Generation)
		cl.do("GET", "/v1/watch/ls/local/teamA?recursive=true&wait_ms=0", nil).want(t, http.StatusOK, nil)
		cl.do("DELETE", "/v1/nodes/ls/local/teamA/cfg", nil).want(t, http.StatusNoContent, nil)
	}

	// Outside: refused, whatever the operation.
	for _, path := range []string{"/ls/local/teamB/x", "/ls/local/top", "/ls/local", "/ls/local/teamAB", "/ls/local/teamB"} {
		u := strings.TrimPrefix(path, "/")
		for _, rq := range []struct {
			method, url string
			body        any
		}{
			{"GET", "/v1/nodes/" + u, nil},
			{"GET", "/v1/nodes/" + u + "?stale=true", nil},
			{"PUT", "/v1/nodes/" + u + "/new", map[string]string{"contents": "x"}},
			{"DELETE", "/v1/nodes/" + u, nil},
			{"POST", "/v1/locks/acquire", map[string]any{"path": path + "/l", "session": sess.ID}},
			{"POST", "/v1/locks/release", map[string]any{"path": path + "/l", "session": sess.ID, "generation": 1}},
			{"PUT", "/v1/nodes/" + u + "/eph", map[string]any{"ephemeral": true, "session": sess.ID}},
			{"GET", "/v1/locks/" + u, nil},
			{"GET", "/v1/elections/" + u, nil},
			{"GET", "/v1/watch/" + u + "?wait_ms=0", nil},
			{"GET", "/v1/watch/" + u + "?recursive=true&wait_ms=0", nil},
		} {
			if path == "/ls/local" && (rq.method == "DELETE" || strings.Contains(rq.url, "/v1/locks/") || strings.Contains(rq.url, "elections")) {
				continue // the root: invalid_argument for these, before authorization
			}
			teamA.do(rq.method, rq.url, rq.body).wantErrorNamed(t, rq.method+" "+rq.url, http.StatusForbidden, wire.CodePermissionDenied)
		}
	}
	// A sequencer of another team's lock cannot be checked.
	bs := leader.as(tokTeamB).newSession(60_000, 0, "b")
	bg := leader.as(tokTeamB).grant(wire.AcquireRequest{Path: "/ls/local/teamB/l", Session: bs.ID})
	teamA.do("POST", "/v1/sequencers/check", map[string]any{"sequencers": []string{bg.Sequencer}}).
		wantErrorNamed(t, "foreign sequencer", http.StatusForbidden, wire.CodePermissionDenied)

	// A rule below the prefix takes read away: the recursive watch of the
	// prefix does not show those events, long-poll or stream.
	admin.do("PUT", "/v1/acls/ls/local/teamA/private", map[string]any{"principal": "teamA", "perms": []string{}}).
		want(t, http.StatusOK, nil)
	from := admin.do("GET", "/v1/nodes/ls/local/teamA", nil).index(t)
	stream := openSSE(t, c.LeaderURL()+fmt.Sprintf("/v1/watch/ls/local/teamA?recursive=true&since=%d", from),
		"Authorization", "Bearer "+tokTeamA)
	defer stream.close()
	admin.do("PUT", "/v1/nodes/ls/local/teamA/private/k", map[string]string{"contents": "secret"}).want(t, http.StatusCreated, nil)
	admin.do("PUT", "/v1/nodes/ls/local/teamA/public", map[string]string{"contents": "p"}).want(t, http.StatusCreated, nil)
	var lp wire.WatchResponse
	teamA.do("GET", fmt.Sprintf("/v1/watch/ls/local/teamA?recursive=true&since=%d&wait_ms=5000", from), nil).
		want(t, http.StatusOK, &lp)
	for _, evs := range [][]wire.Event{lp.Events, stream.events(2)} {
		var seen []string
		for _, e := range evs {
			seen = append(seen, e.Type+" "+e.Path+" "+e.Child)
			// (child_added of "private" on teamA's own directory is
			// visible: reading a directory shows its children's names.)
			if strings.Contains(e.Path, "private") {
				t.Fatalf("teamA saw %s", e.Path)
			}
		}
		if len(evs) == 0 || !strings.Contains(strings.Join(seen, ","), "/ls/local/teamA/public") {
			t.Fatalf("teamA's watch missed its own events: %v", seen)
		}
	}
	teamA.do("GET", "/v1/nodes/ls/local/teamA/private/k", nil).wantErrorNamed(t, "denied subtree", http.StatusForbidden, wire.CodePermissionDenied)
}

// TestSessionOwnership: one principal cannot use, read or end another's
// session (so cannot release its locks); an administrator can.
func TestSessionOwnership(t *testing.T) {
	c := securedCell(t, 3)
	leader := newClient(t, c.LeaderURL())
	admin, teamA, teamB := leader.as(tokAdmin), leader.as(tokTeamA), leader.as(tokTeamB)
	sa := teamA.newSession(60_000, 0, "a")
	if sa.Principal != "teamA" {
		t.Fatalf("session principal %q", sa.Principal)
	}
	// teamB gets read, write and lock on teamA's prefix: the path allows
	// it, the session's owner does not.
	admin.do("PUT", "/v1/acls/ls/local/teamA", map[string]any{"principal": "teamB", "perms": []string{"read", "write", "lock"}}).
		want(t, http.StatusOK, nil)
	g := teamA.grant(wire.AcquireRequest{Path: "/ls/local/teamA/l", Session: sa.ID})
	settle(t, c, admin)
	before := snapshots(t, c)
	for _, rq := range []struct {
		method, url string
		body        any
	}{
		{"GET", "/v1/sessions/" + sa.ID, nil},
		{"POST", "/v1/sessions/" + sa.ID + "/keepalive", nil},
		{"DELETE", "/v1/sessions/" + sa.ID, nil},
		{"POST", "/v1/locks/release", map[string]any{"path": g.Path, "session": sa.ID, "generation": g.Generation}},
		{"POST", "/v1/locks/acquire", map[string]any{"path": "/ls/local/teamA/m", "session": sa.ID}},
		{"PUT", "/v1/nodes/ls/local/teamA/e", map[string]any{"ephemeral": true, "session": sa.ID}},
	} {
		teamB.do(rq.method, rq.url, rq.body).wantErrorNamed(t, "teamB "+rq.method+" "+rq.url, http.StatusForbidden, wire.CodePermissionDenied)
	}
	for i, after := range snapshots(t, c) {
		if !bytes.Equal(before[i], after) {
			t.Fatalf("a refused request changed replica %d's state", i)
		}
	}
	// The owner and an administrator may.
	teamA.do("POST", "/v1/sessions/"+sa.ID+"/keepalive", nil).want(t, http.StatusOK, nil)
	admin.do("GET", "/v1/sessions/"+sa.ID, nil).want(t, http.StatusOK, nil)
	var list wire.SessionsResponse
	admin.do("GET", "/v1/sessions", nil).want(t, http.StatusOK, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].Principal != "teamA" {
		t.Fatalf("sessions: %+v", list.Sessions)
	}
	admin.do("DELETE", "/v1/sessions/"+sa.ID, nil).want(t, http.StatusNoContent, nil)
	teamA.do("POST", "/v1/sessions/"+sa.ID+"/keepalive", nil).wantError(t, http.StatusGone, wire.CodeSessionExpired)
}
