package dockerdrill

import (
	"context"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Register operations on one node: its contents and content_generation.
const (
	opRead  = iota // GET: returns contents and generation
	opWrite        // unconditional PUT: returns the new generation
	opCAS          // PUT with if_content_generation
)

// initValue is what every register holds before the workload (generation 1).
const initValue = "init"

type regInput struct {
	Op     int
	Key    string
	Val    string // write and CAS
	Expect uint64 // CAS: the generation it requires
}

type regOutput struct {
	OK       bool // read/write: answered; CAS: applied
	NotFound bool // the node did not exist
	Val      string
	Gen      uint64
	Unknown  bool // no answer: maybe applied, maybe not
}

type regState struct {
	Val string
	Gen uint64
}

// registerModel is a register per key that also counts its writes: every
// applied write raises the generation by exactly one (API.md, Nodes).
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return regState{Val: initValue, Gen: 1} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(regState), input.(regInput), output.(regOutput)
		next := regState{Val: in.Val, Gen: s.Gen + 1}
		switch in.Op {
		case opRead:
			if out.NotFound {
				return s.Gen == 0, s
			}
			return out.Val == s.Val && out.Gen == s.Gen, s
		case opWrite:
			if out.Unknown {
				return true, next
			}
			return out.Gen == next.Gen && out.Val == in.Val, next
		case opCAS:
			match := s.Gen == in.Expect
			switch {
			case out.Unknown && match:
				return true, next
			case out.Unknown:
				return true, s
			case out.OK:
				return match && out.Gen == next.Gen, next
			case out.NotFound:
				return s.Gen == 0, s
			default:
				return !match, s
			}
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := fmt.Sprintf("%q@%d", out.Val, out.Gen)
		switch {
		case out.Unknown:
			res = "?"
		case out.NotFound:
			res = "not found"
		case in.Op == opCAS && !out.OK:
			res = "precondition failed"
		}
		switch in.Op {
		case opRead:
			return fmt.Sprintf("read(%s) -> %s", in.Key, res)
		case opWrite:
			return fmt.Sprintf("write(%s, %q) -> %s", in.Key, in.Val, res)
		}
		return fmt.Sprintf("cas(%s, gen %d, %q) -> %s", in.Key, in.Expect, in.Val, res)
	},
	DescribeState: func(state any) string {
		s := state.(regState)
		return fmt.Sprintf("%q@%d", s.Val, s.Gen)
	},
}

// registers drives the register workload: clients read, write and
// compare-and-set a few nodes through random replicas, and create uniquely
// named nodes under a log directory (the "acknowledged writes" that must all
// survive). It records a porcupine history.
type registers struct {
	cl    *client
	urls  func() []string
	keys  []string // node paths
	log   string   // directory of the acknowledged creates
	start time.Time

	mu         sync.Mutex
	ops        []porcupine.Operation
	acked      map[string]bool // log node names whose create was answered 201
	tried      map[string]bool // every log node name ever sent
	counts     map[string]int  // "<op> <outcome>"
	okAt       []int64         // times of answered workload operations (for the longest gap)
	final      bool            // the workload is over: finalReads is reading
	nextClient int
	problems   []string
}

func newRegisters(cl *client, urls func() []string, cellName string, nKeys int, start time.Time) *registers {
	r := &registers{cl: cl, urls: urls, log: fmt.Sprintf("/ls/%s/drill/log", cellName), start: start,
		acked: map[string]bool{}, tried: map[string]bool{}, counts: map[string]int{}}
	for i := range nKeys {
		r.keys = append(r.keys, fmt.Sprintf("/ls/%s/drill/reg/k%d", cellName, i))
	}
	return r
}

func (r *registers) now() int64 { return int64(time.Since(r.start)) }

// setup creates every register with initValue (generation 1).
func (r *registers) setup(ctx context.Context) error {
	for _, k := range r.keys {
		rep, err := r.cl.call(ctx, 5*time.Second, http.MethodPut, r.urls()[0]+"/v1/nodes"+k, map[string]any{"contents": initValue})
		if err != nil {
			return err
		}
		var nb nodeBody
		if rep.Status != http.StatusCreated || rep.decode(&nb) != nil || nb.Node.ContentGeneration != 1 {
			return fmt.Errorf("creating %s: %d %s", k, rep.Status, rep.Raw)
		}
	}
	rep, err := r.cl.call(ctx, 5*time.Second, http.MethodPut, r.urls()[0]+"/v1/nodes"+r.log, map[string]any{"dir": true})
	if err != nil {
		return err
	}
	if rep.Status >= 300 {
		return fmt.Errorf("creating %s: %d %s", r.log, rep.Status, rep.Raw)
	}
	return nil
}

// run starts n clients; they stop when ctx ends, and the returned function
// waits for them.
func (r *registers) run(ctx context.Context, n int) (wait func()) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { r.client(ctx, i) })
	}
	return wg.Wait
}

func (r *registers) newClientID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextClient
	r.nextClient++
	return id
}

func (r *registers) count(what string) {
	r.mu.Lock()
	r.counts[what]++
	r.mu.Unlock()
}

// record adds one operation; an unknown outcome never returns (it may take
// effect at any later time), and its client id is retired.
func (r *registers) record(cid *int, in regInput, out regOutput, call int64) {
	ret := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	op := porcupine.Operation{ClientId: *cid, Input: in, Call: call, Output: out, Return: ret}
	if out.Unknown {
		op.Return = math.MaxInt64
	} else if !r.final {
		r.okAt = append(r.okAt, ret)
	}
	r.ops = append(r.ops, op)
	if out.Unknown {
		*cid = r.nextClient
		r.nextClient++
	}
}

func (r *registers) client(ctx context.Context, worker int) {
	rnd := mrand.New(mrand.NewPCG(uint64(worker), uint64(time.Now().UnixNano())))
	cid := r.newClientID()
	known := map[string]uint64{} // last generation seen per key
	for seq := 0; ctx.Err() == nil; seq++ {
		urls := r.urls()
		url := urls[rnd.IntN(len(urls))]
		key := r.keys[rnd.IntN(len(r.keys))]
		val := fmt.Sprintf("w%d-%d", worker, seq)
		switch p := rnd.IntN(100); {
		case p < 40:
			r.read(url, key, &cid, known)
		case p < 60:
			r.write(url, regInput{Op: opWrite, Key: key, Val: val}, &cid, known)
		case p < 80 && known[key] != 0:
			r.write(url, regInput{Op: opCAS, Key: key, Val: val, Expect: known[key]}, &cid, known)
		case p < 80:
			r.read(url, key, &cid, known) // a CAS needs a generation to expect
		default:
			r.create(url, val)
		}
		time.Sleep(time.Duration(5+rnd.IntN(20)) * time.Millisecond) // think time
	}
}

// opTimeout bounds one request: long enough for a failover, short enough
// that a client does not sit on a partitioned replica.
const opTimeout = 3 * time.Second

func (r *registers) read(url, key string, cid *int, known map[string]uint64) {
	call := r.now()
	rep, err := r.cl.call(context.Background(), opTimeout, http.MethodGet, url+"/v1/nodes"+key, nil)
	var nb nodeBody
	switch {
	case notSent(err):
		r.count("read refused")
	case err != nil:
		r.count("read no-answer") // a read that got no answer has no effect: drop it
	case rep.Status == http.StatusOK && rep.decode(&nb) == nil:
		r.count("read ok")
		known[key] = nb.Node.ContentGeneration
		r.record(cid, regInput{Op: opRead, Key: key}, regOutput{OK: true, Val: nb.Node.Contents, Gen: nb.Node.ContentGeneration}, call)
	case rep.Code == "not_found":
		r.count("read not-found")
		r.record(cid, regInput{Op: opRead, Key: key}, regOutput{NotFound: true}, call)
	default:
		r.count("read " + errName(rep))
	}
}

func (r *registers) write(url string, in regInput, cid *int, known map[string]uint64) {
	name := map[int]string{opWrite: "write", opCAS: "cas"}[in.Op]
	body := map[string]any{"contents": in.Val}
	if in.Op == opCAS {
		body["if_content_generation"] = in.Expect
	}
	call := r.now()
	rep, err := r.cl.call(context.Background(), opTimeout, http.MethodPut, url+"/v1/nodes"+in.Key, body)
	var nb nodeBody
	switch {
	case notSent(err):
		r.count(name + " refused")
	case err != nil:
		r.count(name + " no-answer")
		r.record(cid, in, regOutput{Unknown: true}, call)
	case (rep.Status == http.StatusOK || rep.Status == http.StatusCreated) && rep.decode(&nb) == nil:
		r.count(name + " ok")
		known[in.Key] = nb.Node.ContentGeneration
		r.record(cid, in, regOutput{OK: true, Val: nb.Node.Contents, Gen: nb.Node.ContentGeneration}, call)
	case in.Op == opCAS && rep.Code == "precondition_failed":
		r.count(name + " precondition-failed")
		delete(known, in.Key)
		r.record(cid, in, regOutput{}, call)
	case rep.Code == "not_found":
		r.count(name + " not-found")
		r.record(cid, in, regOutput{NotFound: true}, call)
	case definitelyNotApplied(rep):
		r.count(name + " " + errName(rep))
	default:
		r.count(name + " " + errName(rep))
		r.record(cid, in, regOutput{Unknown: true}, call)
	}
}

// create makes log/<name> with create_only: a 201 is an acknowledged write.
func (r *registers) create(url, name string) {
	r.mu.Lock()
	r.tried[name] = true
	r.mu.Unlock()
	rep, err := r.cl.call(context.Background(), opTimeout, http.MethodPut, url+"/v1/nodes"+r.log+"/"+name,
		map[string]any{"contents": name, "create_only": true})
	switch {
	case notSent(err):
		r.count("create refused")
	case err != nil:
		r.count("create no-answer")
	case rep.Status == http.StatusCreated:
		r.count("create ok")
		r.mu.Lock()
		r.acked[name] = true
		r.mu.Unlock()
	case rep.Code == "already_exists":
		// The name is new: only a second application of this very request
		// can have created it.
		r.count("create already-exists")
		r.mu.Lock()
		r.problems = append(r.problems, fmt.Sprintf("create_only of the new node %s answered already_exists: applied twice?", name))
		r.mu.Unlock()
	default:
		r.count("create " + errName(rep))
	}
}

func errName(rep reply) string {
	if rep.Code != "" {
		return rep.Code
	}
	return fmt.Sprintf("http-%d", rep.Status)
}

// finalReads reads every register through every replica (linearizable),
// adding the reads to the history.
func (r *registers) finalReads(urls []string) {
	r.mu.Lock()
	r.final = true
	r.mu.Unlock()
	cid := r.newClientID()
	for _, url := range urls {
		for _, k := range r.keys {
			r.read(url, k, &cid, map[string]uint64{})
		}
	}
}

// history returns the recorded operations, with the unknown outcomes
// resolved as far as the history itself proves them.
func (r *registers) history() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return tightenUnknown(slices.Clone(r.ops))
}

// tightenUnknown bounds the return of an unanswered write whose value (every
// written value is unique) some answered operation observed: the write took
// effect before that answer, so it returns by then. Without this, every
// unanswered write stays open forever and the search grows with 2^unknowns.
func tightenUnknown(ops []porcupine.Operation) []porcupine.Operation {
	seen := map[string]int64{} // key and value -> earliest answer showing it
	for _, op := range ops {
		out := op.Output.(regOutput)
		if out.Unknown || !out.OK {
			continue
		}
		k := op.Input.(regInput).Key + "\x00" + out.Val
		if t, ok := seen[k]; !ok || op.Return < t {
			seen[k] = op.Return
		}
	}
	for i, op := range ops {
		in := op.Input.(regInput)
		if !op.Output.(regOutput).Unknown || in.Op == opRead {
			continue
		}
		if t, ok := seen[in.Key+"\x00"+in.Val]; ok && t >= op.Call {
			ops[i].Return = t
		}
	}
	return ops
}

// summary is one line of counts per operation kind, sorted.
func (r *registers) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	for k, v := range r.counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// longestGap is the longest time without an answered register operation
// from the first one until end (both since start), and when it began.
func (r *registers) longestGap(end time.Duration) (gap, at time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts := slices.Clone(r.okAt)
	slices.Sort(ts)
	ts = append(ts, int64(end))
	for i := 1; i < len(ts); i++ {
		if d := time.Duration(ts[i] - ts[i-1]); d > gap {
			gap, at = d, time.Duration(ts[i-1])
		}
	}
	return gap, at
}

// checkLog lists the log directory on url (stale: that replica's own state)
// and reports acknowledged creates that are missing and names that were
// never sent.
func (r *registers) checkLog(ctx context.Context, url string, stale bool) (missing, unknown []string, err error) {
	q := "?children=true"
	if stale {
		q += "&stale=true"
	}
	rep, err := r.cl.call(ctx, 5*time.Second, http.MethodGet, url+"/v1/nodes"+r.log+q, nil)
	if err != nil {
		return nil, nil, err
	}
	var nb nodeBody
	if rep.Status != http.StatusOK || rep.decode(&nb) != nil {
		return nil, nil, fmt.Errorf("listing %s: %d %s", r.log, rep.Status, rep.Raw)
	}
	have := map[string]bool{}
	for _, c := range nb.Node.Children {
		have[c] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range r.acked {
		if !have[name] {
			missing = append(missing, name)
		}
	}
	for name := range have {
		if !r.tried[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(unknown)
	return missing, unknown, nil
}
