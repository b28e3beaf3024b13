package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/lockd/lockd/api"
	"github.com/lockd/lockd/api/apitest"
	"github.com/lockd/lockd/api/wire"
)

// TestOpenAPIMatchesRoutes walks echo's registered routes and the served
// OpenAPI document and fails if their paths and methods differ.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	cell := apitest.NewCell(t, 1)
	srv := cell.Server(0)

	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	newClient(t, cell.URL(0)).do("GET", "/v1/openapi.json", nil).want(t, http.StatusOK, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true, "trace": true}
	var documented []string
	for p, ops := range doc.Paths {
		for m := range ops {
			if methods[m] {
				documented = append(documented, strings.ToUpper(m)+" "+p)
			}
		}
	}
	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	var registered []string
	for _, r := range srv.Echo().Routes() {
		if r.Method == "echo_route_not_found" {
			continue
		}
		p := param.ReplaceAllString(r.Path, "{$1}")
		p = strings.Replace(p, "/*", "/{path}", 1)
		registered = append(registered, r.Method+" "+p)
	}
	sort.Strings(documented)
	sort.Strings(registered)
	if strings.Join(documented, "\n") != strings.Join(registered, "\n") {
		t.Errorf("OpenAPI and routes differ:\ndocumented:\n  %s\nregistered:\n  %s",
			strings.Join(documented, "\n  "), strings.Join(registered, "\n  "))
	}
	if len(registered) < 23 {
		t.Errorf("only %d routes", len(registered))
	}
	if string(api.OpenAPI()) == "" {
		t.Error("empty OpenAPI document")
	}
}

func TestOperatorRoutes(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	c := newClient(t, cell.URL(cell.Follower()))
	var st wire.Status
	c.do("GET", "/healthz", nil).want(t, http.StatusOK, &st)
	c.do("GET", "/readyz", nil).want(t, http.StatusOK, &st)
	var cl wire.Cluster
	c.do("GET", "/v1/cluster", nil).want(t, http.StatusOK, &cl)
	l := cell.Leader()
	if cl.Cell != "local" || cl.Leader != cell.ID(l) || cl.LeaderURL != cell.URL(l) || len(cl.Replicas) != 3 || !cl.Replicas[0].Up {
		t.Errorf("cluster %+v", cl)
	}
	var fl wire.Flow
	c.do("GET", "/v1/cluster/flow?since=0", nil).want(t, http.StatusOK, &fl)
	if len(fl.Messages) == 0 {
		t.Error("no flow messages")
	}
	c.do("GET", "/v1/cluster/flow?since=x", nil).wantError(t, http.StatusBadRequest, wire.CodeInvalidArgument)
	c.do("GET", "/metrics", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
	c.do("GET", "/ui/", nil).wantError(t, http.StatusNotFound, wire.CodeNotFound)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.Get(cell.URL(0) + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui answered %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
}

// TestOptionalHandlers: Metrics, UI and Ready, through the router.
func TestOptionalHandlers(t *testing.T) {
	cell := apitest.NewCell(t, 1)
	notReady := true
	srv := api.New(api.Options{
		Service: cell.Service(0), Self: "1",
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "lockd_up 1\n") }),
		UI:      http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ui:"+r.URL.Path) }),
		Ready: func() error {
			if notReady {
				return io.ErrUnexpectedEOF
			}
			return nil
		},
	})
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Header().Get(wire.HeaderIndex) == "" {
			t.Errorf("GET %s: no %s", path, wire.HeaderIndex)
		}
		return rec
	}
	if rec := get("/metrics"); rec.Code != 200 || rec.Body.String() != "lockd_up 1\n" {
		t.Errorf("metrics %d %q", rec.Code, rec.Body)
	}
	if rec := get("/ui/app.js"); rec.Code != 200 || rec.Body.String() != "ui:/app.js" {
		t.Errorf("ui %d %q", rec.Code, rec.Body)
	}
	if rec := get("/readyz"); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), wire.CodeUnavailable) {
		t.Errorf("readyz %d %s", rec.Code, rec.Body)
	}
	notReady = false
	if rec := get("/readyz"); rec.Code != 200 {
		t.Errorf("readyz %d %s", rec.Code, rec.Body)
	}
	// Without a Leader function this server knows no leader: writes are
	// no_leader unless the local service leads (it does: one replica).
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("PUT", "/v1/nodes/ls/local/direct", strings.NewReader(`{"contents": "x"}`)))
	if rec.Code != http.StatusCreated {
		t.Errorf("put through the router %d %s", rec.Code, rec.Body)
	}
	// A chunked body over the limit (no Content-Length).
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`{"contents": "`))
		pw.Write([]byte(strings.Repeat("a", wire.MaxBodyBytes)))
		pw.Close()
	}()
	req := httptest.NewRequest("PUT", "/v1/nodes/ls/local/direct", pr)
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), wire.CodeTooLarge) {
		t.Errorf("chunked huge body %d %s", rec.Code, rec.Body)
	}
}
