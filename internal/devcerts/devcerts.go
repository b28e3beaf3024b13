// Package devcerts makes a development certificate authority and the
// certificates of a cell signed by it: one per replica (for the client API
// and mutual TLS between replicas) and one client certificate for the CLI
// and SDK. Everything is ECDSA P-256. It is for development and tests; a
// real deployment should use its own PKI (the README says what the
// certificates need).
//
// Generate(dir, "prod", []string{"10.0.0.11", ..., "10.0.0.15"}) writes:
//
//	ca.pem, ca-key.pem              the CA (5 years)
//	replica-N.pem, replica-N-key.pem  replica N (1..len(hosts)): server and
//	                                client auth, SANs: its host, plus
//	                                localhost and 127.0.0.1 (397 days)
//	client.pem, client-key.pem      a client certificate (client auth only,
//	                                no host SANs, so it is never taken for a
//	                                replica's) (397 days)
//
// Keys are written 0600, certificates 0644. Existing files are replaced.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity of what Generate makes.
const (
	CAValidity   = 5 * 365 * 24 * time.Hour
	LeafValidity = 397 * 24 * time.Hour
)

// File names Generate writes in its directory.
const (
	CACert     = "ca.pem"
	CAKey      = "ca-key.pem"
	ClientCert = "client.pem"
	ClientKey  = "client-key.pem"
)

// ReplicaCert and ReplicaKey are the file names of replica id's certificate
// and key.
func ReplicaCert(id int) string { return fmt.Sprintf("replica-%d.pem", id) }

// ReplicaKey is the file name of replica id's key.
func ReplicaKey(id int) string { return fmt.Sprintf("replica-%d-key.pem", id) }

// Generate makes a CA for cell and certificates for len(hosts) replicas
// (replica i+1 at hosts[i], an IP address or a DNS name) and one client,
// and writes them to dir (created if missing).
func Generate(dir, cell string, hosts []string) error {
	if len(hosts) == 0 {
		return errors.New("devcerts: no replica hosts")
	}
	if cell == "" {
		return errors.New("devcerts: no cell name")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "lockd development CA (cell " + cell + ")", Organization: []string{"lockd"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := write(dir, CACert, CAKey, caDER, caKey); err != nil {
		return err
	}
	for i, h := range hosts {
		if h == "" {
			return fmt.Errorf("devcerts: replica %d has no host", i+1)
		}
		tmpl := leaf(now, fmt.Sprintf("lockd replica %d (cell %s)", i+1, cell),
			x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
		addSAN(tmpl, h)
		addSAN(tmpl, "localhost")
		addSAN(tmpl, "127.0.0.1")
		if err := issue(dir, ReplicaCert(i+1), ReplicaKey(i+1), tmpl, ca, caKey); err != nil {
			return err
		}
	}
	tmpl := leaf(now, "lockd client (cell "+cell+")", x509.ExtKeyUsageClientAuth)
	return issue(dir, ClientCert, ClientKey, tmpl, ca, caKey)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("devcerts: no randomness: " + err.Error())
	}
	return n
}

func leaf(now time.Time, cn string, usages ...x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"lockd"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(LeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
	}
}

func addSAN(t *x509.Certificate, host string) {
	if ip := net.ParseIP(host); ip != nil {
		for _, have := range t.IPAddresses {
			if have.Equal(ip) {
				return
			}
		}
		t.IPAddresses = append(t.IPAddresses, ip)
		return
	}
	for _, have := range t.DNSNames {
		if have == host {
			return
		}
	}
	t.DNSNames = append(t.DNSNames, host)
}

func issue(dir, certName, keyName string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return write(dir, certName, keyName, der, key)
}

func write(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	keyPath := filepath.Join(dir, keyName)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(keyPath, 0o600); err != nil { // an older file keeps its mode otherwise
		return err
	}
	return os.WriteFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
