// Package testcell runs a real lockd cell for tests: the lockd binary, built
// once per test process, started as N processes on 127.0.0.1 with their own
// data directories and ports. Tests can SIGKILL, SIGSTOP/SIGCONT, restart and
// wipe replicas. Every process, port and directory is cleaned up with the
// test.
package testcell

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/internal/devcerts"
)

// TB is the part of testing.TB the cell uses. *testing.T and *testing.B
// satisfy it; a long-running command can pass its own (Fatal must not
// return: panic or runtime.Goexit).
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

var _ TB = testing.TB(nil)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the lockd command once per test process and returns its
// path. Every test process shares one file per build flavour (race or not)
// under the temporary directory, replaced by an atomic rename (a running
// replica keeps its own copy), so test runs leave no binaries behind.
func Binary(tb TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "lockd-testcell")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		name := "lockd"
		if raceEnabled {
			name = "lockd-race"
		}
		binPath = filepath.Join(dir, name)
		tmp := fmt.Sprintf("%s.%d.tmp", binPath, os.Getpid())
		args := []string{"build", "-o", tmp}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/lockd/lockd/cmd/lockd")
		cmd := exec.Command("go", args...)
		cmd.Dir = moduleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			os.Remove(tmp)
			buildErr = fmt.Errorf("building lockd: %v\n%s", err, out)
			return
		}
		if err := os.Rename(tmp, binPath); err != nil {
			os.Remove(tmp)
			buildErr = err
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Options shape a cell.
type Options struct {
	Replicas int    // default 5
	Cell     string // default "local"
	// TickMs etc. override the replicas' timing; zero keeps the defaults.
	TickMs         int
	SessionGraceMs int
	SnapshotEvery  uint64
	// ExtraEnv is added to every replica's environment.
	ExtraEnv []string
	// Binary is a lockd executable to run instead of building one.
	Binary string
	// LogLevel of the replicas; default "debug".
	LogLevel string
	// Auth is written as every replica's "auth" setting (nil: an open
	// cell on loopback). AdminToken, when set, is the bearer token the
	// cell's own helpers (Cluster, WaitLeader) send.
	Auth       *config.Auth
	AdminToken string
	// TLS makes a development CA and certificates (internal/devcerts) under
	// the cell's directory and turns TLS on: HTTPS client API and mutual
	// TLS between replicas. ClientAuth also requires client certificates
	// (HTTPClient presents the CA's client certificate).
	TLS        bool
	ClientAuth bool
	// GossipKey is every replica's gossip_key ("" for none).
	GossipKey string
	// Addresses, if set, gives each replica its own view of the others:
	// replica self's LOCKD_REPLICAS entry for other gets these client and
	// peer addresses instead of other's real ones (say, a fault-injecting
	// proxy in front of other). It is asked at every (re)start of self. A
	// replica's own entry always holds its real addresses.
	Addresses func(self, other *Replica) (client, peer string)
}

// Replica is one lockd process of the cell.
type Replica struct {
	ID      uint32
	Client  string // host:port
	Peer    string
	Gossip  string
	DataDir string
	LogPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	scheme string // "http", or "https" with Options.TLS
}

// URL is the replica's client base URL.
func (r *Replica) URL() string {
	if r.scheme == "" {
		return "http://" + r.Client
	}
	return r.scheme + "://" + r.Client
}

// Running reports whether the process is alive (maybe paused).
func (r *Replica) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return false
	}
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// Cell is a running cell.
type Cell struct {
	tb       TB
	opts     Options
	dir      string
	bin      string
	Replicas []*Replica

	transportOnce sync.Once
	transport     http.RoundTripper
}

// Start builds lockd and starts a fresh, bootstrapped cell.
func Start(tb TB, opts Options) *Cell {
	tb.Helper()
	if opts.Replicas == 0 {
		opts.Replicas = 5
	}
	if opts.Cell == "" {
		opts.Cell = "local"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	bin := opts.Binary
	if bin == "" {
		bin = Binary(tb)
	}
	c := &Cell{tb: tb, opts: opts, dir: tb.TempDir(), bin: bin}
	ports := freePorts(tb, 3*opts.Replicas)
	scheme := "http"
	if opts.TLS {
		scheme = "https"
		hosts := make([]string, opts.Replicas)
		for i := range hosts {
			hosts[i] = "127.0.0.1"
		}
		if err := devcerts.Generate(c.CertDir(), opts.Cell, hosts); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range opts.Replicas {
		id := uint32(i + 1)
		c.Replicas = append(c.Replicas, &Replica{
			scheme:  scheme,
			ID:      id,
			Client:  fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			Peer:    fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			Gossip:  fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
			DataDir: filepath.Join(c.dir, fmt.Sprintf("r%d", id)),
			LogPath: filepath.Join(c.dir, fmt.Sprintf("r%d.log", id)),
		})
	}
	tb.Cleanup(c.close)
	for _, r := range c.Replicas {
		c.start(r, true)
	}
	return c
}

// replicasSpec is the LOCKD_REPLICAS value describing the cell as replica
// self sees it.
func (c *Cell) replicasSpec(self *Replica) string {
	var parts []string
	for _, r := range c.Replicas {
		client, peer := r.Client, r.Peer
		if c.opts.Addresses != nil && r != self {
			client, peer = c.opts.Addresses(self, r)
		}
		parts = append(parts, fmt.Sprintf("%d=%s,%s,%s", r.ID, client, peer, r.Gossip))
	}
	return strings.Join(parts, ";")
}

func (c *Cell) start(r *Replica, bootstrap bool) {
	c.tb.Helper()
	cfg := map[string]any{"cell": c.opts.Cell, "id": r.ID, "data_dir": r.DataDir, "bootstrap": bootstrap, "log_level": c.opts.LogLevel}
	if c.opts.TickMs > 0 {
		cfg["tick_ms"] = c.opts.TickMs
	}
	if c.opts.SessionGraceMs > 0 {
		cfg["session_grace_ms"] = c.opts.SessionGraceMs
	}
	if c.opts.SnapshotEvery > 0 {
		cfg["snapshot_every"] = c.opts.SnapshotEvery
	}
	if c.opts.Auth != nil {
		cfg["auth"] = c.opts.Auth
	}
	if c.opts.TLS {
		cfg["tls"] = c.TLSFiles(r.ID)
	}
	if c.opts.GossipKey != "" {
		cfg["gossip_key"] = c.opts.GossipKey
	}
	cfgPath := filepath.Join(c.dir, fmt.Sprintf("r%d.json", r.ID))
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		c.tb.Fatal(err)
	}
	logf, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.tb.Fatal(err)
	}
	cmd := exec.Command(c.bin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "LOCKD_REPLICAS="+c.replicasSpec(r))
	cmd.Env = append(cmd.Env, c.opts.ExtraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.tb.Fatalf("starting replica %d: %v", r.ID, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	r.mu.Lock()
	r.cmd, r.exited, r.paused = cmd, exited, false
	r.mu.Unlock()
}

// Kill sends SIGKILL to a replica and waits for it to die.
func (c *Cell) Kill(id uint32) { c.signal(id, syscall.SIGKILL, true) }

// Stop sends SIGTERM and waits for a clean exit.
func (c *Cell) Stop(id uint32) { c.signal(id, syscall.SIGTERM, true) }

// Pause stops a replica's process (SIGSTOP) without killing it.
func (c *Cell) Pause(id uint32) {
	c.signal(id, syscall.SIGSTOP, false)
	r := c.Replica(id)
	r.mu.Lock()
	r.paused = true
	r.mu.Unlock()
}

// Resume continues a paused replica (SIGCONT).
func (c *Cell) Resume(id uint32) {
	c.signal(id, syscall.SIGCONT, false)
	r := c.Replica(id)
	r.mu.Lock()
	r.paused = false
	r.mu.Unlock()
}

func (c *Cell) signal(id uint32, sig syscall.Signal, wait bool) {
	c.tb.Helper()
	r := c.Replica(id)
	r.mu.Lock()
	cmd, exited, paused := r.cmd, r.exited, r.paused
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	if paused && sig == syscall.SIGTERM {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(sig)
	if !wait {
		return
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart starts a stopped or killed replica again on its data directory.
func (c *Cell) Restart(id uint32) {
	c.tb.Helper()
	r := c.Replica(id)
	if r.Running() {
		c.tb.Fatalf("replica %d is still running", id)
	}
	c.start(r, false)
}

// Wipe deletes a stopped replica's data directory, as a lost disk would.
func (c *Cell) Wipe(id uint32) {
	c.tb.Helper()
	r := c.Replica(id)
	if r.Running() {
		c.tb.Fatalf("replica %d is still running", id)
	}
	if err := os.RemoveAll(r.DataDir); err != nil {
		c.tb.Fatal(err)
	}
}

// Paused reports whether replica id is stopped by Pause.
func (c *Cell) Paused(id uint32) bool {
	r := c.Replica(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paused
}

// Replica returns replica id.
func (c *Cell) Replica(id uint32) *Replica { return c.Replicas[id-1] }

// URLs returns the client URLs of every replica.
func (c *Cell) URLs() []string {
	var out []string
	for _, r := range c.Replicas {
		out = append(out, r.URL())
	}
	return out
}

// ClusterView is the part of GET /v1/cluster that tests read.
type ClusterView struct {
	Leader   string `json:"leader"`
	Ballot   string `json:"ballot"`
	Replicas []struct {
		ID             string `json:"id"`
		Role           string `json:"role"`
		Up             bool   `json:"up"`
		CommitIndex    uint64 `json:"commit_index"`
		AppliedIndex   uint64 `json:"applied_index"`
		Recovering     bool   `json:"recovering"`
		PromisedBallot string `json:"promised_ballot"`
	} `json:"replicas"`
}

// Cluster asks replica id for its view of the cell.
func (c *Cell) Cluster(ctx context.Context, id uint32) (ClusterView, error) {
	var v ClusterView
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Replica(id).URL()+"/v1/cluster", nil)
	if err != nil {
		return v, err
	}
	if c.opts.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.AdminToken)
	}
	cl := c.HTTPClient()
	cl.Timeout = 2 * time.Second
	resp, err := cl.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return v, fmt.Errorf("GET /v1/cluster: %s: %s", resp.Status, b)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// WaitLeader polls until a running replica reports a leader that every
// running replica agrees on, and returns its id.
func (c *Cell) WaitLeader(timeout time.Duration) uint32 {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if id := c.agreedLeader(); id != 0 {
			return id
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	c.DumpLogs(40)
	c.tb.Fatalf("no agreed leader within %v", timeout)
	return 0
}

func (c *Cell) agreedLeader() uint32 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	leader := ""
	for _, r := range c.Replicas {
		r.mu.Lock()
		paused := r.paused
		r.mu.Unlock()
		if !r.Running() || paused {
			continue
		}
		v, err := c.Cluster(ctx, r.ID)
		if err != nil || v.Leader == "" || (leader != "" && v.Leader != leader) {
			return 0
		}
		leader = v.Leader
	}
	var id uint32
	if _, err := fmt.Sscan(leader, &id); err != nil {
		return 0
	}
	return id
}

// DumpLogs writes the last n lines of every replica's log to the test log.
func (c *Cell) DumpLogs(n int) {
	for _, r := range c.Replicas {
		data, _ := os.ReadFile(r.LogPath)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		c.tb.Logf("---- replica %d log (last %d lines) ----\n%s", r.ID, len(lines), strings.Join(lines, "\n"))
	}
}

func (c *Cell) close() {
	if c.tb.Failed() {
		c.DumpLogs(60)
	}
	for _, r := range c.Replicas {
		r.mu.Lock()
		cmd, exited, paused := r.cmd, r.exited, r.paused
		r.mu.Unlock()
		if cmd == nil {
			continue
		}
		if paused {
			_ = cmd.Process.Signal(syscall.SIGCONT)
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// portRange is where freePorts looks: below the kernel's ephemeral range
// when there is room, so that a replica's port, free while it is down, is
// never taken as the source port of some outgoing connection.
func portRange() (lo, span int) {
	lo, span = 20000, 40000
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, span
	}
	var first, last int
	if _, err := fmt.Sscan(string(data), &first, &last); err != nil {
		return lo, span
	}
	if first-10000 >= 4000 {
		return 10000, first - 10000
	}
	return lo, span
}

// freePorts finds n ports free for both TCP and UDP on 127.0.0.1 (gossip
// uses both), holding none of them afterwards.
func freePorts(tb TB, n int) []int {
	tb.Helper()
	rnd := rand.New(rand.NewSource(time.Now().UnixNano() ^ int64(os.Getpid())))
	lo, span := portRange()
	seen := map[int]bool{}
	var out []int
	for tries := 0; len(out) < n && tries < 10000; tries++ {
		p := lo + rnd.Intn(span)
		if seen[p] {
			continue
		}
		seen[p] = true
		tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		out = append(out, p)
	}
	if len(out) < n {
		tb.Fatalf("found only %d free ports", len(out))
	}
	return out
}

// CertDir is where Options.TLS put the cell's CA and certificates
// (devcerts file names).
func (c *Cell) CertDir() string { return filepath.Join(c.dir, "certs") }

// TLSFiles is replica id's "tls" setting.
func (c *Cell) TLSFiles(id uint32) *config.TLS {
	d := c.CertDir()
	return &config.TLS{CertFile: filepath.Join(d, devcerts.ReplicaCert(int(id))),
		KeyFile: filepath.Join(d, devcerts.ReplicaKey(int(id))), CAFile: filepath.Join(d, devcerts.CACert),
		ClientAuth: c.opts.ClientAuth}
}

// ClientTLS is a client configuration for the cell: its CA as roots and
// the CA's client certificate (nil without Options.TLS).
func (c *Cell) ClientTLS() *tls.Config {
	if !c.opts.TLS {
		return nil
	}
	d := c.CertDir()
	pem, err := os.ReadFile(filepath.Join(d, devcerts.CACert))
	if err != nil {
		c.tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(filepath.Join(d, devcerts.ClientCert), filepath.Join(d, devcerts.ClientKey))
	if err != nil {
		c.tb.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// HTTPClient returns a client for the cell's URLs (with ClientTLS; a new
// http.Client on one shared transport).
func (c *Cell) HTTPClient() *http.Client {
	c.transportOnce.Do(func() {
		if !c.opts.TLS {
			c.transport = http.DefaultTransport
			return
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = c.ClientTLS()
		c.transport = t
	})
	return &http.Client{Transport: c.transport}
}

// Dir is the cell's working directory (configs, logs, certificates).
func (c *Cell) Dir() string { return c.dir }
