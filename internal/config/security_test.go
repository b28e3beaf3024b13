package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func onAddress(c *Config, host string) {
	c.Replicas = []Replica{{ID: 1, Client: host + ":7001", Peer: host + ":7101", Gossip: host + ":7201"}}
}

func TestSecurityValidate(t *testing.T) {
	hash := HashToken("secret-token")
	files := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(files, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsFiles := &TLS{CertFile: filepath.Join(files, "c.pem"), KeyFile: filepath.Join(files, "k.pem"), CAFile: filepath.Join(files, "ca.pem")}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"open on loopback", func(*Config) {}, nil},
		{"open on localhost", func(c *Config) { onAddress(c, "localhost") }, nil},
		{"open on ::1", func(c *Config) { onAddress(c, "[::1]") }, nil},
		{"open on a LAN address", func(c *Config) { onAddress(c, "10.0.0.1") },
			[]string{"client listen address 10.0.0.1:7001 is not loopback", "peer listen address"}},
		{"open on all interfaces", func(c *Config) { c.ClientListen = "0.0.0.0:7001" }, []string{"0.0.0.0:7001 is not loopback"}},
		{"open on a name", func(c *Config) { c.ClientListen = "lockd.example:7001" }, []string{"not loopback"}},
		{"disabled on purpose", func(c *Config) { onAddress(c, "10.0.0.1"); c.Auth.Disabled = true }, nil},
		{"tokens and tls on a LAN", func(c *Config) {
			onAddress(c, "10.0.0.1")
			c.Auth.Tokens = []Token{{Name: "ops", SHA256: hash, Admin: true}}
			c.TLS = tlsFiles
		}, nil},
		{"tokens without tls on a LAN", func(c *Config) {
			onAddress(c, "10.0.0.1")
			c.Auth.Tokens = []Token{{Name: "ops", SHA256: hash}}
			c.Auth.ReplicaToken = "0123456789abcdef"
		}, []string{"peer listen address"}},
		{"tokens without tls or replica token", func(c *Config) { c.Auth.Tokens = []Token{{Name: "ops", SHA256: hash}} },
			[]string{"replica_token"}},
		{"bad tokens", func(c *Config) {
			c.Auth.Tokens = []Token{{Name: "a b", SHA256: "zz"}, {Name: "x", SHA256: hash}, {Name: "x", SHA256: hash,
				Limits: &Limits{Sessions: -1}}}
			c.Auth.ReplicaToken = "short"
		}, []string{"tokens[0] name", "sha256 must be", "listed twice", "must not be negative", "at least 16"}},
		{"disabled with tokens", func(c *Config) {
			c.Auth.Disabled = true
			c.Auth.Tokens = []Token{{Name: "x", SHA256: hash}}
			c.Auth.ReplicaToken = "0123456789abcdef"
		}, []string{"auth.disabled is set"}},
		{"bad acl", func(c *Config) {
			c.Auth.Tokens = []Token{{Name: "teamA", SHA256: hash}}
			c.Auth.ReplicaToken = "0123456789abcdef"
			c.Auth.ACL = []ACLRule{
				{Prefix: "/ls/local/teamA/", Principal: "teamA", Perms: []string{"read", "write", "lock"}},
				{Prefix: "/ls/local/x", Principal: "nobody", Perms: []string{"read"}},
				{Prefix: "/ls/other", Principal: "*", Perms: []string{"read"}},
				{Prefix: "/ls/local/y", Principal: "*", Perms: []string{"fly"}},
			}
		}, []string{"\"nobody\" is not a configured token", "/ls/other", "unknown permission"}},
		{"incomplete tls", func(c *Config) { c.TLS = &TLS{CertFile: tlsFiles.CertFile, CAFile: "/nonexistent/ca.pem"} },
			[]string{"tls.key_file must be set", "tls.ca_file"}},
		{"bad gossip key", func(c *Config) { c.GossipKey = base64.StdEncoding.EncodeToString([]byte("short")) },
			[]string{"gossip_key is 5 bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSecurityEnvAndHelpers(t *testing.T) {
	env := map[string]string{"LOCKD_AUTH_DISABLED": "true", "LOCKD_TLS_CERT_FILE": "/c", "LOCKD_TLS_KEY_FILE": "/k",
		"LOCKD_TLS_CA_FILE": "/ca", "LOCKD_TLS_CLIENT_AUTH": "1", "LOCKD_GOSSIP_KEY": "a2V5"}
	c, err := Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !c.Auth.Disabled || c.TLS == nil || c.TLS.CAFile != "/ca" || !c.TLS.ClientAuth || c.GossipKey != "a2V5" {
		t.Fatalf("%+v %+v", c.Auth, c.TLS)
	}
	c, err = Load("", func(string) string { return "" })
	if err != nil || c.TLS != nil {
		t.Fatalf("tls set without its variables: %+v %v", c.TLS, err)
	}
	tok, sum, err := NewToken()
	if err != nil || HashToken(tok) != sum || len(sum) != 64 || !strings.HasPrefix(tok, "lockd_") {
		t.Fatal(tok, sum, err)
	}
	k, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	c.GossipKey = k
	if b, err := c.GossipKeyBytes(); err != nil || len(b) != 32 {
		t.Fatal(b, err)
	}
	if open, why := c.Open(); !open || why != "loopback" {
		t.Fatal(open, why)
	}
}
