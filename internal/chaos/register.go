package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockd/lockd/api/wire"
)

// The register workload: a few nodes, each a register of (contents,
// content generation), read, written and compare-and-set (PUT with
// if_content_generation) by concurrent clients; the history is checked for
// linearizability with Porcupine, one partition per key.

// Register operations.
const (
	OpRead  = "read"
	OpWrite = "write"
	OpCAS   = "cas"
)

// RegInput is one register operation as invoked.
type RegInput struct {
	Key    string `json:"key"`
	Op     string `json:"op"`
	Value  string `json:"value,omitempty"`  // write, cas
	Expect uint64 `json:"expect,omitempty"` // cas: the generation it requires
}

// RegOutput is what the cell answered. Unknown: the outcome is not known
// (the operation may have taken effect at any time after its call).
type RegOutput struct {
	Unknown bool   `json:"unknown,omitempty"`
	OK      bool   `json:"ok"`              // cas: it matched (writes and reads: true)
	Value   string `json:"value,omitempty"` // read
	Gen     uint64 `json:"gen"`             // read: generation read; write/cas: generation written
}

// regHistory collects the operations of every register client.
type regHistory struct {
	mu      sync.Mutex
	ops     []porcupine.Operation
	nextPID int
	acked   []ackedWrite // writes and successful CASes that were answered 2xx
}

// ackedWrite is a write the cell acknowledged: it must survive.
type ackedWrite struct {
	Key   string
	Value string
	Gen   uint64
}

func (h *regHistory) pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextPID++
	return h.nextPID - 1
}

func (h *regHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	in, out := op.Input.(RegInput), op.Output.(RegOutput)
	if in.Op != OpRead && !out.Unknown && out.OK {
		h.acked = append(h.acked, ackedWrite{Key: in.Key, Value: in.Value, Gen: out.Gen})
	}
}

// unknowns counts the operations of unknown outcome.
func (h *regHistory) unknowns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, op := range h.ops {
		if op.Output.(RegOutput).Unknown {
			n++
		}
	}
	return n
}

// operations returns the history to check: every unknown outcome's return
// moved past the end of the history (it may take effect at any time), and
// unknown outcomes resolved where the history itself tells (Resolve).
func (h *regHistory) operations() []porcupine.Operation {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	return Resolve(ops)
}

// registerClient runs one client of the register workload until ctx ends.
// pin >= 0 sends every request to that replica; -1 picks one at random each
// time.
func (w *world) registerClient(ctx context.Context, rnd *rand.Rand, h *regHistory, keys []string, id, pin int) {
	pid := h.pid()
	seen := map[string]uint64{} // generation last seen per key
	probing := false            // after a failure, only read until the cell answers again
	for seq := 0; ctx.Err() == nil; seq++ {
		key := keys[rnd.Intn(len(keys))]
		in := RegInput{Key: key}
		var body any
		method := http.MethodGet
		switch p := rnd.Intn(100); {
		case p < 50 || probing:
			in.Op = OpRead
		case p < 75:
			in.Op = OpWrite
			in.Value = fmt.Sprintf("w%d-%d", id, seq)
			method, body = http.MethodPut, wire.PutNodeRequest{Contents: &in.Value}
		default:
			in.Op = OpCAS
			in.Value = fmt.Sprintf("c%d-%d", id, seq)
			in.Expect = seen[key]
			if in.Expect == 0 || rnd.Intn(5) == 0 {
				in.Expect += uint64(rnd.Intn(3))
			}
			method, body = http.MethodPut, wire.PutNodeRequest{Contents: &in.Value, IfContentGeneration: &in.Expect}
		}
		replica := pin
		if replica < 0 {
			replica = rnd.Intn(len(w.urls))
		}
		call := w.now()
		timeout := w.opTimeout
		if in.Op == OpRead {
			// Reads may wait longer: one that waits out a paused or cut-off
			// replica and is answered when it comes back is a good test.
			timeout = 5 * time.Second
		}
		r := do(ctx, w.hc, timeout, method, w.urls[replica]+"/v1/nodes"+key, body)
		ret := w.now()
		w.ops.Add(1)
		if ctx.Err() != nil && r.Err != nil {
			// Cancelled by the end of the run: a write's outcome is unknown.
			if in.Op != OpRead {
				h.add(porcupine.Operation{ClientId: pid, Input: in, Call: call, Output: RegOutput{Unknown: true}, Return: ret})
			}
			return
		}
		out, ok := w.regOutput(in, r)
		probing = r.outcome() != OK
		if !ok {
			w.pause(ctx, rnd, 50*time.Millisecond)
			continue // definitely not applied, or a read without an answer
		}
		h.add(porcupine.Operation{ClientId: pid, Input: in, Call: call, Output: out, Return: ret})
		if out.Unknown {
			pid = h.pid() // a new process: the old one may still be "running" the op
			w.pause(ctx, rnd, 50*time.Millisecond)
			continue
		}
		if out.Gen > 0 {
			seen[key] = out.Gen
		}
		w.pause(ctx, rnd, 5*time.Millisecond)
	}
}

// regOutput turns a reply into the operation's output; ok false means the
// operation belongs in no history (a read with no answer, or a write the
// cell refused before applying it).
func (w *world) regOutput(in RegInput, r reply) (RegOutput, bool) {
	switch r.outcome() {
	case OK:
		var nr wire.NodeResponse
		if err := r.decode(&nr); err != nil {
			w.problem("register %s %s: %v", in.Op, in.Key, err)
			return RegOutput{}, false
		}
		out := RegOutput{OK: true, Gen: nr.Node.ContentGeneration}
		if in.Op == OpRead {
			if nr.Node.Contents != nil {
				out.Value = *nr.Node.Contents
			}
		}
		return out, true
	case Unknown:
		if in.Op == OpRead {
			return RegOutput{}, false
		}
		return RegOutput{Unknown: true}, true
	}
	if in.Op == OpCAS && r.Code == wire.CodePreconditionFailed {
		return RegOutput{OK: false}, true
	}
	return RegOutput{}, false
}

// finalRead reads key (linearizably) until it gets an answer or ctx ends,
// and adds the read to the history.
func (w *world) finalRead(ctx context.Context, h *regHistory, key string) (RegOutput, bool) {
	pid := h.pid()
	for i := 0; ctx.Err() == nil; i++ {
		in := RegInput{Key: key, Op: OpRead}
		call := w.now()
		r := do(ctx, w.hc, w.opTimeout, http.MethodGet, w.urls[i%len(w.urls)]+"/v1/nodes"+key, nil)
		ret := w.now()
		if out, ok := w.regOutput(in, r); ok {
			h.add(porcupine.Operation{ClientId: pid, Input: in, Call: call, Output: out, Return: ret})
			return out, true
		}
		w.pause(ctx, nil, 100*time.Millisecond)
	}
	return RegOutput{}, false
}

// LostWrites counts the acknowledged writes that the final state does not
// show: a write acknowledged with generation g is lost when the key's final
// generation is below g, or equal to g with other contents.
func LostWrites(acked []ackedWrite, final map[string]RegOutput) []string {
	var lost []string
	for _, a := range acked {
		f, ok := final[a.Key]
		switch {
		case !ok:
			continue // no final read: counted as a problem elsewhere
		case f.Gen < a.Gen:
			lost = append(lost, fmt.Sprintf("%s: write %q acknowledged at generation %d, final generation %d", a.Key, a.Value, a.Gen, f.Gen))
		case f.Gen == a.Gen && f.Value != a.Value:
			lost = append(lost, fmt.Sprintf("%s: write %q acknowledged at generation %d, final %q at the same generation", a.Key, a.Value, a.Gen, f.Value))
		}
	}
	return lost
}
