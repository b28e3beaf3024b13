package lockservice

import (
	"bytes"
	"testing"

	"github.com/lockd/lockd/paxos"
)

var _ paxos.StateMachine = (*Machine)(nil)

// fataler is what both *testing.T and *rapid.T offer.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

const testCell = "test"

// p returns the node path rel below the test cell's root.
func p(rel string) string { return PathPrefix + testCell + "/" + rel }

// harness drives one machine with increasing indices and a fake clock.
type harness struct {
	t     testing.TB
	m     *Machine
	index uint64
	now   int64
	// typed skips Encode/Decode (benchmarks).
	typed bool
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	m, err := New(Config{Cell: testCell})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, m: m, now: 1_000_000}
}

// apply applies c at the next index, stamped with the harness clock unless
// c has its own NowMs. It goes through Encode and Apply, like paxos would.
func (h *harness) apply(c Command) Result {
	h.t.Helper()
	h.index++
	if c.NowMs == 0 {
		c.NowMs = h.now
	}
	if h.typed {
		return h.m.ApplyCommand(h.index, c)
	}
	b, err := Encode(c)
	if err != nil {
		h.t.Fatalf("encode %+v: %v", c, err)
	}
	res, ok := h.m.Apply(h.index, b).(Result)
	if !ok {
		h.t.Fatalf("Apply returned %T", h.m.Apply)
	}
	return res
}

func (h *harness) ok(c Command) Result {
	h.t.Helper()
	res := h.apply(c)
	if res.Err != nil {
		h.t.Fatalf("%v: unexpected error %v", c.Kind, res.Err)
	}
	return res
}

func (h *harness) fail(c Command, code string) Result {
	h.t.Helper()
	res := h.apply(c)
	if got := Code(res.Err); got != code {
		h.t.Fatalf("%v %s: got error %v (code %q), want code %q", c.Kind, c.Path, res.Err, got, code)
	}
	return res
}

// session creates a session with lock-delay ld (ms).
func (h *harness) session(ld int64) string {
	h.t.Helper()
	return h.ok(Command{Kind: KindCreateSession, LockDelayMs: &ld, Label: "l", Host: "h", PID: 7}).Session.ID
}

// tick advances the clock by ms and applies a Tick.
func (h *harness) tick(ms int64) Result {
	h.t.Helper()
	h.now += ms
	return h.ok(Command{Kind: KindTick})
}

func (h *harness) acquire(path, sess string, mode Mode, waitMs int64) Result {
	h.t.Helper()
	return h.apply(Command{Kind: KindAcquire, Path: path, Session: sess, Mode: mode, WaitMs: waitMs})
}

func (h *harness) mustGrant(res Result) Grant {
	h.t.Helper()
	if res.Err != nil || res.Grant == nil {
		h.t.Fatalf("want a grant, got %+v", res)
	}
	return *res.Grant
}

func (h *harness) release(g Grant) Result {
	h.t.Helper()
	return h.apply(Command{Kind: KindRelease, Path: g.Path, Session: g.Session, Generation: g.Generation})
}

func (h *harness) snapshot() []byte {
	h.t.Helper()
	b, err := h.m.Snapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *harness) lock(path string) LockState {
	h.t.Helper()
	l, err := h.m.GetLock(path, h.now)
	if err != nil {
		h.t.Fatalf("GetLock %s: %v", path, err)
	}
	return l
}

func (h *harness) node(path string) Node {
	h.t.Helper()
	n, err := h.m.GetNode(path)
	if err != nil {
		h.t.Fatalf("GetNode %s: %v", path, err)
	}
	return n
}

// holders lists the sessions holding path.
func (h *harness) holders(path string) []string {
	var out []string
	for _, x := range h.lock(path).Holders {
		out = append(out, x.Session)
	}
	return out
}

// events of one result, as "type path" strings.
func eventTypes(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Type)+" "+e.Path)
	}
	return out
}

func hasEvent(evs []Event, typ EventType, path string) bool {
	for _, e := range evs {
		if e.Type == typ && e.Path == path {
			return true
		}
	}
	return false
}

// checkInvariants checks the state's internal consistency; tests run it after
// every step.
func checkInvariants(t fataler, m *Machine) {
	t.Helper()
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := m.st
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("invariant: "+format, args...)
	}
	for path, n := range s.nodes {
		if path != s.root {
			par := s.nodes[parentOf(path)]
			if par == nil || !par.dir {
				fail("node %s has no parent directory", path)
			}
			if _, ok := par.children[baseOf(path)]; !ok {
				fail("node %s missing from its parent's children", path)
			}
		}
		for c := range n.children {
			if s.nodes[path+"/"+c] == nil {
				fail("dir %s lists missing child %s", path, c)
			}
		}
		if n.owner != "" {
			sess := s.sessions[n.owner]
			if sess == nil {
				fail("ephemeral %s of dead session %s", path, n.owner)
			}
			if _, ok := sess.ephemerals[path]; !ok {
				fail("ephemeral %s not listed by its session", path)
			}
		}
		if n.contentGen == 0 || n.instance > s.instances {
			fail("node %s generations %+v", path, n)
		}
		if n.contents != nil && len(n.contents) == 0 {
			fail("node %s has non-nil empty contents", path)
		}
	}
	waits := 0
	for path, l := range s.locks {
		if len(l.holders) == 0 && len(l.waiters) == 0 && l.delayUntil == 0 {
			fail("lock %s is empty but kept", path)
		}
		if n := s.nodes[path]; n != nil && n.lockGen != l.gen {
			fail("lock %s gen %d, node says %d", path, l.gen, n.lockGen)
		}
		if l.delayUntil != 0 && l.delayUntil <= s.now {
			fail("lock %s delay ended at %d but still set at %d", path, l.delayUntil, s.now)
		}
		excl := 0
		for _, h := range l.holders {
			if h.mode == ModeExclusive {
				excl++
			}
			if h.generation != l.gen {
				fail("lock %s holder %s at gen %d, lock at %d", path, h.session, h.generation, l.gen)
			}
			sess := s.sessions[h.session]
			if sess == nil || sess.held[path] != h.mode {
				fail("lock %s holder %s not live or not recorded", path, h.session)
			}
		}
		if excl > 1 || excl == 1 && len(l.holders) > 1 {
			fail("lock %s has %d exclusive holders among %d", path, excl, len(l.holders))
		}
		for _, w := range l.waiters {
			waits++
			if s.waiters[w.id] != w {
				fail("waiter %d not indexed", w.id)
			}
			sess := s.sessions[w.session]
			if sess == nil || sess.waits[path] != w.id {
				fail("waiter %d of %s not live or not recorded", w.id, w.session)
			}
			if w.deadline <= s.now {
				fail("waiter %d deadline %d passed (now %d)", w.id, w.deadline, s.now)
			}
		}
		if len(l.waiters) > 0 {
			head := l.waiters[0]
			if !l.blockedByDelay(head.mode, s.now) && l.compatible(head.mode) {
				fail("lock %s: head waiter %d could be granted", path, head.id)
			}
		}
	}
	if waits != len(s.waiters) {
		fail("%d waiters indexed, %d queued", len(s.waiters), waits)
	}
	for id, sess := range s.sessions {
		for path, mode := range sess.held {
			l := s.locks[path]
			if l == nil || l.holderOf(id) == nil || l.holderOf(id).mode != mode {
				fail("session %s thinks it holds %s", id, path)
			}
		}
		for path := range sess.ephemerals {
			if n := s.nodes[path]; n == nil || n.owner != id {
				fail("session %s lists ephemeral %s", id, path)
			}
		}
		if _, ended := s.ended.m[id]; ended {
			fail("session %s live and ended", id)
		}
	}
	if len(s.deadlines) > 0 && !s.validDeadline(s.deadlines[0]) {
		fail("deadline heap top is stale")
	}
	for _, w := range s.waiters {
		found := false
		for _, d := range s.deadlines {
			if d.waitID == w.id && d.at == w.deadline {
				found = true
			}
		}
		if !found {
			fail("waiter %d has no deadline entry", w.id)
		}
	}
}

func mustEqualSnapshots(t fataler, a, b []byte) {
	t.Helper()
	if !bytes.Equal(a, b) {
		t.Fatalf("snapshots differ:\n%s\n%s", a, b)
	}
}
