package api_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
)

// TestBadInput sends bad requests of every kind and checks the exact code
// and status of each, and that the machine is unchanged: its snapshot
// (applied index and clock included) is byte for byte the same. A single
// replica cell, so no election can write to the log meanwhile.
func TestBadInput(t *testing.T) {
	cell := apitest.NewCell(t, 1)
	c := newClient(t, cell.URL(0))
	live := c.newSession(wire.MaxTTLMs, 0, "live")
	gone := c.newSession(wire.MaxTTLMs, 0, "gone")
	c.do("DELETE", "/v1/sessions/"+gone.ID, nil).want(t, http.StatusNoContent, nil)
	g := c.grant(wire.AcquireRequest{Path: "/ls/local/held", Session: live.ID})
	other := c.newSession(wire.MaxTTLMs, 0, "other")
	c.do("PUT", "/v1/nodes/ls/local/dir/file", `{"contents": "x"}`).want(t, http.StatusCreated, nil)
	const unknown = "00000000000fffff"

	acq := func(fields string) string {
		return `{"path": "/ls/local/l", "session": "` + live.ID + `"` + fields + `}`
	}
	big := strings.Repeat("a", wire.MaxContentsBytes+1)
	gen := strconv.FormatUint(g.Generation, 10)

	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed json", "POST", "/v1/sessions", `{"ttl_ms":`, 400, wire.CodeInvalidArgument},
		{"not json", "POST", "/v1/locks/acquire", `path=/ls/local/x`, 400, wire.CodeInvalidArgument},
		{"not an object", "POST", "/v1/sessions", `[1, 2]`, 400, wire.CodeInvalidArgument},
		{"unknown field", "POST", "/v1/sessions", `{"ttl": 1000}`, 400, wire.CodeInvalidArgument},
		{"unknown field in put", "PUT", "/v1/nodes/ls/local/x", `{"content": "x"}`, 400, wire.CodeInvalidArgument},
		{"trailing data", "POST", "/v1/sessions", `{} {}`, 400, wire.CodeInvalidArgument},
		{"wrong type", "PUT", "/v1/nodes/ls/local/x", `{"dir": "yes"}`, 400, wire.CodeInvalidArgument},
		{"empty acquire body", "POST", "/v1/locks/acquire", ``, 400, wire.CodeInvalidArgument},
		{"huge body", "PUT", "/v1/nodes/ls/local/x", `{"contents": "` + strings.Repeat("a", wire.MaxBodyBytes) + `"}`, 413, wire.CodeTooLarge},
		{"huge keepalive body", "POST", "/v1/sessions/" + live.ID + "/keepalive", strings.Repeat(" ", wire.MaxBodyBytes+1), 413, wire.CodeTooLarge},
		{"contents too large", "PUT", "/v1/nodes/ls/local/x", `{"contents": "` + big + `"}`, 413, wire.CodeTooLarge},
		{"acquire contents too large", "POST", "/v1/locks/acquire", acq(`, "contents": "` + big + `"`), 413, wire.CodeTooLarge},
		{"contents and contents_b64", "PUT", "/v1/nodes/ls/local/x", `{"contents": "a", "contents_b64": "YQ=="}`, 400, wire.CodeInvalidArgument},
		{"bad base64", "PUT", "/v1/nodes/ls/local/x", `{"contents_b64": "%%%"}`, 400, wire.CodeInvalidArgument},
		{"dir with contents", "PUT", "/v1/nodes/ls/local/x", `{"dir": true, "contents": "a"}`, 400, wire.CodeInvalidArgument},
		{"ephemeral without session", "PUT", "/v1/nodes/ls/local/x", `{"ephemeral": true}`, 400, wire.CodeInvalidArgument},
		{"session without ephemeral", "PUT", "/v1/nodes/ls/local/x", `{"session": "` + live.ID + `"}`, 400, wire.CodeInvalidArgument},
		{"relative path", "PUT", "/v1/nodes/app/cfg", `{}`, 400, wire.CodeInvalidArgument},
		{"dot-dot segment", "PUT", "/v1/nodes/ls/local/a/../b", `{}`, 400, wire.CodeInvalidArgument},
		{"dot segment", "DELETE", "/v1/nodes/ls/local/./dir", ``, 400, wire.CodeInvalidArgument},
		{"empty segment", "PUT", "/v1/nodes/ls/local//x", `{}`, 400, wire.CodeInvalidArgument},
		{"trailing slash", "PUT", "/v1/nodes/ls/local/x/", `{}`, 400, wire.CodeInvalidArgument},
		{"other cell", "PUT", "/v1/nodes/ls/other/x", `{}`, 400, wire.CodeInvalidArgument},
		{"cell root", "PUT", "/v1/nodes/ls/local", `{"dir": true}`, 400, wire.CodeInvalidArgument},
		{"delete cell root", "DELETE", "/v1/nodes/ls/local", ``, 400, wire.CodeInvalidArgument},
		{"escaped byte", "PUT", "/v1/nodes/ls/local/a%20b", `{}`, 400, wire.CodeInvalidArgument},
		{"escaped slash", "DELETE", "/v1/nodes/ls/local/dir%2Ffile", ``, 400, wire.CodeInvalidArgument},
		{"long segment", "PUT", "/v1/nodes/ls/local/" + strings.Repeat("s", 256), `{}`, 400, wire.CodeInvalidArgument},
		{"long path", "PUT", "/v1/nodes/ls/local" + strings.Repeat("/abcdefgh", 120), `{}`, 400, wire.CodeInvalidArgument},
		{"acquire relative path", "POST", "/v1/locks/acquire", `{"path": "ls/local/x", "session": "` + live.ID + `"}`, 400, wire.CodeInvalidArgument},
		{"acquire dot-dot", "POST", "/v1/locks/acquire", `{"path": "/ls/local/../x", "session": "` + live.ID + `"}`, 400, wire.CodeInvalidArgument},
		{"acquire no path", "POST", "/v1/locks/acquire", `{"session": "` + live.ID + `"}`, 400, wire.CodeInvalidArgument},
		{"acquire no session", "POST", "/v1/locks/acquire", `{"path": "/ls/local/x"}`, 400, wire.CodeInvalidArgument},
		{"bad session id", "POST", "/v1/locks/acquire", `{"path": "/ls/local/x", "session": "no such!"}`, 400, wire.CodeInvalidArgument},
		{"long session id", "GET", "/v1/sessions/" + strings.Repeat("a", wire.MaxSessionIDBytes+1), ``, 400, wire.CodeInvalidArgument},
		{"unknown session acquire", "POST", "/v1/locks/acquire", `{"path": "/ls/local/x", "session": "` + unknown + `"}`, 404, wire.CodeNotFound},
		{"unknown session ephemeral", "PUT", "/v1/nodes/ls/local/x", `{"ephemeral": true, "session": "` + unknown + `"}`, 404, wire.CodeNotFound},
		{"unknown session release", "POST", "/v1/locks/release", `{"path": "/ls/local/held", "session": "` + unknown + `", "generation": 1}`, 404, wire.CodeNotFound},
		{"unknown session delete", "DELETE", "/v1/sessions/" + unknown, ``, 404, wire.CodeNotFound},
		{"unknown session keepalive", "POST", "/v1/sessions/" + unknown + "/keepalive", ``, 404, wire.CodeNotFound},
		{"expired session acquire", "POST", "/v1/locks/acquire", `{"path": "/ls/local/x", "session": "` + gone.ID + `", "wait_ms": 1000}`, 410, wire.CodeSessionExpired},
		{"expired session ephemeral", "PUT", "/v1/nodes/ls/local/x", `{"ephemeral": true, "session": "` + gone.ID + `"}`, 410, wire.CodeSessionExpired},
		{"expired session release", "POST", "/v1/locks/release", `{"path": "/ls/local/held", "session": "` + gone.ID + `", "generation": 1, "request_id": "r"}`, 410, wire.CodeSessionExpired},
		{"expired session delete", "DELETE", "/v1/sessions/" + gone.ID, ``, 410, wire.CodeSessionExpired},
		{"expired session keepalive", "POST", "/v1/sessions/" + gone.ID + "/keepalive", ``, 410, wire.CodeSessionExpired},
		{"negative ttl", "POST", "/v1/sessions", `{"ttl_ms": -1}`, 400, wire.CodeInvalidArgument},
		{"zero ttl", "POST", "/v1/sessions", `{"ttl_ms": 0}`, 400, wire.CodeInvalidArgument},
		{"short ttl", "POST", "/v1/sessions", `{"ttl_ms": 999}`, 400, wire.CodeInvalidArgument},
		{"long ttl", "POST", "/v1/sessions", `{"ttl_ms": 300001}`, 400, wire.CodeInvalidArgument},
		{"absurd ttl", "POST", "/v1/sessions", `{"ttl_ms": 1e30}`, 400, wire.CodeInvalidArgument},
		{"fractional ttl", "POST", "/v1/sessions", `{"ttl_ms": 1500.5}`, 400, wire.CodeInvalidArgument},
		{"negative lock delay", "POST", "/v1/sessions", `{"lock_delay_ms": -1}`, 400, wire.CodeInvalidArgument},
		{"long lock delay", "POST", "/v1/sessions", `{"lock_delay_ms": 60001}`, 400, wire.CodeInvalidArgument},
		{"negative pid", "POST", "/v1/sessions", `{"pid": -3}`, 400, wire.CodeInvalidArgument},
		{"control char label", "POST", "/v1/sessions", `{"label": "a\u0007b"}`, 400, wire.CodeInvalidArgument},
		{"negative wait", "POST", "/v1/locks/acquire", acq(`, "wait_ms": -1`), 400, wire.CodeInvalidArgument},
		{"long wait", "POST", "/v1/locks/acquire", acq(`, "wait_ms": 300001`), 400, wire.CodeInvalidArgument},
		{"absurd wait", "POST", "/v1/locks/acquire", acq(`, "wait_ms": 99999999999999999999`), 400, wire.CodeInvalidArgument},
		{"bad mode", "POST", "/v1/locks/acquire", acq(`, "mode": "sideways"`), 400, wire.CodeInvalidArgument},
		{"long request id", "POST", "/v1/locks/acquire", acq(`, "request_id": "` + strings.Repeat("r", wire.MaxRequestIDBytes+1) + `"`), 400, wire.CodeInvalidArgument},
		{"release not held", "POST", "/v1/locks/release", `{"path": "/ls/local/held", "session": "` + other.ID + `", "generation": ` + gen + `}`, 409, wire.CodeNotHolder},
		{"release wrong generation", "POST", "/v1/locks/release", `{"path": "/ls/local/held", "session": "` + live.ID + `", "generation": ` + strconv.FormatUint(g.Generation+1, 10) + `}`, 409, wire.CodeNotHolder},
		{"release never locked", "POST", "/v1/locks/release", `{"path": "/ls/local/nolock", "session": "` + live.ID + `", "generation": 1}`, 409, wire.CodeNotHolder},
		{"release negative generation", "POST", "/v1/locks/release", `{"path": "/ls/local/held", "session": "` + live.ID + `", "generation": -1}`, 400, wire.CodeInvalidArgument},
		{"keepalive with a body", "POST", "/v1/sessions/" + live.ID + "/keepalive", `{"ttl_ms": 5}`, 400, wire.CodeInvalidArgument},
		{"bad if_instance", "DELETE", "/v1/nodes/ls/local/dir/file?if_instance=abc", ``, 400, wire.CodeInvalidArgument},
		{"negative if_instance", "DELETE", "/v1/nodes/ls/local/dir/file?if_instance=-1", ``, 400, wire.CodeInvalidArgument},
		{"bad children", "GET", "/v1/nodes/ls/local/dir?children=maybe", ``, 400, wire.CodeInvalidArgument},
		{"bad stale", "GET", "/v1/nodes/ls/local/dir?stale=maybe", ``, 400, wire.CodeInvalidArgument},
		{"bad since", "GET", "/v1/watch/ls/local?since=-1", ``, 400, wire.CodeInvalidArgument},
		{"long watch wait", "GET", "/v1/watch/ls/local?wait_ms=300001", ``, 400, wire.CodeInvalidArgument},
		{"watch bad path", "GET", "/v1/watch/ls/local/../x", ``, 400, wire.CodeInvalidArgument},
		{"no sequencer", "POST", "/v1/sequencers/check", `{}`, 400, wire.CodeInvalidArgument},
		{"both sequencer forms", "POST", "/v1/sequencers/check", `{"sequencer": "` + g.Sequencer + `", "sequencers": []}`, 400, wire.CodeInvalidArgument},
		{"too many sequencers", "POST", "/v1/sequencers/check", `{"sequencers": [` + strings.Repeat(`"x",`, wire.MaxSequencersPerCheck) + `"x"]}`, 400, wire.CodeInvalidArgument},
		{"garbled sequencer", "POST", "/v1/sequencers/check", `{"sequencer": "v1:AAAA"}`, 400, wire.CodeInvalidArgument},
		{"no such route", "GET", "/v1/nothing", ``, 404, wire.CodeNotFound},
		{"wrong method", "PATCH", "/v1/nodes/ls/local/x", `{}`, 405, wire.CodeMethodNotAllowed},
	}
	m := cell.Machine(0)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, err := m.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			var body any
			if tc.body != "" {
				body = tc.body
			}
			e := c.do(tc.method, tc.path, body).wantError(t, tc.status, tc.code)
			t.Log(truncate(e.Message, 200))
			after, err := m.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("the machine changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	// And the state is as it was: the lock still held, the dir intact.
	if l := c.lock("/ls/local/held"); len(l.Holders) != 1 || l.Holders[0].Session != live.ID {
		t.Errorf("lock %+v", l)
	}
}
