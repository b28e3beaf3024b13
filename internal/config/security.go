package config

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/lockd/lockd/lockservice"
)

// Auth is the cell's authentication and authorization setting, the same
// file on every replica. With no tokens the cell runs open: allowed only
// when every listen address is loopback (the newcomer's local cell, with a
// loud warning), or when Disabled says so on purpose.
type Auth struct {
	// Disabled runs the cell without authentication (and, on non-loopback
	// addresses, without TLS between replicas) on purpose. Tokens must then
	// be empty.
	Disabled bool `json:"disabled,omitempty"`
	// Tokens are the principals and their bearer tokens, stored hashed.
	Tokens []Token `json:"tokens,omitempty"`
	// DefaultLimits apply to every principal for the fields its own Limits
	// leave at zero (and to everyone when the cell runs open).
	DefaultLimits *Limits `json:"default_limits,omitempty"`
	// ACL are bootstrap rules, in force on every replica from the start.
	// Rules set through the API (PUT /v1/acls/...) are replicated through
	// the log and take precedence over these for the same prefix and
	// principal.
	ACL []ACLRule `json:"acl,omitempty"`
	// ReplicaToken is a secret shared by the replicas, which they present
	// to each other for GET /v1/cluster/self (the cell status fan-out) when
	// TLS is not configured; with TLS they present their certificates. The
	// principal it authenticates may read that one route and nothing else.
	ReplicaToken string `json:"replica_token,omitempty"`
}

// Token is one principal: its name and the SHA-256 of its bearer token.
type Token struct {
	// Name is the principal, 1-64 characters of [A-Za-z0-9._-]. It is what
	// ACL rules name and what owns the sessions it creates.
	Name string `json:"name"`
	// SHA256 is the lowercase hex SHA-256 of the bearer token (HashToken).
	SHA256 string `json:"sha256"`
	// Admin principals may do everything everywhere: every node, every
	// session, ACLs, and the operator endpoints and dashboard data.
	Admin bool `json:"admin,omitempty"`
	// Limits override DefaultLimits field by field (0 keeps the default).
	Limits *Limits `json:"limits,omitempty"`
}

// Limits bound what one principal may hold and how fast it may ask. Zero
// means no limit.
type Limits struct {
	// Sessions alive at once (created by the principal).
	Sessions int `json:"sessions,omitempty"`
	// Waiters: queued lock waits of its sessions at once.
	Waiters int `json:"waiters,omitempty"`
	// Watches: open watch requests (streams and long-polls) on one replica.
	Watches int `json:"watches,omitempty"`
	// SessionCreatesPerS and KeepAlivesPerS are token-bucket rates (burst:
	// one second's worth, at least 1), per replica; every request of the
	// kind reaches the leader, so the leader's bucket bounds the cell.
	SessionCreatesPerS float64 `json:"session_creates_per_s,omitempty"`
	KeepAlivesPerS     float64 `json:"keepalives_per_s,omitempty"`
	// RequestsPerS bounds all the principal's requests, per replica.
	RequestsPerS float64 `json:"requests_per_s,omitempty"`
}

// ACLRule is a bootstrap ACL rule: Principal (a token name, or "*" for
// every authenticated principal) may do Perms ("read", "write", "lock",
// "admin") at Prefix (a node path of the cell) and below it.
type ACLRule struct {
	Prefix    string   `json:"prefix"`
	Principal string   `json:"principal"`
	Perms     []string `json:"perms"`
}

// TLS names the certificate files of this replica and the cell's CA. With
// it, the client API serves HTTPS, the replicas speak mutual TLS on the
// peer port (each must present a certificate of the cell CA valid for a
// replica's host) and reach each other's client API over HTTPS.
type TLS struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	CAFile   string `json:"ca_file"`
	// ClientAuth requires clients of the HTTP API to present a certificate
	// of the cell CA too (tokens are still required when auth is on).
	ClientAuth bool `json:"client_auth,omitempty"`
}

// Enabled reports whether the cell authenticates requests.
func (a *Auth) Enabled() bool { return len(a.Tokens) > 0 }

// HashToken returns the hex SHA-256 of a bearer token, as Token.SHA256
// stores it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a fresh random bearer token (32 random bytes, base64url)
// and its hash for the configuration.
func NewToken() (token, sha256Hex string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = "lockd_" + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// NewGossipKey returns a fresh random 32-byte memberlist key, base64.
func NewGossipKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// GossipKeyBytes decodes GossipKey ("" gives nil).
func (c *Config) GossipKeyBytes() ([]byte, error) {
	if c.GossipKey == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(c.GossipKey)
	if err != nil {
		return nil, fmt.Errorf("gossip_key is not standard base64: %w", err)
	}
	if n := len(k); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("gossip_key is %d bytes, want 16, 24 or 32", n)
	}
	return k, nil
}

// IsLoopback reports whether a listen address binds only loopback
// interfaces: a loopback IP or "localhost". An empty or unspecified host
// (all interfaces) and other names are not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Open reports whether the cell runs without authentication, and why:
// "loopback" (no tokens, every listen address loopback) or "disabled".
func (c *Config) Open() (bool, string) {
	switch {
	case c.Auth.Enabled():
		return false, ""
	case c.Auth.Disabled:
		return true, "disabled"
	}
	return true, "loopback"
}

// applySecurityEnv applies LOCKD_AUTH_DISABLED, LOCKD_GOSSIP_KEY and
// LOCKD_TLS_{CERT,KEY,CA}_FILE / LOCKD_TLS_CLIENT_AUTH.
func (c *Config) applySecurityEnv(env func(string) string) []error {
	var errs []error
	boolEnv := func(name string, dst *bool) {
		if v := env(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			*dst = b
		}
	}
	boolEnv("LOCKD_AUTH_DISABLED", &c.Auth.Disabled)
	if v := env("LOCKD_GOSSIP_KEY"); v != "" {
		c.GossipKey = v
	}
	files := map[string]*string{}
	if c.TLS == nil {
		c.TLS = &TLS{}
		defer func() {
			if *c.TLS == (TLS{}) {
				c.TLS = nil
			}
		}()
	}
	files["LOCKD_TLS_CERT_FILE"] = &c.TLS.CertFile
	files["LOCKD_TLS_KEY_FILE"] = &c.TLS.KeyFile
	files["LOCKD_TLS_CA_FILE"] = &c.TLS.CAFile
	for name, dst := range files {
		if v := env(name); v != "" {
			*dst = v
		}
	}
	boolEnv("LOCKD_TLS_CLIENT_AUTH", &c.TLS.ClientAuth)
	return errs
}

// validateSecurity adds the problems of auth, tls and gossip_key, and the
// newcomer rule: a listen address other than loopback needs auth (tokens,
// and TLS for the peer port) unless auth.disabled says to run open.
func (c *Config) validateSecurity(add func(string, ...any)) {
	a := &c.Auth
	names := map[string]bool{}
	for i, t := range a.Tokens {
		if err := lockservice.ValidatePrincipal(t.Name, false); err != nil {
			add("auth.tokens[%d] name %q: %v", i, t.Name, err)
		}
		if names[t.Name] {
			add("auth.tokens[%d]: principal %q listed twice", i, t.Name)
		}
		names[t.Name] = true
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			add("auth.tokens[%d] (%s): sha256 must be 64 hex digits, the SHA-256 of the token", i, t.Name)
		}
		checkLimits(add, fmt.Sprintf("auth.tokens[%d].limits", i), t.Limits)
	}
	checkLimits(add, "auth.default_limits", a.DefaultLimits)
	if a.Disabled && len(a.Tokens) > 0 {
		add("auth.disabled is set but auth.tokens are configured: remove one of them")
	}
	rules := make([]lockservice.ACLRule, 0, len(a.ACL))
	for i, r := range a.ACL {
		perms, err := lockservice.ParsePerms(r.Perms)
		if err != nil {
			add("auth.acl[%d]: %v", i, err)
			continue
		}
		if r.Principal != lockservice.Everyone && !names[r.Principal] {
			add("auth.acl[%d]: principal %q is not a configured token", i, r.Principal)
		}
		rules = append(rules, lockservice.ACLRule{Prefix: r.Prefix, Principal: r.Principal, Perms: perms})
	}
	if cellName.MatchString(c.Cell) {
		if _, err := lockservice.NewStaticACL(c.Cell, rules); err != nil {
			add("auth.acl: %v", err)
		}
	}
	if a.ReplicaToken != "" && len(a.ReplicaToken) < 16 {
		add("auth.replica_token must be at least 16 characters")
	}
	if t := c.TLS; t != nil {
		for name, f := range map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile, "ca_file": t.CAFile} {
			if f == "" {
				add("tls.%s must be set (tls needs cert_file, key_file and ca_file)", name)
			} else if _, err := os.Stat(f); err != nil {
				add("tls.%s: %v", name, err)
			}
		}
	}
	if _, err := c.GossipKeyBytes(); err != nil {
		add("%v", err)
	}
	if a.Enabled() && c.TLS == nil && a.ReplicaToken == "" {
		add("auth without tls needs auth.replica_token (a shared secret the replicas use for each other's " +
			"/v1/cluster/self); configure tls, or set replica_token")
	}
	if a.Disabled || len(c.Replicas) == 0 {
		return
	}
	client, peer, _ := c.Listen()
	if !a.Enabled() && client != "" && !IsLoopback(client) {
		add("client listen address %s is not loopback and no auth is configured: anyone who reaches it could "+
			"take every lock; configure auth.tokens (README, \"Security: auth and TLS\"), or set "+
			"\"auth\": {\"disabled\": true} to run open on purpose", client)
	}
	if c.TLS == nil && peer != "" && !IsLoopback(peer) {
		add("peer listen address %s is not loopback and tls is not configured: any host that reaches it could "+
			"speak Paxos for a replica; configure tls (a development CA: lockd certs), or set "+
			"\"auth\": {\"disabled\": true} to run open on purpose", peer)
	}
}

func checkLimits(add func(string, ...any), field string, l *Limits) {
	if l == nil {
		return
	}
	if l.Sessions < 0 || l.Waiters < 0 || l.Watches < 0 || l.SessionCreatesPerS < 0 || l.KeepAlivesPerS < 0 ||
		l.RequestsPerS < 0 {
		add("%s: limits must not be negative", field)
	}
}
