package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// TLSMaterial is a replica's certificate and the cell's CA, loaded from the
// files of Config.TLS, and the TLS configurations built from them.
type TLSMaterial struct {
	Cert tls.Certificate
	CA   *x509.CertPool
	// ReplicaHosts are the hosts of every replica's client and peer
	// addresses: a certificate of the cell CA valid for one of them is a
	// replica's.
	ReplicaHosts []string
	clientAuth   bool
}

// LoadTLS reads the files of c.TLS; nil, nil when TLS is not configured.
func (c *Config) LoadTLS() (*TLSMaterial, error) {
	if c.TLS == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: loading %s and %s: %w", c.TLS.CertFile, c.TLS.KeyFile, err)
	}
	pem, err := os.ReadFile(c.TLS.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: no PEM certificate in ca_file %s", c.TLS.CAFile)
	}
	m := &TLSMaterial{Cert: cert, CA: pool, clientAuth: c.TLS.ClientAuth}
	seen := map[string]bool{}
	for _, r := range c.Replicas {
		for _, addr := range []string{r.Client, r.Peer} {
			if host, _, err := net.SplitHostPort(addr); err == nil && !seen[host] {
				seen[host] = true
				m.ReplicaHosts = append(m.ReplicaHosts, host)
			}
		}
	}
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		self := c.Self()
		host, _, _ := net.SplitHostPort(self.Peer)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return nil, fmt.Errorf("tls: cert_file %s is not a certificate of ca_file %s for this replica's host %s: %w",
				c.TLS.CertFile, c.TLS.CAFile, host, err)
		}
	}
	return m, nil
}

// Server is the client API's server configuration: this replica's
// certificate; client certificates of the cell CA are required with
// client_auth and verified when given otherwise (replicas present theirs).
func (m *TLSMaterial) Server() *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if m.clientAuth {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{m.Cert},
		ClientCAs:    m.CA,
		ClientAuth:   auth,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// Client is the configuration a replica dials the others' client API with
// (leader forwarding, the cell status fan-out): the cell CA as roots, and
// its own certificate for client authentication.
func (m *TLSMaterial) Client() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      m.CA,
		Certificates: []tls.Certificate{m.Cert},
	}
}

// Peer is the mutual TLS configuration of the Paxos transport (TLS 1.3):
// both ends present a certificate of the cell CA, and it must be valid for
// one of the replicas' hosts, so a client certificate of the same CA cannot
// speak Paxos.
func (m *TLSMaterial) Peer() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.Cert},
		RootCAs:      m.CA,
		ClientCAs:    m.CA,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer presented no certificate")
			}
			if !m.IsReplica(cs.PeerCertificates[0]) {
				return fmt.Errorf("certificate %q is not valid for any replica host", cs.PeerCertificates[0].Subject.CommonName)
			}
			return nil
		},
	}
}

// IsReplica reports whether a certificate (already verified against the
// cell CA) is valid for one of the replicas' hosts.
func (m *TLSMaterial) IsReplica(cert *x509.Certificate) bool {
	for _, h := range m.ReplicaHosts {
		if cert.VerifyHostname(h) == nil {
			return true
		}
	}
	return false
}

// IsReplicaConn reports whether a TLS connection's verified client
// certificate is a replica's.
func (m *TLSMaterial) IsReplicaConn(cs *tls.ConnectionState) bool {
	if m == nil || cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return false
	}
	return m.IsReplica(cs.VerifiedChains[0][0])
}
