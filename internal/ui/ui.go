// Package ui is lockd's operator dashboard: a few static files (HTML, CSS,
// JavaScript; no build step, nothing fetched from outside the replica)
// embedded in the binary. The page talks only to the replica that served it:
// it polls /v1/cluster, /v1/cluster/flow, /v1/sessions and /v1/locks and
// follows /v1/watch/ls/<cell> as Server-Sent Events.
//
// The assets are public; the data routes need an administrator when the
// cell has auth. On a 401 or 403 the page asks for a token, keeps it in
// sessionStorage (this tab only) and sends it as Authorization: Bearer on
// every request, the event stream included (read with fetch and a stream
// reader, since EventSource cannot send headers).
//
// Handler is meant for /ui/; every URL in the page is relative, and the API
// is reached as ../v1/..., so it also works behind a proxy that adds a
// prefix in front of both.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// contentTypes are set explicitly: the platform's MIME table may not know
// every extension, and the dashboard must not depend on it.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// csp allows only this origin: the page loads nothing from elsewhere and
// connects only to the replica it came from. Links to other replicas'
// dashboards are plain navigation, which the policy does not restrict.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard. Mount it at /ui/ (with or without
// http.StripPrefix): it serves index.html for the directory itself and the
// assets by name, and redirects /ui to /ui/ so relative URLs resolve.
func Handler() http.Handler {
	assets := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = http.DetectContentType(b)
		}
		sum := sha256.Sum256(b)
		assets[strings.TrimPrefix(p, "static/")] = asset{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("ui: reading embedded files: " + err.Error()) // cannot happen: the files are compiled in
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := assetName(r)
		if !ok {
			// The dashboard's own directory without its slash: relative
			// URLs would resolve one level up, so send the browser to dir/.
			dir := path.Base(strings.TrimSuffix(requestPath(r), "/"))
			if dir == "/" || dir == "." {
				dir = "ui"
			}
			// Relative on purpose (http.Redirect would make it absolute), so
			// a proxy prefix in front of /ui is kept.
			w.Header().Set("Location", dir+"/")
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		a, found := assets[name]
		if !found {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache") // revalidate: a new build is picked up at once
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if name == "index.html" {
			h.Set("Content-Security-Policy", csp)
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	})
}

// assetName maps the request to a file under static/. ok is false for the
// mount point itself without a trailing slash (/ui, or "" after
// StripPrefix("/ui")).
func assetName(r *http.Request) (string, bool) {
	p := r.URL.Path
	switch {
	case p == "" || p == "/ui":
		return "", false
	case strings.HasPrefix(p, "/ui/"):
		p = strings.TrimPrefix(p, "/ui")
	}
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		p = "index.html"
	}
	return p, true
}

func requestPath(r *http.Request) string {
	if i := strings.IndexAny(r.RequestURI, "?#"); i >= 0 {
		return r.RequestURI[:i]
	}
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.Path
}
