package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/internal/devcerts"
)

func certsCmd() *cobra.Command {
	var (
		dir   string
		cell  string
		hosts string
	)
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a development CA and certificates for a cell",
		Long: `Write a development certificate authority and, signed by it, one certificate
per replica (client API and mutual TLS between replicas) and one client
certificate for the CLI and SDK, into --dir. For development and tests; a real
deployment should use its own PKI.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var hs []string
			for _, h := range strings.Split(hosts, ",") {
				if h = strings.TrimSpace(h); h != "" {
					hs = append(hs, h)
				}
			}
			if len(hs) == 0 {
				return usageError{errors.New("--hosts must name at least one replica host")}
			}
			if err := devcerts.Generate(dir, cell, hs); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote a CA and %d replica certificates and a client certificate to %s\n", len(hs), dir)
			abs, _ := filepath.Abs(dir)
			fmt.Fprintf(out, "replica 1's \"tls\" setting:\n  {\"cert_file\": %q, \"key_file\": %q, \"ca_file\": %q}\n",
				filepath.Join(abs, devcerts.ReplicaCert(1)), filepath.Join(abs, devcerts.ReplicaKey(1)), filepath.Join(abs, devcerts.CACert))
			fmt.Fprintf(out, "clients: --ca %s --cert %s --key %s\n", filepath.Join(abs, devcerts.CACert),
				filepath.Join(abs, devcerts.ClientCert), filepath.Join(abs, devcerts.ClientKey))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "directory to write into")
	cmd.Flags().StringVar(&cell, "cell", "local", "cell name")
	cmd.Flags().StringVar(&hosts, "hosts", "127.0.0.1,127.0.0.1,127.0.0.1,127.0.0.1,127.0.0.1", "comma-separated host (IP or DNS name) of each replica, in id order")
	return cmd
}

func tokenCmd() *cobra.Command {
	var (
		name  string
		admin bool
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make a bearer token and the entry for the cell configuration",
		Long: `Print a fresh random bearer token (give it to the client) and the entry for
the "auth": {"tokens": [...]} list of every replica's configuration, which
holds only its SHA-256 hash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usageError{errors.New("--name is required")}
			}
			tok, hash, err := config.NewToken()
			if err != nil {
				return err
			}
			entry, _ := json.Marshal(map[string]any{"name": name, "sha256": hash, "admin": admin})
			fmt.Fprintf(cmd.OutOrStdout(), "token: %s\nconfig entry: %s\n", tok, entry)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "principal name")
	cmd.Flags().BoolVar(&admin, "admin", false, "grant every permission everywhere and the operator endpoints")
	return cmd
}

// tlsConfig builds the client TLS settings from --ca, --cert and --key.
func (f *clientFlags) tlsConfig() (*tls.Config, error) {
	if f.ca == "" && f.cert == "" && f.key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, usageError{fmt.Errorf("--ca: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageError{fmt.Errorf("--ca %s: no certificate in it", f.ca)}
		}
		cfg.RootCAs = pool
	}
	if (f.cert == "") != (f.key == "") {
		return nil, usageError{errors.New("--cert and --key go together")}
	}
	if f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, usageError{fmt.Errorf("--cert/--key: %w", err)}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
