package api_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/lockd/lockd/api/wire"
)

func TestNodeRoutes(t *testing.T) {
	cell, c := leaderClient(t, 3)

	// Create a file (parents made), then write it: 201, then 200, with
	// content_generation 1 then 2.
	var n wire.NodeResponse
	c.do("PUT", "/v1/nodes/ls/local/app/cfg", `{"contents": "v1"}`).want(t, http.StatusCreated, &n)
	if n.Node.Path != "/ls/local/app/cfg" || n.Node.Kind != wire.KindFile || n.Node.Contents == nil || *n.Node.Contents != "v1" ||
		n.Node.ContentsB64 != base64.StdEncoding.EncodeToString([]byte("v1")) || n.Node.ContentGeneration != 1 {
		t.Fatalf("created %+v", n.Node)
	}
	inst := n.Node.Instance
	c.do("PUT", "/v1/nodes/ls/local/app/cfg", `{"contents": "v2", "if_content_generation": 1}`).want(t, http.StatusOK, &n)
	if *n.Node.Contents != "v2" || n.Node.ContentGeneration != 2 || n.Node.Instance != inst {
		t.Fatalf("updated %+v", n.Node)
	}
	c.do("PUT", "/v1/nodes/ls/local/app/cfg", `{"contents": "v3", "if_content_generation": 1}`).
		wantError(t, http.StatusPreconditionFailed, wire.CodePreconditionFailed)
	c.do("PUT", "/v1/nodes/ls/local/app/cfg", `{"create_only": true}`).wantError(t, http.StatusConflict, wire.CodeAlreadyExists)
	c.do("PUT", "/v1/nodes/ls/local/app/none", `{"contents": "x", "if_content_generation": 1}`).
		wantError(t, http.StatusNotFound, wire.CodeNotFound)

	// Binary contents: only contents_b64.
	bin := []byte{0xff, 0x00, 0xfe}
	res := c.do("PUT", "/v1/nodes/ls/local/app/bin", wire.PutNodeRequest{ContentsB64: ptr(base64.StdEncoding.EncodeToString(bin))}).
		want(t, http.StatusCreated, nil)
	var raw map[string]map[string]any
	if err := json.Unmarshal(res.Body, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["node"]["contents"]; ok {
		t.Errorf("binary node has a contents field: %s", res.Body)
	}
	c.do("GET", "/v1/nodes/ls/local/app/bin", nil).want(t, http.StatusOK, &n)
	if n.Node.Contents != nil || n.Node.ContentsB64 != base64.StdEncoding.EncodeToString(bin) {
		t.Errorf("binary node %+v", n.Node)
	}

	// Directories: create, idempotent, children only when asked.
	c.do("PUT", "/v1/nodes/ls/local/app/sub", `{"dir": true}`).want(t, http.StatusCreated, &n)
	c.do("PUT", "/v1/nodes/ls/local/app/sub", `{"dir": true}`).want(t, http.StatusOK, &n)
	if n.Node.Kind != wire.KindDir {
		t.Errorf("dir %+v", n.Node)
	}
	c.do("GET", "/v1/nodes/ls/local/app", nil).want(t, http.StatusOK, &n)
	if n.Node.Children != nil {
		t.Errorf("children without ?children=true: %v", n.Node.Children)
	}
	c.do("GET", "/v1/nodes/ls/local/app?children=true", nil).want(t, http.StatusOK, &n)
	if want := []string{"bin", "cfg", "sub"}; len(n.Node.Children) != 3 || n.Node.Children[0] != want[0] || n.Node.Children[2] != want[2] {
		t.Errorf("children %v, want %v", n.Node.Children, want)
	}
	c.do("GET", "/v1/nodes/ls/local?children=true", nil).want(t, http.StatusOK, &n)
	if n.Node.Path != "/ls/local" || len(n.Node.Children) != 1 {
		t.Errorf("root %+v", n.Node)
	}

	// Ephemeral node owned by a session.
	s := c.newSession(10000, 0, "eph")
	c.do("PUT", "/v1/nodes/ls/local/app/eph", wire.PutNodeRequest{Contents: ptr("me"), Ephemeral: true, Session: s.ID}).
		want(t, http.StatusCreated, &n)
	if n.Node.EphemeralOwner != s.ID {
		t.Errorf("ephemeral owner %q", n.Node.EphemeralOwner)
	}
	var sr wire.SessionResponse
	c.do("GET", "/v1/sessions/"+s.ID, nil).want(t, http.StatusOK, &sr)
	if len(sr.Session.Ephemerals) != 1 || sr.Session.Ephemerals[0] != "/ls/local/app/eph" {
		t.Errorf("session ephemerals %v", sr.Session.Ephemerals)
	}
	c.do("DELETE", "/v1/sessions/"+s.ID, nil).want(t, http.StatusNoContent, nil)
	c.do("GET", "/v1/nodes/ls/local/app/eph", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)

	// A stale read on a follower, once it has caught up.
	f := newClient(t, cell.URL(cell.Follower()))
	idx := c.do("GET", "/v1/nodes/ls/local/app/cfg", nil).want(t, http.StatusOK, nil).index(t)
	cell.WaitApplied(idx)
	res = f.do("GET", "/v1/nodes/ls/local/app/cfg?stale=true", nil).want(t, http.StatusOK, &n)
	if *n.Node.Contents != "v2" || res.Header.Get(wire.HeaderReplica) == cell.ID(cell.Leader()) {
		t.Errorf("stale read %+v from replica %s", n.Node, res.Header.Get(wire.HeaderReplica))
	}

	// Delete: a non-empty directory is refused, a wrong instance too.
	c.do("DELETE", "/v1/nodes/ls/local/app", nil).wantError(t, http.StatusPreconditionFailed, wire.CodePreconditionFailed)
	c.do("DELETE", "/v1/nodes/ls/local/app/cfg?if_instance="+strconv.FormatUint(inst+100, 10), nil).
		wantError(t, http.StatusPreconditionFailed, wire.CodePreconditionFailed)
	c.do("DELETE", "/v1/nodes/ls/local/app/cfg?if_instance="+strconv.FormatUint(inst, 10), nil).want(t, http.StatusNoContent, nil)
	c.do("GET", "/v1/nodes/ls/local/app/cfg", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
	c.do("DELETE", "/v1/nodes/ls/local/app/cfg", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
	// Re-created: a new instance, content generation from 1.
	c.do("PUT", "/v1/nodes/ls/local/app/cfg", nil).want(t, http.StatusCreated, &n)
	if n.Node.Instance == inst || n.Node.ContentGeneration != 1 || *n.Node.Contents != "" {
		t.Errorf("re-created %+v", n.Node)
	}
}
