package devcerts_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/internal/devcerts"
)

// material loads replica id's TLS material from dir for a cell of hosts.
func material(t *testing.T, dir string, id int, hosts []string) *config.TLSMaterial {
	t.Helper()
	c := config.Default()
	c.ID = uint32(id)
	c.DataDir = t.TempDir()
	for i, h := range hosts {
		port := 7001 + i
		c.Replicas = append(c.Replicas, config.Replica{ID: uint32(i + 1),
			Client: net.JoinHostPort(h, itoa(port)), Peer: net.JoinHostPort(h, itoa(port+100)), Gossip: net.JoinHostPort(h, itoa(port+200))})
	}
	c.TLS = &config.TLS{CertFile: filepath.Join(dir, devcerts.ReplicaCert(id)),
		KeyFile: filepath.Join(dir, devcerts.ReplicaKey(id)), CAFile: filepath.Join(dir, devcerts.CACert)}
	m, err := c.LoadTLS()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func itoa(n int) string { return strconv.Itoa(n) }

// handshake runs a TLS handshake over loopback TCP and returns both ends'
// errors (a TLS 1.3 server checks the client's certificate after the
// client's handshake returned, so both ends exchange a byte).
func handshake(server, client *tls.Config) (serr, cerr error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err, err
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(raw, server)
		err = s.Handshake()
		if err == nil {
			_, err = s.Read(make([]byte, 1))
		}
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		errc <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err, err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, client)
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = c.Write([]byte{1})
	}
	if cerr == nil {
		_, cerr = c.Read(make([]byte, 1))
	}
	if cerr != nil {
		raw.Close()
	}
	return <-errc, cerr
}

func TestGenerateFiveReplicaCell(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"}
	if err := devcerts.Generate(dir, "local", hosts); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{devcerts.CACert, devcerts.CAKey, devcerts.ClientCert, devcerts.ClientKey,
		devcerts.ReplicaCert(5), devcerts.ReplicaKey(5)} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(name, "key") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", name, st.Mode().Perm())
		}
	}
	r1, r2 := material(t, dir, 1, hosts), material(t, dir, 2, hosts)

	// Replicas speak mutual TLS with each other.
	cl := r2.Peer()
	cl.ServerName = "127.0.0.1"
	if serr, cerr := handshake(r1.Peer(), cl); serr != nil || cerr != nil {
		t.Fatalf("replica to replica: server %v, client %v", serr, cerr)
	}

	// The client certificate is of the CA but not a replica's: the peer
	// port refuses it.
	cc, err := tls.LoadX509KeyPair(filepath.Join(dir, devcerts.ClientCert), filepath.Join(dir, devcerts.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	if serr, _ := handshake(r1.Peer(), &tls.Config{Certificates: []tls.Certificate{cc}, RootCAs: r1.CA,
		ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}); serr == nil || !strings.Contains(serr.Error(), "not valid for any replica") {
		t.Fatalf("client certificate on the peer port: %v", serr)
	}
	// ... but the client API accepts it.
	if serr, cerr := handshake(r1.Server(), &tls.Config{Certificates: []tls.Certificate{cc}, RootCAs: r1.CA,
		ServerName: "127.0.0.1"}); serr != nil || cerr != nil {
		t.Fatalf("client certificate on the client API: %v %v", serr, cerr)
	}

	// A replica certificate of another CA is refused.
	foreign := t.TempDir()
	if err := devcerts.Generate(foreign, "local", hosts); err != nil {
		t.Fatal(err)
	}
	f3 := material(t, foreign, 3, hosts)
	fc := f3.Peer()
	fc.ServerName = "127.0.0.1"
	if serr, cerr := handshake(r1.Peer(), fc); serr == nil || cerr == nil {
		t.Fatalf("foreign CA accepted: server %v, client %v", serr, cerr)
	}
	// A replica refuses to load a certificate of another CA.
	c := config.Default()
	c.ID, c.Replicas = 1, []config.Replica{{ID: 1, Client: "127.0.0.1:1", Peer: "127.0.0.1:2", Gossip: "127.0.0.1:3"}}
	c.TLS = &config.TLS{CertFile: filepath.Join(foreign, devcerts.ReplicaCert(1)), KeyFile: filepath.Join(foreign, devcerts.ReplicaKey(1)),
		CAFile: filepath.Join(dir, devcerts.CACert)}
	if _, err := c.LoadTLS(); err == nil {
		t.Fatal("loaded a certificate of another CA")
	}
}

func TestGenerateHostsAndNames(t *testing.T) {
	dir := t.TempDir()
	if err := devcerts.Generate(dir, "prod", []string{"10.0.0.11", "lockd-2.example"}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, devcerts.ReplicaCert(2)), filepath.Join(dir, devcerts.ReplicaKey(2)))
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf == nil {
		t.Fatal("no leaf")
	}
	if pair.Leaf.VerifyHostname("lockd-2.example") != nil || pair.Leaf.VerifyHostname("127.0.0.1") != nil ||
		pair.Leaf.VerifyHostname("10.0.0.11") == nil {
		t.Fatalf("SANs: %v %v", pair.Leaf.DNSNames, pair.Leaf.IPAddresses)
	}
	if time.Until(pair.Leaf.NotAfter) < 300*24*time.Hour {
		t.Fatal("short validity")
	}
	if err := devcerts.Generate(dir, "prod", nil); err == nil {
		t.Fatal("no hosts accepted")
	}
}
