// Package apitest runs an in-process lockd cell for tests and examples: N
// replicas on in-memory Paxos (paxos.MemoryStorage and paxos.MemNetwork,
// fast ticks), each with its lock-service machine, session service and API
// server on an httptest.Server. The SDK's tests and examples use it as well
// as the api package's own.
//
//	c := apitest.NewCell(t, 3)
//	resp, err := http.Post(c.LeaderURL()+"/v1/sessions", "application/json", nil)
//
// Everything is stopped by t.Cleanup. Replicas can be stopped and started
// again on their storage (StopReplica, StartReplica) and cut off
// (Network().Isolate); a stopped replica's URL aborts every connection, as a
// dead process would.
package apitest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/api"
	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
	"github.com/lockd/lockd/paxos"
	"github.com/lockd/lockd/session"
)

// Options configures a Cell. Zero values take the defaults.
type Options struct {
	// Replicas is the number of replicas (default 3).
	Replicas int
	// Cell is the cell name (default "local").
	Cell string
	// EventHistory is each machine's event history (default
	// lockservice.DefaultEventHistory); small values make compaction easy
	// to reach.
	EventHistory int
	// NoForward makes followers answer not_leader instead of forwarding.
	NoForward bool
	// Grace is the session grace a new leader grants (default 200ms).
	Grace time.Duration
	// TickInterval is the Paxos tick (default 5ms). The tick counts are
	// paxos.DefaultConfig's, tuned for 10ms ticks, so the cell runs them
	// twice as fast: an election timeout of 100-150ms. The Paxos clock
	// follows real elapsed time, so a replica stalled longer than that
	// (race detector, a loaded machine) loses its leadership: much shorter
	// ticks make leaders flap under -race.
	TickInterval time.Duration
	// SSEKeepAlive is the API's idle-stream comment interval (default 15s).
	SSEKeepAlive time.Duration
	// LogLevel is the level of the replicas' logs, which go to t.Log
	// (default: the LOCKD_TEST_LOG environment variable, else warn).
	LogLevel hclog.Level
	// Auth is every replica's api.Options.Auth (nil: an open cell). Tokens
	// builds one from plain tokens.
	Auth *api.Auth
}

// Token is a principal for Tokens: its name, its bearer token in the clear,
// whether it is an administrator, and its limits.
type Token struct {
	Name   string
	Token  string
	Admin  bool
	Limits api.Limits
}

// Tokens returns an api.Auth with these principals (their tokens hashed as
// a configuration stores them) and bootstrap ACL rules.
func Tokens(tokens []Token, acl ...lockservice.ACLRule) *api.Auth {
	a := &api.Auth{ACL: acl}
	for _, t := range tokens {
		a.Tokens = append(a.Tokens, api.Token{Name: t.Name, SHA256: sha256.Sum256([]byte(t.Token)), Admin: t.Admin, Limits: t.Limits})
	}
	return a
}

// Cell is an in-process cell. Replicas are numbered 0..n-1 (replica ids
// "1".."n").
type Cell struct {
	t     testing.TB
	opts  Options
	net   *paxos.MemNetwork
	peers []paxos.NodeID
	logw  *testWriter
	reps  []*replica
}

type replica struct {
	id      paxos.NodeID
	disk    *paxos.MemoryStorage
	srv     *httptest.Server
	handler atomic.Pointer[http.Handler]
	mu      sync.Mutex
	run     *running // nil while stopped
}

// running is one life of a replica.
type running struct {
	node   *paxos.Node
	trans  paxos.Transport
	m      *lockservice.Machine
	svc    *session.Service
	api    *api.Server
	flow   *flowLog
	cancel context.CancelFunc
	done   chan struct{}
}

// NewCell starts a cell of the given number of replicas and waits until it
// has a leader ready to serve.
func NewCell(t testing.TB, replicas int) *Cell {
	t.Helper()
	return NewCellWith(t, Options{Replicas: replicas})
}

// NewCellWith starts a cell configured by opts and waits until it has a
// leader ready to serve.
func NewCellWith(t testing.TB, opts Options) *Cell {
	t.Helper()
	if opts.Replicas <= 0 {
		opts.Replicas = 3
	}
	if opts.Cell == "" {
		opts.Cell = "local"
	}
	if opts.Grace <= 0 {
		opts.Grace = 200 * time.Millisecond
	}
	if opts.TickInterval <= 0 {
		opts.TickInterval = 5 * time.Millisecond
	}
	if opts.LogLevel == hclog.NoLevel {
		opts.LogLevel = hclog.Warn
		if l := os.Getenv("LOCKD_TEST_LOG"); l != "" {
			opts.LogLevel = hclog.LevelFromString(l)
		}
	}
	c := &Cell{t: t, opts: opts, net: paxos.NewMemNetwork(), logw: &testWriter{t: t}}
	for i := 1; i <= opts.Replicas; i++ {
		c.peers = append(c.peers, paxos.NodeID(i))
	}
	for _, id := range c.peers {
		r := &replica{id: id, disk: paxos.NewMemoryStorage(false)}
		r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			(*r.handler.Load()).ServeHTTP(w, req)
		}))
		r.handler.Store(&deadHandler)
		c.reps = append(c.reps, r)
	}
	t.Cleanup(c.close)
	for i := range c.reps {
		c.StartReplica(i)
	}
	c.WaitLeader()
	return c
}

// deadHandler aborts every connection, like a stopped process.
var deadHandler http.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
	panic(http.ErrAbortHandler)
})

func (c *Cell) logger(id paxos.NodeID) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "r" + strconv.Itoa(int(id)), Output: c.logw, Level: c.opts.LogLevel})
}

// StartReplica starts replica i (again) on its storage: a fresh machine,
// rebuilt from the stored snapshot and log, with a fresh service and API
// server behind the same URL.
func (c *Cell) StartReplica(i int) {
	c.t.Helper()
	r := c.reps[i]
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run != nil {
		return
	}
	log := c.logger(r.id)
	m, err := lockservice.New(lockservice.Config{Cell: c.opts.Cell, EventHistory: c.opts.EventHistory})
	if err != nil {
		c.t.Fatalf("apitest: machine: %v", err)
	}
	run := &running{m: m, flow: &flowLog{}, done: make(chan struct{})}
	run.trans = c.net.Transport(r.id)
	cfg := paxos.DefaultConfig(r.id, c.peers)
	node, err := paxos.NewNode(paxos.NodeConfig{
		Core: cfg, Storage: r.disk, Transport: run.trans, StateMachine: m,
		TickInterval: c.opts.TickInterval, Observer: run.flow.observe, Logger: log.Named("paxos"),
	})
	if err != nil {
		c.t.Fatalf("apitest: replica %d: %v", r.id, err)
	}
	run.node = node
	self := strconv.Itoa(int(r.id))
	run.svc = session.NewService(session.ServiceConfig{
		Consensus: node, Machine: m, Grace: c.opts.Grace, Self: self, Logger: log,
	})
	node.Start()
	ctx, cancel := context.WithCancel(context.Background())
	run.cancel = cancel
	go func() {
		defer close(run.done)
		run.svc.Run(ctx, 10*time.Millisecond)
	}()
	run.api = api.New(api.Options{
		Service: run.svc, Cell: c.opts.Cell, Self: self,
		Leader:       func() (string, string) { return c.leaderOf(node) },
		Cluster:      func(context.Context) (any, error) { return c.Status(), nil },
		Flow:         func(since uint64) any { return run.flow.since(since) },
		NoForward:    c.opts.NoForward,
		Logger:       log,
		SSEKeepAlive: c.opts.SSEKeepAlive,
		Auth:         c.opts.Auth,
	})
	h := run.api.Handler()
	r.run = run
	r.handler.Store(&h)
}

// StopReplica stops replica i as a crash would, keeping its storage: its
// URL aborts connections until StartReplica.
func (c *Cell) StopReplica(i int) {
	r := c.reps[i]
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.run
	if run == nil {
		return
	}
	r.handler.Store(&deadHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = run.api.Shutdown(ctx)
	run.cancel()
	<-run.done
	run.node.Stop()
	_ = run.trans.Close()
	r.run = nil
}

func (c *Cell) close() {
	for i := range c.reps {
		c.StopReplica(i)
	}
	for _, r := range c.reps {
		r.srv.CloseClientConnections()
		r.srv.Close()
	}
	c.logw.close()
}

// leaderOf is a replica's Options.Leader: the leader its Paxos node knows.
func (c *Cell) leaderOf(node *paxos.Node) (string, string) {
	st := node.Status()
	id := st.Leader
	if st.Role == paxos.Leader {
		id = st.ID
	}
	if id == paxos.None || int(id) > len(c.reps) {
		return "", ""
	}
	return strconv.Itoa(int(id)), c.reps[id-1].srv.URL
}

// Replicas returns the number of replicas.
func (c *Cell) Replicas() int { return len(c.reps) }

// Name returns the cell name.
func (c *Cell) Name() string { return c.opts.Cell }

// URL returns replica i's client URL (it stays the same across restarts).
func (c *Cell) URL(i int) string { return c.reps[i].srv.URL }

// URLs returns every replica's client URL, in replica order.
func (c *Cell) URLs() []string {
	out := make([]string, len(c.reps))
	for i, r := range c.reps {
		out[i] = r.srv.URL
	}
	return out
}

// ID returns replica i's id ("1".."n").
func (c *Cell) ID(i int) string { return strconv.Itoa(int(c.reps[i].id)) }

func (c *Cell) current(i int) *running {
	r := c.reps[i]
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.run
}

// Running reports whether replica i runs.
func (c *Cell) Running(i int) bool { return c.current(i) != nil }

// Machine returns replica i's state machine (nil while stopped).
func (c *Cell) Machine(i int) *lockservice.Machine {
	if run := c.current(i); run != nil {
		return run.m
	}
	return nil
}

// Service returns replica i's session service (nil while stopped).
func (c *Cell) Service(i int) *session.Service {
	if run := c.current(i); run != nil {
		return run.svc
	}
	return nil
}

// Server returns replica i's API server (nil while stopped).
func (c *Cell) Server(i int) *api.Server {
	if run := c.current(i); run != nil {
		return run.api
	}
	return nil
}

// Node returns replica i's Paxos node (nil while stopped).
func (c *Cell) Node(i int) *paxos.Node {
	if run := c.current(i); run != nil {
		return run.node
	}
	return nil
}

// Network returns the in-memory network, to cut and heal links.
func (c *Cell) Network() *paxos.MemNetwork { return c.net }

// leaderNow returns the replica that leads with a lease and runs session
// leases, or -1.
func (c *Cell) leaderNow() int {
	for i := range c.reps {
		run := c.current(i)
		if run == nil {
			continue
		}
		st := run.node.Status()
		if st.Role == paxos.Leader && st.LeaseRemaining > 0 && run.svc.Leases().Leading() {
			return i
		}
	}
	return -1
}

// WaitLeader polls (with a deadline of 10s) until some replica leads with a
// lease and runs session leases, every running replica knows it, and
// returns it.
func (c *Cell) WaitLeader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l := c.leaderNow(); l >= 0 && c.allKnow(l) {
			return l
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline
	}
	c.t.Fatalf("apitest: no leader within 10s")
	return -1
}

func (c *Cell) allKnow(l int) bool {
	want := c.ID(l)
	for i := range c.reps {
		if run := c.current(i); run != nil {
			if id, _ := c.leaderOf(run.node); id != want {
				return false
			}
		}
	}
	return true
}

// Leader returns the index of the current leader, waiting for one.
func (c *Cell) Leader() int { return c.WaitLeader() }

// LeaderURL returns the current leader's client URL, waiting for one.
func (c *Cell) LeaderURL() string { return c.URL(c.WaitLeader()) }

// Follower returns a running replica other than the leader, or fails the
// test.
func (c *Cell) Follower() int {
	c.t.Helper()
	l := c.WaitLeader()
	for i := range c.reps {
		if i != l && c.Running(i) {
			return i
		}
	}
	c.t.Fatalf("apitest: no running follower")
	return -1
}

// WaitApplied polls until every running replica has applied index.
func (c *Cell) WaitApplied(index uint64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for i := range c.reps {
			if m := c.Machine(i); m != nil && m.AppliedIndex() < index {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline
	}
	c.t.Fatalf("apitest: index %d not applied everywhere within 10s", index)
}

// Status assembles the body of GET /v1/cluster from every replica.
func (c *Cell) Status() wire.Cluster {
	out := wire.Cluster{Cell: c.opts.Cell, Replicas: []wire.Replica{}}
	var leaderCommit uint64
	sts := make([]*paxos.Status, len(c.reps))
	for i := range c.reps {
		if run := c.current(i); run != nil {
			st := run.node.Status()
			sts[i] = &st
			if st.Role == paxos.Leader {
				out.Leader, out.LeaderURL = c.ID(i), c.URL(i)
				out.Ballot = st.Ballot.String()
				out.LeaseRemainingMs = int64(st.LeaseRemaining) * c.opts.TickInterval.Milliseconds()
				leaderCommit = st.Commit
			}
		}
	}
	for i, r := range c.reps {
		rep := wire.Replica{ID: c.ID(i), ClientURL: r.srv.URL, PeerAddress: "mem:" + c.ID(i), Role: "down", MemberStatus: "dead"}
		if st := sts[i]; st != nil {
			rep.Up, rep.MemberStatus = true, "alive"
			rep.Role = strings.ToLower(st.Role.String())
			rep.PromisedBallot = st.Ballot.String()
			rep.CommitIndex, rep.AppliedIndex, rep.SnapshotIndex = st.Commit, st.Applied, st.Snapshot
			if leaderCommit > st.Applied {
				rep.Lag = leaderCommit - st.Applied
			}
		}
		out.Replicas = append(out.Replicas, rep)
	}
	return out
}

// flowLog keeps the newest protocol messages a replica sent.
type flowLog struct {
	mu   sync.Mutex
	seq  uint64
	msgs []wire.FlowMessage
}

const flowKeep = 512

func (f *flowLog) observe(ev paxos.FlowEvent) {
	if !ev.Sent || ev.Status != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	if len(f.msgs) == flowKeep {
		f.msgs = append(f.msgs[:0], f.msgs[1:]...)
	}
	f.msgs = append(f.msgs, wire.FlowMessage{
		Seq: f.seq, Time: ev.Time, Type: ev.Type.String(), From: strconv.Itoa(int(ev.From)),
		To: strconv.Itoa(int(ev.To)), Ballot: ev.Ballot.String(), Slot: ev.Slot, OK: ev.OK,
	})
}

func (f *flowLog) since(seq uint64) wire.Flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := wire.Flow{Messages: []wire.FlowMessage{}}
	for _, m := range f.msgs {
		if m.Seq > seq {
			out.Messages = append(out.Messages, m)
		}
	}
	return out
}

// testWriter sends log lines to t.Log until the cell is closed, and drops
// them after (background goroutines may still log while stopping, and
// t.Log after the test ends panics).
type testWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// String describes the cell.
func (c *Cell) String() string {
	return fmt.Sprintf("cell %s of %d replicas", c.opts.Cell, len(c.reps))
}
