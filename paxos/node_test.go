package paxos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// listSM is a state machine that appends every command to a list.
type listSM struct {
	mu      sync.Mutex
	applied []string
	last    uint64
}

func (s *listSM) Apply(index uint64, cmd []byte) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.last {
		panic(fmt.Sprintf("apply index %d after %d", index, s.last))
	}
	s.last = index
	s.applied = append(s.applied, string(cmd))
	return len(s.applied)
}

func (s *listSM) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []byte(fmt.Sprintf("%d\n%s", s.last, strings.Join(s.applied, "\n"))), nil
}

func (s *listSM) Restore(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := strings.Split(string(data), "\n")
	if _, err := fmt.Sscan(parts[0], &s.last); err != nil {
		return err
	}
	s.applied = nil
	for _, p := range parts[1:] {
		if p != "" {
			s.applied = append(s.applied, p)
		}
	}
	return nil
}

func (s *listSM) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.applied...)
}

// testLogger routes hclog output to t.Log, so logs show only when a test fails.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: tWriter{t}, Level: hclog.Info})
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type memReplica struct {
	node  *Node
	disk  Storage
	sm    *listSM
	trans Transport
}

type memCell struct {
	t     testing.TB
	net   *MemNetwork
	peers []NodeID
	reps  map[NodeID]*memReplica
	disks map[NodeID]Storage
	snap  uint64
}

func newMemCell(t testing.TB, n int, snapEvery uint64) *memCell {
	c := &memCell{t: t, net: NewMemNetwork(), reps: map[NodeID]*memReplica{}, disks: map[NodeID]Storage{}, snap: snapEvery}
	for i := 1; i <= n; i++ {
		c.peers = append(c.peers, NodeID(i))
	}
	for _, id := range c.peers {
		c.start(id, NewMemoryStorage(false))
	}
	t.Cleanup(func() {
		for id := range c.reps {
			c.stop(id)
		}
	})
	return c
}

func (c *memCell) start(id NodeID, disk Storage) {
	cfg := DefaultConfig(id, c.peers)
	cfg.ElectionTicks, cfg.HeartbeatTicks, cfg.LeaseTicks, cfg.DriftTicks = 20, 2, 12, 1
	sm := &listSM{}
	tr := c.net.Transport(id)
	node, err := NewNode(NodeConfig{Core: cfg, Storage: disk, Transport: tr, StateMachine: sm,
		TickInterval: 2 * time.Millisecond, SnapshotEvery: c.snap, Logger: testLogger(c.t).With("replica", id)})
	if err != nil {
		c.t.Fatal(err)
	}
	node.Start()
	c.reps[id] = &memReplica{node: node, disk: disk, sm: sm, trans: tr}
	c.disks[id] = disk
}

func (c *memCell) stop(id NodeID) {
	r := c.reps[id]
	r.node.Stop()
	r.trans.Close()
	delete(c.reps, id)
}

// leader polls until some replica leads with a lease, or fails the test.
func (c *memCell) leader() *memReplica {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range c.reps {
			if st := r.node.Status(); st.Role == Leader && st.LeaseRemaining > 0 {
				return r
			}
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline, not synchronizing
	}
	c.t.Fatal("no leader within 10s")
	return nil
}

// propose retries a command on the current leader until it is applied.
func (c *memCell) propose(cmd string) Result {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l := c.leader()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := l.node.Propose(ctx, []byte(cmd))
		cancel()
		if err == nil {
			return res
		}
		if errors.Is(err, ErrOutcomeUnknown) && c.applied(l, cmd) {
			return res
		}
	}
	c.t.Fatalf("command %q not applied within 10s", cmd)
	return Result{}
}

func (c *memCell) applied(r *memReplica, cmd string) bool {
	for _, a := range r.sm.list() {
		if a == cmd {
			return true
		}
	}
	return false
}

// converge polls until every running replica applied exactly want.
func (c *memCell) converge(want []string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, r := range c.reps {
			if strings.Join(r.sm.list(), ",") != strings.Join(want, ",") {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for id, r := range c.reps {
				c.t.Logf("replica %d status %+v applied %d", id, r.node.Status(), len(r.sm.list()))
			}
			c.t.Fatalf("replicas did not converge on %d commands", len(want))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestNodeCommitsAndFailsOver(t *testing.T) {
	for _, n := range []int{1, 3, 5} {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
			c := newMemCell(t, n, 8)
			var want []string
			for i := range 20 {
				cmd := fmt.Sprintf("a%d", i)
				c.propose(cmd)
				want = append(want, cmd)
			}
			c.converge(want)
			if n == 1 {
				return
			}
			// Kill the leader: a new one takes over and nothing is lost.
			old := c.leader().node.Status().ID
			c.stop(old)
			for i := range 20 {
				cmd := fmt.Sprintf("b%d", i)
				c.propose(cmd)
				want = append(want, cmd)
			}
			// The old leader comes back on its disk and catches up.
			c.start(old, c.diskOf(old))
			c.converge(want)
		})
	}
}

// diskOf returns the store a stopped replica left behind.
func (c *memCell) diskOf(id NodeID) Storage {
	c.t.Helper()
	if d, ok := c.disks[id]; ok {
		return d
	}
	c.t.Fatalf("no disk for replica %d", id)
	return nil
}

// blockingStorage stalls Save while blocked, as a stopped process would.
type blockingStorage struct {
	Storage
	mu      sync.Mutex
	blocked chan struct{} // non-nil: Save waits for it to close
	entered chan struct{} // closed when a Save is stalled
}

func (b *blockingStorage) block() {
	b.mu.Lock()
	b.blocked, b.entered = make(chan struct{}), make(chan struct{})
	b.mu.Unlock()
}

func (b *blockingStorage) release() {
	b.mu.Lock()
	close(b.blocked)
	b.blocked = nil
	b.mu.Unlock()
}

func (b *blockingStorage) Save(hs *HardState, entries []Entry, snap *Snapshot) error {
	b.mu.Lock()
	gate, entered := b.blocked, b.entered
	b.mu.Unlock()
	if gate != nil {
		close(entered)
		<-gate
	}
	return b.Storage.Save(hs, entries, snap)
}

// TestStalledLeaderDoesNotServeStaleLeaseReads is the regression test of a
// bug the fault-testing harness found: a leader whose process is stopped
// (here its loop is stalled in a Save) for longer than its lease, cut off
// while the others elect a new leader, must not serve a lease read when it
// runs again. Its clock follows elapsed time, not the one ticker event a
// stopped process gets afterwards.
func TestStalledLeaderDoesNotServeStaleLeaseReads(t *testing.T) {
	c := newMemCell(t, 3, 1000)
	c.propose("warm")
	old := c.leader()
	oldID := old.node.Status().ID
	disk := &blockingStorage{Storage: c.disks[oldID]}
	c.stop(oldID)
	c.start(oldID, disk)
	c.converge([]string{"warm"})
	for c.leader().node.Status().ID != oldID {
		// Make the restarted replica lead again: stop the current leader
		// and restart it, until the one with the blocking disk wins.
		l := c.leader().node.Status().ID
		c.stop(l)
		c.start(l, c.disks[l])
	}
	old = c.reps[oldID]
	disk.block()
	go func() { _, _ = old.node.Propose(context.Background(), []byte("stalls")) }()
	<-disk.entered // the old leader's loop is stuck in Save
	c.net.Isolate(oldID, c.peers)
	// The others elect a new leader meanwhile.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found bool
		for id, r := range c.reps {
			if st := r.node.Status(); id != oldID && st.Role == Leader && st.LeaseRemaining > 0 {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new leader while the old one was stalled")
		}
		time.Sleep(2 * time.Millisecond)
	}
	disk.release()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := old.node.LinearizableRead(ctx); err == nil {
		t.Fatal("the stalled, deposed leader served a lease read from a lease that ran out while it was stopped")
	}
}
