package paxos

import (
	"bytes"
	"fmt"
)

// checker watches everything the replicas of a simulation commit, apply and
// believe, and records every violation of the properties Paxos promises.
type checker struct {
	chosen     map[uint64]Value  // slot -> the value some replica committed
	cmds       map[uint64][]byte // command index -> the command applied there
	proposed   map[string]bool
	durable    map[NodeID]uint64 // commit index each replica last saved
	violations []string
}

func newChecker() *checker {
	return &checker{chosen: map[uint64]Value{}, cmds: map[uint64][]byte{}, proposed: map[string]bool{},
		durable: map[NodeID]uint64{}}
}

func (k *checker) fail(format string, args ...any) {
	if len(k.violations) < 20 {
		k.violations = append(k.violations, fmt.Sprintf(format, args...))
	}
}

func (k *checker) propose(cmd []byte) { k.proposed[string(cmd)] = true }

// commit checks agreement and validity for one committed slot.
func (k *checker) commit(node NodeID, e Entry) {
	if prev, ok := k.chosen[e.Slot]; ok {
		if !prev.Equal(e.Value) {
			k.fail("agreement: replica %d committed %s at slot %d, another committed %s", node, fmtValue(e.Value), e.Slot, fmtValue(prev))
		}
	} else {
		k.chosen[e.Slot] = e.Value
	}
	for _, c := range e.Value {
		if !k.proposed[string(c)] {
			k.fail("validity: replica %d committed %q at slot %d, which nobody proposed", node, c, e.Slot)
		}
	}
}

// apply checks that every replica applies the same command at each index.
func (k *checker) apply(node NodeID, index uint64, cmd []byte) {
	if prev, ok := k.cmds[index]; ok {
		if !bytes.Equal(prev, cmd) {
			k.fail("apply order: replica %d applied %q at index %d, another applied %q", node, cmd, index, prev)
		}
		return
	}
	k.cmds[index] = cmd
}

// saved records the commit index a replica made durable.
func (k *checker) saved(node NodeID, commit uint64) {
	k.durable[node] = max(k.durable[node], commit)
}

// restarted checks that a replica came back with everything it had saved.
func (k *checker) restarted(node NodeID, commit uint64) {
	if commit < k.durable[node] {
		k.fail("durability: replica %d restarted with commit %d, it had saved %d", node, commit, k.durable[node])
	}
}

// wiped forgets what a replica saved: its disk is gone by design.
func (k *checker) wiped(node NodeID) { delete(k.durable, node) }

// leases checks that at most one replica believes it may serve lease reads.
func (k *checker) leases(step uint64, holders []NodeID) {
	if len(holders) > 1 {
		k.fail("lease: at step %d replicas %v all hold a leader lease", step, holders)
	}
}

func fmtValue(v Value) string {
	if v.IsNoop() {
		return "noop"
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, c := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%q", c)
	}
	b.WriteByte(']')
	return b.String()
}
