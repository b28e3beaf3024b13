// Command lockd-health is the container health probe of the lockd image: it
// asks a replica's /healthz (by default the one in the same container) and
// exits 0 when the answer is 200 OK, 1 otherwise (2: bad usage). The image
// is built FROM scratch, with no shell or curl, so HEALTHCHECK runs this
// static binary.
//
// Usage:
//
//	lockd-health [--url http://127.0.0.1:7001/healthz] [--timeout 2s]
//	             [--ca FILE] [--cert FILE --key FILE] [--server-name NAME] [--insecure]
//
// Every flag has an environment default: LOCKD_HEALTH_URL, and for an https
// URL (a replica with tls configured) LOCKD_HEALTH_CA, LOCKD_HEALTH_CERT,
// LOCKD_HEALTH_KEY (defaulting to the replica's own LOCKD_TLS_CA_FILE,
// LOCKD_TLS_CERT_FILE and LOCKD_TLS_KEY_FILE: the client certificate that
// tls.client_auth asks for), LOCKD_HEALTH_SERVER_NAME (the name the
// replica's certificate is valid for, when the URL's host is not) and
// LOCKD_HEALTH_INSECURE=true (do not verify the replica's certificate; the
// probe sends no credentials and reads only the status).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

const defaultURL = "http://127.0.0.1:7001/healthz"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// probe is what to ask and how.
type probe struct {
	url, ca, cert, key, serverName string
	insecure                       bool
	timeout                        time.Duration
}

// run is the whole program: it returns the exit status.
func run(args []string, env func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("lockd-health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := func(names ...string) string {
		for _, n := range names {
			if v := env(n); v != "" {
				return v
			}
		}
		return ""
	}
	var p probe
	fs.StringVar(&p.url, "url", def("LOCKD_HEALTH_URL"), "health URL to GET; 200 means healthy (default "+defaultURL+")")
	fs.DurationVar(&p.timeout, "timeout", 2*time.Second, "give up after this long")
	fs.StringVar(&p.ca, "ca", def("LOCKD_HEALTH_CA", "LOCKD_TLS_CA_FILE"), "https: CA file to verify the replica with")
	fs.StringVar(&p.cert, "cert", def("LOCKD_HEALTH_CERT", "LOCKD_TLS_CERT_FILE"), "https: client certificate file")
	fs.StringVar(&p.key, "key", def("LOCKD_HEALTH_KEY", "LOCKD_TLS_KEY_FILE"), "https: client key file")
	fs.StringVar(&p.serverName, "server-name", def("LOCKD_HEALTH_SERVER_NAME"), "https: name to verify the replica's certificate for")
	insecure, _ := strconv.ParseBool(env("LOCKD_HEALTH_INSECURE"))
	fs.BoolVar(&p.insecure, "insecure", insecure, "https: do not verify the replica's certificate")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lockd-health: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if p.url == "" {
		p.url = defaultURL
	}
	if err := p.check(); err != nil {
		fmt.Fprintf(stderr, "lockd-health: %v\n", err)
		return 1
	}
	return 0
}

// check GETs the URL and reports anything but a 200 answer in time.
func (p probe) check() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if req.URL.Scheme == "https" {
		if tr.TLSClientConfig, err = p.tlsConfig(); err != nil {
			return err
		}
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", p.url, resp.Status, body)
	}
	return nil
}

func (p probe) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: p.serverName, InsecureSkipVerify: p.insecure} // only with --insecure
	if p.ca != "" && !p.insecure {
		pem, err := os.ReadFile(p.ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("no certificate in " + p.ca)
		}
	}
	if p.cert != "" || p.key != "" {
		c, err := tls.LoadX509KeyPair(p.cert, p.key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}
