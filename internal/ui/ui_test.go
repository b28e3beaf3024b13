package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

func get(t *testing.T, h http.Handler, method, target string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServesAssetsWithContentTypes(t *testing.T) {
	mounted := Handler()                           // e.GET("/ui/*", echo.WrapHandler(ui.Handler()))
	stripped := http.StripPrefix("/ui", Handler()) // or behind StripPrefix
	for _, h := range []http.Handler{mounted, stripped} {
		for _, c := range []struct{ path, ctype, contains string }{
			{"/ui/", "text/html; charset=utf-8", "<title>lockd dashboard</title>"},
			{"/ui/index.html", "text/html; charset=utf-8", `id="leader-id"`},
			{"/ui/app.js", "text/javascript; charset=utf-8", "pollCluster"},
			{"/ui/flow.js", "text/javascript; charset=utf-8", "LockdFlow"},
			{"/ui/style.css", "text/css; charset=utf-8", ".replica"},
			{"/ui/favicon.svg", "image/svg+xml", "<svg"},
		} {
			r := get(t, h, http.MethodGet, c.path)
			if r.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d", c.path, r.StatusCode)
			}
			if got := r.Header.Get("Content-Type"); got != c.ctype {
				t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.ctype)
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no nosniff", c.path)
			}
			if b := body(t, r); !strings.Contains(b, c.contains) {
				t.Errorf("GET %s: body lacks %q", c.path, c.contains)
			}
		}
		if r := get(t, h, http.MethodGet, "/ui/nope.js"); r.StatusCode != http.StatusNotFound {
			t.Errorf("missing asset: %d", r.StatusCode)
		}
	}
}

func TestIndexPolicyAndCaching(t *testing.T) {
	h := Handler()
	r := get(t, h, http.MethodGet, "/ui/")
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") ||
		!strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP = %q", csp)
	}
	etag := r.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if r := get(t, h, http.MethodGet, "/ui/", "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: %d, want 304", r.StatusCode)
	}
	if r := get(t, h, http.MethodHead, "/ui/app.js"); r.StatusCode != http.StatusOK {
		t.Errorf("HEAD: %d", r.StatusCode)
	}
	if r := get(t, h, http.MethodPost, "/ui/"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", r.StatusCode)
	}
}

func TestRedirectsMountPointToSlash(t *testing.T) {
	for _, h := range []http.Handler{Handler(), http.StripPrefix("/ui", Handler())} {
		r := get(t, h, http.MethodGet, "/ui")
		if r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "ui/" {
			t.Errorf("GET /ui: %d Location %q, want 301 ui/", r.StatusCode, r.Header.Get("Location"))
		}
	}
}

// TestOnlyLocalAssets: every URL index.html loads is relative and served
// by the handler; no script or style reaches outside the replica.
func TestOnlyLocalAssets(t *testing.T) {
	h := Handler()
	doc, err := html.Parse(strings.NewReader(body(t, get(t, h, http.MethodGet, "/ui/"))))
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key == "src" || a.Key == "href" || a.Key == "srcset" || a.Key == "action" {
					refs = append(refs, a.Val)
				}
			}
			if n.Data == "style" || (n.Data == "script" && attr(n, "src") == "") {
				t.Errorf("inline <%s> (the CSP forbids it)", n.Data)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(refs) < 4 {
		t.Fatalf("found only %d references: %v", len(refs), refs)
	}
	for _, ref := range refs {
		if strings.Contains(ref, ":") || strings.HasPrefix(ref, "/") {
			t.Errorf("non-local or absolute reference %q", ref)
			continue
		}
		if r := get(t, h, http.MethodGet, "/ui/"+ref); r.StatusCode != http.StatusOK {
			t.Errorf("reference %q: %d", ref, r.StatusCode)
		}
	}
	// Scripts and styles name no outside URL (the SVG namespace is a name,
	// not a fetch) and reach the API relatively (../v1/..., via BASE).
	external := regexp.MustCompile(`(https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
	for _, f := range []string{"app.js", "flow.js", "style.css"} {
		b := body(t, get(t, h, http.MethodGet, "/ui/"+f))
		for _, m := range external.FindAllString(b, -1) {
			if m != "http://www.w3.org" {
				t.Errorf("%s references %q", f, m)
			}
		}
		if strings.Contains(b, "@import") || strings.Contains(b, `"/v1/`) || strings.Contains(b, "'/v1/") {
			t.Errorf("%s has an @import or an absolute API path", f)
		}
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// TestStableTestHooks guards the ids and data attributes browser tests use.
func TestStableTestHooks(t *testing.T) {
	h := Handler()
	page := body(t, get(t, h, http.MethodGet, "/ui/"))
	for _, id := range []string{"leader-id", "ballot", "lease-remaining", "cell-name", "self-id", "replicas",
		"unreachable-banner", "other-replicas", "sessions-table", "locks-table", "events-list", "flow-view",
		"flow-ballots", "flow-slots"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("index.html lacks #%s", id)
		}
	}
	app := body(t, get(t, h, http.MethodGet, "/ui/app.js"))
	for _, s := range []string{`"data-replica"`, `"data-role"`, `"data-up"`, `"data-self"`, `"data-session"`,
		`"data-lock"`, `"data-type"`, `"data-replica-link"`, `"Last-Event-ID"`} {
		if !strings.Contains(app, s) {
			t.Errorf("app.js lacks %s", s)
		}
	}
}
