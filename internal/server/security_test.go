package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/internal/devcerts"
	"github.com/lockd/lockd/internal/testcell"
	"github.com/lockd/lockd/paxos"
	"github.com/lockd/lockd/paxos/tcptransport"
)

const adminToken = "process-admin-token-0123456789"

// secureCell starts five real replicas with TLS (client certificates
// required), a gossip key and an admin token.
func secureCell(t *testing.T) *testcell.Cell {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real cell")
	}
	key, err := config.NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	c := testcell.Start(t, testcell.Options{
		Auth: &config.Auth{Tokens: []config.Token{{Name: "admin", SHA256: config.HashToken(adminToken), Admin: true}},
			DefaultLimits: &config.Limits{SessionCreatesPerS: 50}},
		AdminToken: adminToken, TLS: true, ClientAuth: true, GossipKey: key, LogLevel: "debug",
	})
	c.WaitLeader(30 * time.Second)
	return c
}

// get does an authenticated GET with the cell's client and decodes JSON.
func get(t *testing.T, c *testcell.Cell, url string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	cl := c.HTTPClient()
	cl.Timeout = 5 * time.Second
	res, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if v != nil && res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return res.StatusCode
}

// put writes a node as the admin through replica id.
func put(c *testcell.Cell, id uint32, path, contents string) error {
	return putAs(c, id, path, contents, adminToken)
}

// putAs writes a node with token ("" for none) through replica id.
func putAs(c *testcell.Cell, id uint32, path, contents, token string) error {
	req, _ := http.NewRequest("PUT", c.Replica(id).URL()+"/v1/nodes"+path,
		strings.NewReader(fmt.Sprintf(`{"contents": %q}`, contents)))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	cl := c.HTTPClient()
	cl.Timeout = 10 * time.Second
	res, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("%d %s", res.StatusCode, b)
	}
	return nil
}

// maxPromisedRound is the highest ballot round any replica has promised.
func maxPromisedRound(t *testing.T, c *testcell.Cell, leader uint32) uint64 {
	t.Helper()
	v, err := c.Cluster(context.Background(), leader)
	if err != nil {
		t.Fatal(err)
	}
	var top uint64
	for _, r := range v.Replicas {
		round, _, _ := strings.Cut(r.PromisedBallot, ".")
		n, _ := strconv.ParseUint(round, 10, 64)
		top = max(top, n)
	}
	return top
}

// fakeReplica3 is a bare Paxos transport claiming to be replica 3, with
// the given certificate, that trusts the cell's CA.
func fakeReplica3(t *testing.T, c *testcell.Cell, certDir string) *tcptransport.Transport {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, devcerts.ReplicaCert(3)), filepath.Join(certDir, devcerts.ReplicaKey(3)))
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(c.CertDir(), devcerts.CACert))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	peers := map[paxos.NodeID]string{}
	for _, r := range c.Replicas {
		if r.ID != 3 {
			peers[paxos.NodeID(r.ID)] = r.Peer
		}
	}
	tr, err := tcptransport.New(tcptransport.Config{Self: 3, Cell: "local", Listen: "127.0.0.1:0", Peers: peers,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// hijack sends, for d, an empty Accept with a huge ballot from replica 3
// to every other replica: an acceptor that takes it promises that ballot
// and takes replica 3 for its leader.
func hijack(tr *tcptransport.Transport, c *testcell.Cell, d time.Duration) {
	b := paxos.Ballot{Round: 1 << 40, Node: 3}
	for end := time.Now().Add(d); time.Now().Before(end); {
		for _, r := range c.Replicas {
			if r.ID != 3 {
				tr.Send(paxos.Message{Type: paxos.MsgAccept, From: 3, To: paxos.NodeID(r.ID), Ballot: b})
			}
		}
		time.Sleep(50 * time.Millisecond) // pacing the attack
	}
}

func logsContain(c *testcell.Cell, ids []uint32, substr string) bool {
	for _, id := range ids {
		b, _ := os.ReadFile(c.Replica(id).LogPath)
		if strings.Contains(string(b), substr) {
			return true
		}
	}
	return false
}

// TestForeignCertificateCannotJoin runs a five-replica TLS cell, then a
// sixth process that claims to be replica 3 with a certificate of another
// CA, and a bare transport with such a certificate that sends Paxos
// messages: both are refused at the TLS handshake, and the cell goes on as
// before. A control run with a certificate of the cell's CA shows the same
// messages would have taken the cell's ballot.
func TestForeignCertificateCannotJoin(t *testing.T) {
	c := secureCell(t)
	leader := c.WaitLeader(30 * time.Second)
	if err := put(c, leader, "/ls/local/before", "1"); err != nil {
		t.Fatal(err)
	}
	foreign := t.TempDir()
	if err := devcerts.Generate(foreign, "local", []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	roundBefore := maxPromisedRound(t, c, leader)

	// A sixth process: replica 3 by its configuration, with the foreign
	// CA's certificate, on ports of its own.
	free := make([]string, 3)
	for i := range free {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		free[i] = ln.Addr().String()
		ln.Close()
	}
	imp := free[0]
	var specs []string
	for _, r := range c.Replicas {
		if r.ID == 3 {
			specs = append(specs, fmt.Sprintf("3=%s,%s,%s", free[0], free[1], free[2]))
			continue
		}
		specs = append(specs, fmt.Sprintf("%d=%s,%s,%s", r.ID, r.Client, r.Peer, r.Gossip))
	}
	otherKey, _ := config.NewGossipKey()
	cfg := map[string]any{"cell": "local", "id": 3, "data_dir": filepath.Join(t.TempDir(), "imp"), "log_level": "debug",
		"auth": map[string]any{"tokens": []map[string]any{{"name": "admin", "sha256": config.HashToken(adminToken), "admin": true}}},
		"tls": map[string]any{"cert_file": filepath.Join(foreign, devcerts.ReplicaCert(3)),
			"key_file": filepath.Join(foreign, devcerts.ReplicaKey(3)), "ca_file": filepath.Join(foreign, devcerts.CACert)},
		"gossip_key": otherKey,
	}
	data, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(t.TempDir(), "impostor.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(c.Dir(), "impostor.log")
	logf, _ := os.Create(logPath)
	cmd := exec.Command(testcell.Binary(t), "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "LOCKD_REPLICAS="+strings.Join(specs, ";"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("impostor log:\n%s", truncateTail(string(b), 6000))
		}
	})

	// A bare transport with a foreign certificate, trusting the cell's CA.
	fake := fakeReplica3(t, c, foreign)
	hijack(fake, c, 2*time.Second)

	others := []uint32{1, 2, 4, 5}
	deadline := time.Now().Add(10 * time.Second)
	for !logsContain(c, others, "tls handshake") || !logsContain(c, others, "refused peer connection") {
		if time.Now().After(deadline) {
			t.Fatal("no replica logged a refused TLS handshake")
		}
		time.Sleep(100 * time.Millisecond) // polling the logs with a deadline
	}
	if st := fake.Stats(); st.Sent != 0 || st.DialFailures == 0 {
		t.Fatalf("the foreign transport got through: %+v", st)
	}
	// The impostor never learns of a leader: it is not part of the cell.
	impClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for i := 0; i < 20; i++ {
		if res, err := impClient.Get("https://" + imp + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				t.Fatal("the impostor became ready: it joined the cell")
			}
		}
		time.Sleep(100 * time.Millisecond) // polling for a fixed window
	}
	// The cell is unaffected: same leader, no higher ballot, still writes.
	if l := c.WaitLeader(10 * time.Second); l != leader {
		t.Fatalf("leader changed from %d to %d", leader, l)
	}
	if r := maxPromisedRound(t, c, leader); r >= 1<<40 || r != roundBefore {
		t.Fatalf("promised round moved from %d to %d", roundBefore, r)
	}
	if err := put(c, leader, "/ls/local/after", "2"); err != nil {
		t.Fatal(err)
	}

	// Control: the same attack with a certificate of the cell's CA is
	// heard (which is why only the cell CA may sign replica certificates).
	trusted := fakeReplica3(t, c, c.CertDir())
	hijack(trusted, c, time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for maxPromisedRound(t, c, leader) < 1<<40 {
		if time.Now().After(deadline) {
			t.Fatalf("control: the cell CA's certificate was not heard either (%+v)", trusted.Stats())
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

// TestPlaintextToTLSPorts: plain HTTP to the client port gets a clean 400,
// plaintext to the peer port is closed at once, and a TLS client without a
// client certificate (client_auth) or trusting another CA fails its
// handshake; the right client gets in.
func TestPlaintextToTLSPorts(t *testing.T) {
	c := secureCell(t)
	r := c.Replica(1)

	plain := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	res, err := plain.Get("http://" + r.Client + "/healthz")
	switch {
	case err != nil:
		t.Logf("plain HTTP to the TLS port: %v (after %v)", err, time.Since(start))
	default:
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
			t.Fatalf("plain HTTP to the TLS port: %d %s", res.StatusCode, b)
		}
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("plain HTTP took %v to fail", time.Since(start))
	}

	conn, err := net.Dial("tcp", r.Peer)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("LOCKD hello from plaintext\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start = time.Now()
	if n, err := conn.Read(make([]byte, 512)); err == nil {
		// A TLS alert record is fine; then the connection must close.
		if _, err = conn.Read(make([]byte, 512)); err == nil {
			t.Fatalf("the peer port kept a plaintext connection open (%d bytes)", n)
		}
	}
	if time.Since(start) > 4*time.Second {
		t.Fatalf("the peer port took %v to close a plaintext connection", time.Since(start))
	}
	conn.Close()

	// Without a client certificate (client_auth), and trusting nothing.
	noCert := c.ClientTLS()
	noCert.Certificates = nil
	for name, cfg := range map[string]*tls.Config{"no client certificate": noCert, "unknown CA": {}} {
		cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		if res, err := cl.Get(r.URL() + "/healthz"); err == nil {
			res.Body.Close()
			t.Fatalf("%s: got %d", name, res.StatusCode)
		}
	}
	if code := get(t, c, r.URL()+"/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	// Tokens are still required over TLS.
	cl := c.HTTPClient()
	res, err = cl.Get(r.URL() + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token over TLS: %d", res.StatusCode)
	}
	var view testcell.ClusterView
	if code := get(t, c, r.URL()+"/v1/cluster", &view); code != http.StatusOK {
		t.Fatalf("cluster: %d", code)
	}
	up := 0
	for _, rep := range view.Replicas {
		if rep.Up {
			up++
		}
	}
	if up != 5 {
		t.Fatalf("the status fan-out over TLS sees %d replicas up: %+v", up, view.Replicas)
	}
	// Every replica forwards writes to the leader over HTTPS.
	for _, rep := range c.Replicas {
		if err := put(c, rep.ID, fmt.Sprintf("/ls/local/via/%d", rep.ID), "x"); err != nil {
			t.Fatalf("write through replica %d: %v", rep.ID, err)
		}
	}
}

// TestOpenTLSCellForwards: TLS without tokens (an open cell on loopback):
// a follower forwards with its replica certificate, which must not make
// the forwarded request the (powerless) replica principal.
func TestOpenTLSCellForwards(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cell")
	}
	c := testcell.Start(t, testcell.Options{TLS: true, Replicas: 3})
	leader := c.WaitLeader(30 * time.Second)
	for _, rep := range c.Replicas {
		if err := putAs(c, rep.ID, fmt.Sprintf("/ls/local/open/%d", rep.ID), "x", ""); err != nil {
			t.Fatalf("write through replica %d (leader %d): %v", rep.ID, leader, err)
		}
	}
}

func truncateTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
