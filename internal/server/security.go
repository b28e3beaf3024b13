package server

import (
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/lockd/lockd/api"
	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/lockservice"
)

// security is what a replica needs of the auth and TLS settings: the API's
// Auth, and the TLS material with the scheme of every client URL.
type security struct {
	auth   *api.Auth
	tls    *config.TLSMaterial
	scheme string // "http" or "https", for every replica's client URL
	// replicaToken is sent to the other replicas for /v1/cluster/self when
	// there is no TLS (with TLS, this replica's certificate does it).
	replicaToken string
}

// newSecurity resolves cfg's auth and TLS settings.
func newSecurity(cfg *config.Config) (*security, error) {
	sec := &security{scheme: "http", replicaToken: cfg.Auth.ReplicaToken}
	mat, err := cfg.LoadTLS()
	if err != nil {
		return nil, err
	}
	if mat != nil {
		sec.tls, sec.scheme = mat, "https"
	}
	a := &api.Auth{ReplicaToken: cfg.Auth.ReplicaToken, DefaultLimits: apiLimits(cfg.Auth.DefaultLimits)}
	if mat != nil {
		a.IsReplica = mat.IsReplicaConn
	}
	for _, t := range cfg.Auth.Tokens {
		sum, err := hex.DecodeString(t.SHA256)
		if err != nil || len(sum) != 32 {
			return nil, fmt.Errorf("auth.tokens %s: bad sha256", t.Name)
		}
		tok := api.Token{Name: t.Name, Admin: t.Admin, Limits: apiLimits(t.Limits)}
		copy(tok.SHA256[:], sum)
		a.Tokens = append(a.Tokens, tok)
	}
	for _, r := range cfg.Auth.ACL {
		perms, err := lockservice.ParsePerms(r.Perms)
		if err != nil {
			return nil, err
		}
		a.ACL = append(a.ACL, lockservice.ACLRule{Prefix: r.Prefix, Principal: r.Principal, Perms: perms})
	}
	sec.auth = a
	return sec, nil
}

func apiLimits(l *config.Limits) api.Limits {
	if l == nil {
		return api.Limits{}
	}
	return api.Limits{Sessions: l.Sessions, Waiters: l.Waiters, Watches: l.Watches,
		SessionCreatesPerS: l.SessionCreatesPerS, KeepAlivesPerS: l.KeepAlivesPerS, RequestsPerS: l.RequestsPerS}
}

// url is a replica's client URL.
func (sec *security) url(hostport string) string { return sec.scheme + "://" + hostport }

// peerTLS is the Paxos transport's mutual TLS configuration (nil: none).
func (sec *security) peerTLS() *tls.Config {
	if sec.tls == nil {
		return nil
	}
	return sec.tls.Peer()
}

// transport is the HTTP client transport for the other replicas' client
// API: leader forwarding and the status fan-out.
func (sec *security) transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	if sec.tls != nil {
		t.TLSClientConfig = sec.tls.Client()
	}
	return t
}

// warn logs, loudly, what runs without protection.
func (s *Server) warnInsecure() {
	cfg := &s.cfg
	client, peer, gossip := cfg.Listen()
	if open, why := cfg.Open(); open {
		switch why {
		case "disabled":
			s.log.Warn("!!! AUTHENTICATION IS DISABLED (auth.disabled): anyone who reaches " + client +
				" may read, write and lock everything and end every session !!!")
		default:
			s.log.Warn("!!! NO AUTHENTICATION: this cell runs OPEN on loopback " + client +
				" for local development; any local process may do everything. Configure auth.tokens (and tls) " +
				"before listening on any other address (README: \"Security: auth and TLS\") !!!")
		}
	}
	if cfg.TLS == nil && !config.IsLoopback(peer) {
		s.log.Warn("!!! NO TLS between replicas on " + peer + ": Paxos traffic is unauthenticated plaintext !!!")
	}
	if cfg.TLS == nil && cfg.Auth.Enabled() && !config.IsLoopback(client) {
		s.log.Warn("bearer tokens travel in plaintext: configure tls for the client API on " + client)
	}
	if cfg.GossipKey == "" && !config.IsLoopback(gossip) {
		s.log.Warn("gossip on " + gossip + " is not encrypted: set gossip_key (memberlist only gives liveness " +
			"hints, but a forged one misleads the dashboard)")
	}
}
