package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"status":"ok"}`) }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "recovering", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	noEnv := func(string) string { return "" }
	cases := []struct {
		name string
		args []string
		env  func(string) string
		want int
	}{
		{"200", []string{"--url", ok.URL}, noEnv, 0},
		{"503", []string{"--url", down.URL}, noEnv, 1},
		{"nothing listening", []string{"--url", "http://127.0.0.1:1/healthz", "--timeout", "1s"}, noEnv, 1},
		{"url from the environment", nil, func(k string) string {
			if k == "LOCKD_HEALTH_URL" {
				return ok.URL
			}
			return ""
		}, 0},
		{"stray argument", []string{"extra"}, noEnv, 2},
		{"unknown flag", []string{"--nope"}, noEnv, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.args, tc.env, io.Discard); got != tc.want {
				t.Fatalf("run(%q) = %d, want %d", tc.args, got, tc.want)
			}
		})
	}
}

// TestHTTPS: a replica with tls: verified with its CA, or not verified on
// purpose; an unknown authority is unhealthy; a replica that requires a
// client certificate gets the one given.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key, pair := selfSigned(t, dir)
	pool := x509.NewCertPool()
	pool.AddCert(pair.Leaf)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()
	noEnv := func(string) string { return "" }
	env := map[string]string{"LOCKD_TLS_CA_FILE": ca, "LOCKD_TLS_CERT_FILE": cert, "LOCKD_TLS_KEY_FILE": key}
	cases := []struct {
		name string
		args []string
		env  func(string) string
		want int
	}{
		{"verified, client certificate", []string{"--url", srv.URL, "--ca", ca, "--cert", cert, "--key", key}, noEnv, 0},
		{"the replica's own tls files", []string{"--url", srv.URL}, func(k string) string { return env[k] }, 0},
		{"insecure, client certificate", []string{"--url", srv.URL, "--insecure", "--cert", cert, "--key", key}, noEnv, 0},
		{"no client certificate", []string{"--url", srv.URL, "--ca", ca}, noEnv, 1},
		{"unknown authority", []string{"--url", srv.URL, "--cert", cert, "--key", key}, noEnv, 1},
		{"wrong server name", []string{"--url", srv.URL, "--ca", ca, "--cert", cert, "--key", key, "--server-name", "other"}, noEnv, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.args, tc.env, io.Discard); got != tc.want {
				t.Fatalf("run(%q) = %d, want %d", tc.args, got, tc.want)
			}
		})
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1, usable by
// server and client, as CA, certificate and key files.
func selfSigned(t *testing.T, dir string) (ca, cert, key string, pair tls.Certificate) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "replica"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, data := range map[string][]byte{ca: certPEM, cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if pair, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return ca, cert, key, pair
}
