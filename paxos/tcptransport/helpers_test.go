package tcptransport

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/paxos"
)

// waitTimeout bounds every poll; generous because -race on a loaded machine
// is slow, and a passing test never waits for it.
const waitTimeout = 15 * time.Second

// logWriter sends hclog output to t.Log, so it shows only when a test fails
// (or with -v).
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) hclog.Logger {
	if _, ok := t.(*testing.B); ok {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: logWriter{t}})
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// listenOn listens on addr again, polling while the old socket lets go.
func listenOn(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	waitFor(t, "listen on "+addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	return ln
}

func mustNew(t testing.TB, cfg Config) *Transport {
	t.Helper()
	if cfg.Cell == "" {
		cfg.Cell = "test"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t).Named(fmt.Sprint(cfg.Self))
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// newCluster starts n transports, ids 1..n, that know each other. tweak, if
// not nil, adjusts each config.
func newCluster(t testing.TB, n int, tweak func(*Config)) []*Transport {
	t.Helper()
	lns := make([]net.Listener, n)
	peers := make(map[paxos.NodeID]string, n)
	for i := range lns {
		lns[i] = listen(t)
		peers[paxos.NodeID(i+1)] = lns[i].Addr().String()
	}
	trs := make([]*Transport, n)
	for i := range trs {
		cfg := Config{Self: paxos.NodeID(i + 1), Listener: lns[i], Peers: clonePeers(peers)}
		if tweak != nil {
			tweak(&cfg)
		}
		trs[i] = mustNew(t, cfg)
	}
	return trs
}

func clonePeers(p map[paxos.NodeID]string) map[paxos.NodeID]string {
	c := make(map[paxos.NodeID]string, len(p))
	for k, v := range p {
		c[k] = v
	}
	return c
}

// msg is an Accept from one node to another, numbered by seq (in Tick and the
// entry slot) and carrying a command that names all three.
func msg(from, to paxos.NodeID, seq uint64) paxos.Message {
	return paxos.Message{
		Type: paxos.MsgAccept, From: from, To: to, Ballot: paxos.Ballot{Round: 3, Node: from}, Tick: seq,
		Entries: []paxos.Entry{{Slot: seq, Ballot: paxos.Ballot{Round: 3, Node: from},
			Value: paxos.Value{[]byte(fmt.Sprintf("%d->%d #%d", from, to, seq))}}},
	}
}

func checkMsg(t testing.TB, m paxos.Message) {
	t.Helper()
	want := fmt.Sprintf("%d->%d #%d", m.From, m.To, m.Tick)
	if len(m.Entries) != 1 || len(m.Entries[0].Value) != 1 || string(m.Entries[0].Value[0]) != want {
		t.Fatalf("message %+v does not carry %q", m, want)
	}
}

// recv returns the next message of tr, failing the test after waitTimeout.
func recv(t testing.TB, tr *Transport) paxos.Message {
	t.Helper()
	select {
	case m, ok := <-tr.Receive():
		if !ok {
			t.Fatal("Receive channel closed")
		}
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("no message within %v; stats %+v", waitTimeout, tr.Stats())
	}
	panic("unreachable")
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
