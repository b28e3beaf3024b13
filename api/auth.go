package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// Authentication and authorization (see doc.go, "Security").

// Auth configures who may do what. A nil Options.Auth, or one without
// Tokens, runs the cell open: every request is the anonymous principal,
// which may do everything (DefaultLimits still apply to it).
type Auth struct {
	// Tokens are the principals and the SHA-256 of their bearer tokens.
	Tokens []Token
	// DefaultLimits apply to every principal for the limits its own Token
	// leaves at zero.
	DefaultLimits Limits
	// ACL are bootstrap rules from the configuration; the replicated rules
	// (PUT /v1/acls/...) take precedence for the same prefix and principal.
	ACL []lockservice.ACLRule
	// ReplicaToken, when set, is a bearer token that authenticates the
	// replica principal, which may read GET /v1/cluster/self only.
	ReplicaToken string
	// IsReplica, when set, reports whether a TLS connection's verified
	// client certificate is a replica's (the replica principal too).
	IsReplica func(*tls.ConnectionState) bool
}

// Token is one principal.
type Token struct {
	// Name is the principal ([A-Za-z0-9._-], at most 64 bytes).
	Name string
	// SHA256 is the SHA-256 of its bearer token.
	SHA256 [sha256.Size]byte
	// Admin may do everything everywhere, including the operator routes.
	Admin bool
	// Limits override DefaultLimits field by field (zero keeps it).
	Limits Limits
}

// principal is who sent a request.
type principal struct {
	name    string // "" for the anonymous principal of an open cell
	admin   bool   // a global administrator (admin token, or open cell)
	replica bool   // another replica: GET /v1/cluster/self only
	state   *principalState
}

func (p *principal) String() string {
	switch {
	case p.replica:
		return "the replica principal"
	case p.name == "":
		return "the anonymous principal"
	}
	return "principal " + p.name
}

// authState is the server's resolved Auth.
type authState struct {
	open         bool
	tokens       []tokenEntry
	static       lockservice.StaticACL
	replicaToken []byte
	isReplica    func(*tls.ConnectionState) bool
	anonymous    *principal
	replicaP     *principal
	names        map[string]bool
	byName       map[string]*principal
}

type tokenEntry struct {
	sum [sha256.Size]byte
	p   *principal
}

// newAuthState resolves opts (nil: open, no limits) for cell.
func newAuthState(cell string, a *Auth, now nowFunc) (*authState, error) {
	st := &authState{open: true, names: map[string]bool{}, byName: map[string]*principal{}}
	if a == nil {
		a = &Auth{}
	}
	st.anonymous = &principal{admin: true, state: newPrincipalState(a.DefaultLimits, now)}
	st.replicaP = &principal{name: ":replica", replica: true, state: newPrincipalState(Limits{}, now)}
	static, err := lockservice.NewStaticACL(cell, a.ACL)
	if err != nil {
		return nil, err
	}
	st.static = static
	if a.ReplicaToken != "" {
		st.replicaToken = []byte(a.ReplicaToken)
	}
	st.isReplica = a.IsReplica
	for _, t := range a.Tokens {
		if err := lockservice.ValidatePrincipal(t.Name, false); err != nil {
			return nil, fmt.Errorf("token %q: %w", t.Name, err)
		}
		if st.names[t.Name] {
			return nil, fmt.Errorf("token %q listed twice", t.Name)
		}
		st.names[t.Name] = true
		st.open = false
		p := &principal{name: t.Name, admin: t.Admin, state: newPrincipalState(a.DefaultLimits.over(t.Limits), now)}
		st.byName[t.Name] = p
		st.tokens = append(st.tokens, tokenEntry{sum: t.SHA256, p: p})
	}
	return st, nil
}

// byToken finds the principal of a bearer token. Every configured hash is
// compared in constant time, without stopping early.
func (a *authState) byToken(token string) *principal {
	sum := sha256.Sum256([]byte(token))
	var found *principal
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:]) == 1 {
			found = a.tokens[i].p
		}
	}
	if found == nil && a.replicaToken != nil && subtle.ConstantTimeCompare([]byte(token), a.replicaToken) == 1 {
		found = a.replicaP
	}
	return found
}

// Route classes: who may reach a route at all. Routes of classPath
// authorize in the handler, by node path or session owner.
type routeClass int

const (
	classAdmin   routeClass = iota // operator routes, and any route not listed
	classPublic                    // health, readiness, OpenAPI, dashboard assets
	classReplica                   // GET /v1/cluster/self: replicas and admins
	classPath                      // authorized by the handler
)

var routeClasses = map[string]routeClass{
	"GET /healthz":                    classPublic,
	"GET /readyz":                     classPublic,
	"GET /v1/openapi.json":            classPublic,
	"GET /ui":                         classPublic,
	"GET /ui/*":                       classPublic,
	"GET /v1/cluster/self":            classReplica,
	"GET /v1/cluster":                 classAdmin,
	"GET /v1/cluster/flow":            classAdmin,
	"GET /metrics":                    classAdmin,
	"GET /v1/sessions":                classAdmin,
	"GET /v1/locks":                   classAdmin,
	"GET /v1/acls":                    classAdmin,
	"POST /v1/sessions":               classPath,
	"GET /v1/sessions/:id":            classPath,
	"DELETE /v1/sessions/:id":         classPath,
	"POST /v1/sessions/:id/keepalive": classPath,
	"PUT /v1/nodes/*":                 classPath,
	"GET /v1/nodes/*":                 classPath,
	"DELETE /v1/nodes/*":              classPath,
	"POST /v1/locks/acquire":          classPath,
	"POST /v1/locks/release":          classPath,
	"GET /v1/locks/*":                 classPath,
	"POST /v1/sequencers/check":       classPath,
	"GET /v1/elections/*":             classPath,
	"GET /v1/watch/*":                 classPath,
	"PUT /v1/acls/*":                  classPath,
	"GET /v1/acls/*":                  classPath,
	"DELETE /v1/acls/*":               classPath,
}

// knownPatterns are the route patterns of routeClasses, any method.
var knownPatterns = func() map[string]bool {
	m := map[string]bool{}
	for k := range routeClasses {
		_, pattern, _ := strings.Cut(k, " ")
		m[pattern] = true
	}
	return m
}()

// classOf is the class of the request's route. No route at all (echo's
// 404: an empty pattern), or a listed route asked with another method
// (405), is classPath: authenticated, then answered by echo.
func classOf(c echo.Context) routeClass {
	method := c.Request().Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if cl, ok := routeClasses[method+" "+c.Path()]; ok {
		return cl
	}
	if c.Path() == "" || knownPatterns[c.Path()] {
		return classPath
	}
	return classAdmin
}

const principalKey = "lockd.principal"

// authenticate is the middleware that establishes the principal of every
// request (401 without a valid token) before the body is read, refuses
// routes the principal may not reach at all (403), and applies its request
// rate limit (429). The handlers then authorize by path and session owner
// before they propose or read anything.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		class := classOf(c)
		if class == classPublic {
			return next(c)
		}
		p, err := s.principalOf(c.Request())
		if err != nil {
			return err
		}
		c.Set(principalKey, p)
		switch {
		case p.replica && class != classReplica:
			return forbidden("%s may only read /v1/cluster/self", p)
		case class == classAdmin && !s.isAdmin(p):
			return forbidden("%s is not an administrator: %s %s needs the admin permission on %s",
				p, c.Request().Method, c.Path(), s.root())
		case class == classReplica && !p.replica && !s.isAdmin(p):
			return forbidden("%s is neither a replica nor an administrator", p)
		}
		if err := p.state.allowRequest(); err != nil {
			return err
		}
		return next(c)
	}
}

// principalOf authenticates a request: its bearer token, else a replica's
// client certificate; an open cell takes everyone as the anonymous admin.
func (s *Server) principalOf(r *http.Request) (*principal, error) {
	a := s.auth
	h := r.Header.Get(echo.HeaderAuthorization)
	if h == "" {
		if a.open {
			// Open: everyone is the anonymous administrator, replicas
			// (and requests they forward, which carry their certificate)
			// included.
			return a.anonymous, nil
		}
		if a.isReplica != nil && r.TLS != nil && a.isReplica(r.TLS) {
			return a.replicaP, nil
		}
		return nil, unauthenticated("no token: send Authorization: Bearer <token>")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, unauthenticated("the Authorization header must be \"Bearer <token>\"")
	}
	if p := a.byToken(token); p != nil {
		return p, nil
	}
	if a.open {
		// An open cell ignores tokens it does not know (clients configured
		// for a secured cell still work against a local one).
		return a.anonymous, nil
	}
	return nil, unauthenticated("the token is not valid for this cell")
}

// principalFrom returns the request's principal (set by authenticate; the
// anonymous one for public routes).
func (s *Server) principalFrom(c echo.Context) *principal {
	if p, ok := c.Get(principalKey).(*principal); ok {
		return p
	}
	return s.auth.anonymous
}

func (s *Server) root() string { return lockservice.PathPrefix + s.cell }

// isAdmin: a global administrator (admin token, open cell), or a principal
// with the admin permission on the cell root.
func (s *Server) isAdmin(p *principal) bool {
	if p.admin {
		return true
	}
	if p.replica {
		return false
	}
	return s.m.Permissions(p.name, s.root(), s.auth.static).Has(lockservice.PermAdmin)
}

// perms is what p may do at path.
func (s *Server) perms(p *principal, path string) lockservice.Perm {
	if p.admin {
		return lockservice.PermRead | lockservice.PermWrite | lockservice.PermLock | lockservice.PermAdmin
	}
	if p.replica {
		return 0
	}
	return s.m.Permissions(p.name, path, s.auth.static)
}

var permVerb = map[lockservice.Perm]string{
	lockservice.PermRead:  "read",
	lockservice.PermWrite: "write",
	lockservice.PermLock:  "lock",
	lockservice.PermAdmin: "administer",
}

// authorize refuses (permission_denied) unless the request's principal has
// every permission of need at path.
func (s *Server) authorize(c echo.Context, path string, need lockservice.Perm) error {
	p := s.principalFrom(c)
	if s.perms(p, path).Has(need) {
		return nil
	}
	var verbs []string
	for _, bit := range []lockservice.Perm{lockservice.PermRead, lockservice.PermWrite, lockservice.PermLock, lockservice.PermAdmin} {
		if need&bit != 0 {
			verbs = append(verbs, permVerb[bit])
		}
	}
	return forbidden("%s may not %s %s", p, strings.Join(verbs, " and "), path)
}

// owns reports whether p may use session sess: its creator, or an admin.
func (s *Server) owns(p *principal, sess lockservice.Session) bool {
	return !p.replica && (p.name == sess.Principal || s.isAdmin(p))
}

func unauthenticated(format string, args ...any) *Error {
	return newError(http.StatusUnauthorized, wire.CodeUnauthenticated, format, args...)
}

func forbidden(format string, args ...any) *Error {
	return newError(http.StatusForbidden, wire.CodePermissionDenied, format, args...)
}
