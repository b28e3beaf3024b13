package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lockd/lockd/internal/testcell"
)

// TestBadInputIsRefusedAndChangesNothing sends malformed and out-of-bounds
// requests to a follower and to the leader: each gets its stable error code
// and status, and the cell's state is the same afterwards.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{})
	leader := cell.WaitLeader(20 * time.Second)
	lurl := cell.Replica(leader).URL()
	furl := cell.Replica(leader%5 + 1).URL()

	sess := createSession(t, lurl, 30000, 0, "owner")
	other := createSession(t, lurl, 30000, 0, "other")
	if r := call(t, "POST", lurl+"/v1/locks/acquire", acquireBody(sess, "/ls/local/a/lock", 0, "x")); r.Status != 200 {
		t.Fatalf("acquire: %d %s", r.Status, r.Raw)
	}
	ended := createSession(t, lurl, 30000, 0, "ended")
	if r := call(t, "DELETE", lurl+"/v1/sessions/"+ended, nil); r.Status != http.StatusNoContent {
		t.Fatalf("end session: %d %s", r.Status, r.Raw)
	}
	if r := call(t, "PUT", lurl+"/v1/nodes/ls/local/a/file", map[string]any{"contents": "v1"}); r.Status != http.StatusCreated {
		t.Fatalf("put: %d %s", r.Status, r.Raw)
	}
	huge := `{"contents":"` + strings.Repeat("x", 600*1024) + `"}`
	big := `{"contents":"` + strings.Repeat("x", 300*1024) + `"}`

	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed json", "PUT", "/v1/nodes/ls/local/a/file", `{"contents": `, 400, "invalid_argument"},
		{"unknown field", "PUT", "/v1/nodes/ls/local/a/file", `{"contents":"x","colour":"red"}`, 400, "invalid_argument"},
		{"body over 512 KiB", "PUT", "/v1/nodes/ls/local/a/file", huge, 413, "too_large"},
		{"contents over 256 KiB", "PUT", "/v1/nodes/ls/local/a/file", big, 413, "too_large"},
		{"path outside the cell", "PUT", "/v1/nodes/ls/other/x", `{"contents":"x"}`, 400, "invalid_argument"},
		{"dot-dot segment", "PUT", "/v1/nodes/ls/local/a/../b", `{"contents":"x"}`, 400, "invalid_argument"},
		{"empty segment", "PUT", "/v1/nodes/ls/local/a//b", `{"contents":"x"}`, 400, "invalid_argument"},
		{"bad characters", "PUT", "/v1/nodes/ls/local/a/b%20c", `{"contents":"x"}`, 400, "invalid_argument"},
		{"relative lock path", "POST", "/v1/locks/acquire", map[string]any{"path": "ls/local/a", "session": sess}, 400, "invalid_argument"},
		{"unknown session", "POST", "/v1/locks/acquire", map[string]any{"path": "/ls/local/a/x", "session": "ffffffffffffffff"}, 404, "not_found"},
		{"ended session", "POST", "/v1/locks/acquire", map[string]any{"path": "/ls/local/a/x", "session": ended}, 410, "session_expired"},
		{"negative ttl", "POST", "/v1/sessions", `{"ttl_ms":-5}`, 400, "invalid_argument"},
		{"absurd ttl", "POST", "/v1/sessions", `{"ttl_ms":99999999999}`, 400, "invalid_argument"},
		{"absurd wait", "POST", "/v1/locks/acquire", map[string]any{"path": "/ls/local/a/x", "session": sess, "wait_ms": 10_000_000}, 400, "invalid_argument"},
		{"negative wait", "POST", "/v1/locks/acquire", map[string]any{"path": "/ls/local/a/x", "session": sess, "wait_ms": -1}, 400, "invalid_argument"},
		{"bad mode", "POST", "/v1/locks/acquire", map[string]any{"path": "/ls/local/a/x", "session": sess, "mode": "sideways"}, 400, "invalid_argument"},
		{"release not held", "POST", "/v1/locks/release", map[string]any{"path": "/ls/local/a/lock", "session": other, "generation": 1}, 409, "not_holder"},
		{"cas mismatch", "PUT", "/v1/nodes/ls/local/a/file", `{"contents":"v2","if_content_generation":7}`, 412, "precondition_failed"},
		{"create_only on existing", "PUT", "/v1/nodes/ls/local/a/file", `{"contents":"v2","create_only":true}`, 409, "already_exists"},
		{"delete non-empty dir", "DELETE", "/v1/nodes/ls/local/a", nil, 412, "precondition_failed"},
		{"keepalive unknown", "POST", "/v1/sessions/ffffffffffffffff/keepalive", nil, 404, "not_found"},
		{"garbled sequencer", "POST", "/v1/sequencers/check", `{"sequencer":"not-a-sequencer"}`, 400, "invalid_argument"},
		{"get missing", "GET", "/v1/nodes/ls/local/nope", nil, 404, "not_found"},
	}
	before := cellState(t, lurl)
	for _, base := range []string{furl, lurl} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s via %s", tc.name, strings.TrimPrefix(base, "http://")), func(t *testing.T) {
				r := call(t, tc.method, base+tc.path, tc.body)
				if r.Status != tc.status || r.code() != tc.code {
					t.Fatalf("got %d %q, want %d %q: %s", r.Status, r.code(), tc.status, tc.code, truncate(r.Raw))
				}
				if msg, _ := r.obj("error")["message"].(string); msg == "" {
					t.Fatalf("error without a message: %s", r.Raw)
				}
			})
		}
	}
	if after := cellState(t, lurl); after != before {
		t.Fatalf("bad input changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

// cellState is the observable state: sessions, locks and the node tree.
func cellState(t *testing.T, base string) string {
	t.Helper()
	var b strings.Builder
	sessions := call(t, "GET", base+"/v1/sessions", nil).Body["sessions"].([]any)
	for _, s := range sessions {
		m := s.(map[string]any)
		delete(m, "lease_remaining_ms")
		data, _ := json.Marshal(m)
		b.Write(data)
	}
	locks := call(t, "GET", base+"/v1/locks", nil).Body["locks"].([]any)
	for _, l := range locks {
		m := l.(map[string]any)
		delete(m, "lock_delay_remaining_ms")
		for _, w := range m["waiters"].([]any) {
			delete(w.(map[string]any), "waiting_ms")
		}
		data, _ := json.Marshal(m)
		b.Write(data)
	}
	var walk func(path string)
	walk = func(path string) {
		r := call(t, "GET", base+"/v1/nodes"+path+"?children=true", nil)
		data, _ := json.Marshal(r.Body["node"])
		b.Write(data)
		kids, _ := r.Body["children"].([]any)
		if kids == nil {
			kids, _ = r.obj("node")["children"].([]any)
		}
		for _, k := range kids {
			walk(path + "/" + k.(string))
		}
	}
	walk("/ls/local")
	return b.String()
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
