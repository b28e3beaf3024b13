package chaos

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// regState is one register. Until the first read (every key's history starts
// with the read that follows its creation), it is not known.
type regState struct {
	Known bool
	Value string
	Gen   uint64
}

// registerModel: reads see the current (contents, generation); a write sets
// the contents and raises the generation by one; a compare-and-set does so
// only when the generation it names is current. An operation of unknown
// outcome may or may not have taken effect, hence the nondeterminism.
var registerModel = porcupine.NondeterministicModel{
	Partition: partitionRegisters,
	Init:      func() []any { return []any{regState{}} },
	Step: func(state, input, output any) []any {
		st, in, out := state.(regState), input.(RegInput), output.(RegOutput)
		if !st.Known {
			if in.Op != OpRead || out.Unknown {
				return nil
			}
			return []any{regState{Known: true, Value: out.Value, Gen: out.Gen}}
		}
		next := regState{Known: true, Value: in.Value, Gen: st.Gen + 1}
		switch {
		case in.Op == OpRead:
			if out.Value == st.Value && out.Gen == st.Gen {
				return []any{st}
			}
		case in.Op == OpCAS && st.Gen != in.Expect:
			if out.Unknown || !out.OK {
				return []any{st}
			}
		case out.Unknown:
			return []any{st, next} // it did not happen, or it did
		case out.OK && out.Gen == next.Gen:
			return []any{next}
		}
		return nil
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	Hash: func(state any) uint64 {
		st := state.(regState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%v|%d|%s", st.Known, st.Gen, st.Value)
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(RegInput), output.(RegOutput)
		res := "?"
		switch {
		case out.Unknown:
		case in.Op == OpRead:
			res = fmt.Sprintf("%q@%d", out.Value, out.Gen)
		case in.Op == OpCAS && !out.OK:
			res = "mismatch"
		default:
			res = fmt.Sprintf("@%d", out.Gen)
		}
		switch in.Op {
		case OpRead:
			return fmt.Sprintf("read(%s) → %s", in.Key, res)
		case OpWrite:
			return fmt.Sprintf("write(%s, %q) → %s", in.Key, in.Value, res)
		default:
			return fmt.Sprintf("cas(%s, @%d, %q) → %s", in.Key, in.Expect, in.Value, res)
		}
	},
	DescribeState: func(state any) string {
		st := state.(regState)
		if !st.Known {
			return "(not read yet)"
		}
		return fmt.Sprintf("%q@%d", st.Value, st.Gen)
	},
}

// RegisterModel is the Porcupine model of the register workload.
var RegisterModel = registerModel.ToModel()

// chunkMin is the least number of operations in one piece of a key's
// history (see partitionRegisters).
var chunkMin = 400

// partitionRegisters splits a history by key, and each key's history into
// pieces Porcupine can check one by one: a piece ends at a moment no
// operation spans (every earlier one returned, no later one was called), and
// the next starts with a synthetic read of the state there, which the
// generations make certain: the contents of the highest generation any
// operation so far wrote or read. (An operation of unknown outcome that
// Resolve kept returns when the generation it could have taken is known, so
// no cut separates it from that.)
func partitionRegisters(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := op.Input.(RegInput).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	sort.Strings(keys)
	var out [][]porcupine.Operation
	for _, k := range keys {
		out = append(out, cutKey(k, byKey[k])...)
	}
	return out
}

func cutKey(key string, ops []porcupine.Operation) [][]porcupine.Operation {
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	var out [][]porcupine.Operation
	var cur []porcupine.Operation
	lastReturn := int64(math.MinInt64)
	valueOf := map[uint64]string{}
	var top uint64
	topKnown := false
	for _, op := range ops {
		if len(cur) >= chunkMin && lastReturn < op.Call && topKnown {
			out = append(out, cur)
			at := lastReturn + (op.Call-lastReturn)/2
			cur = []porcupine.Operation{{ClientId: 0, Input: RegInput{Key: key, Op: OpRead}, Call: at,
				Output: RegOutput{OK: true, Value: valueOf[top], Gen: top}, Return: at}}
		}
		cur = append(cur, op)
		lastReturn = max(lastReturn, op.Return)
		in, res := op.Input.(RegInput), op.Output.(RegOutput)
		if res.Unknown || (in.Op == OpCAS && !res.OK) {
			continue
		}
		v := res.Value
		if in.Op != OpRead {
			v = in.Value
		}
		valueOf[res.Gen] = v
		if res.Gen >= top {
			top, topKnown = res.Gen, true
		}
	}
	return append(out, cur)
}

// Resolve prepares a register history for Porcupine. Since every write
// writes a value of its own and raises the generation by exactly one, the
// history often tells what became of an operation of unknown outcome:
//   - a write (or compare-and-set) whose value some read saw took effect at
//     that read's generation, before the first operation that knew that
//     generation (or a higher one) returned: it gets that generation as its
//     output and that time as its return;
//   - one whose value nobody saw can only have taken a generation that no
//     known operation accounts for (a gap), and only before the first
//     operation that knew a generation at or above the gap returned: it
//     keeps its unknown output (it may not have taken effect at all) and
//     returns then. If no gap is left for it, it never took effect as far as
//     anyone could see: it is dropped.
//
// Either way it ends up with a bounded return, which keeps the search local
// (and lets partitionRegisters cut the history), and the resolved history
// is linearizable exactly when the original is, for a cell whose generations
// behave as API.md says.
func Resolve(ops []porcupine.Operation) []porcupine.Operation {
	var end int64
	for _, op := range ops {
		end = max(end, op.Return, op.Call)
	}
	keys := map[string]*keyInfo{}
	for _, op := range ops {
		in, out := op.Input.(RegInput), op.Output.(RegOutput)
		k := keys[in.Key]
		if k == nil {
			k = &keyInfo{returned: map[uint64]int64{}, seenAt: map[string]uint64{}}
			keys[in.Key] = k
		}
		if !k.hasFirst || op.Call < k.first.Call {
			k.first, k.hasFirst = op, true
		}
		if out.Unknown || (in.Op == OpCAS && !out.OK) {
			continue
		}
		if r, ok := k.returned[out.Gen]; !ok || op.Return < r {
			k.returned[out.Gen] = op.Return
		}
		if in.Op == OpRead {
			k.seenAt[out.Value] = out.Gen
		}
	}
	for _, k := range keys {
		k.index()
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		in, res := op.Input.(RegInput), op.Output.(RegOutput)
		if !res.Unknown {
			out = append(out, op)
			continue
		}
		k := keys[in.Key]
		if g, ok := k.seenAt[in.Value]; ok && in.Op != OpRead {
			op.Output = RegOutput{OK: true, Gen: g}
			op.Return = max(op.Call, k.knownBy(g))
		} else {
			deadline := k.gapDeadline()
			if op.Call >= deadline {
				continue // no generation is left for it
			}
			op.Return = min(deadline, end+1)
		}
		out = append(out, op)
	}
	return out
}

// keyInfo is what a key's history says about its generations.
type keyInfo struct {
	first    porcupine.Operation // earliest call: the read that starts the history
	hasFirst bool
	returned map[uint64]int64  // known generation → earliest return of an operation that saw or wrote it
	seenAt   map[string]uint64 // value → generation a read saw it at
	gens     []uint64          // the known generations, ascending
	soonest  []int64           // soonest[i]: earliest return among generations >= gens[i]
}

func (k *keyInfo) index() {
	for g := range k.returned {
		k.gens = append(k.gens, g)
	}
	sort.Slice(k.gens, func(i, j int) bool { return k.gens[i] < k.gens[j] })
	k.soonest = make([]int64, len(k.gens))
	m := int64(math.MaxInt64)
	for i := len(k.gens) - 1; i >= 0; i-- {
		m = min(m, k.returned[k.gens[i]])
		k.soonest[i] = m
	}
}

// knownBy returns when generation g (or a higher one) was first known: the
// earliest return of an operation that saw or wrote one.
func (k *keyInfo) knownBy(g uint64) int64 {
	i := sort.Search(len(k.gens), func(i int) bool { return k.gens[i] >= g })
	if i == len(k.gens) {
		return math.MaxInt64
	}
	return k.soonest[i]
}

// gapDeadline returns the time before which a write must have been called
// to own one of the generations no known operation accounts for: when the
// highest such gap was first known to be passed. Without gaps it is the
// history's start; without a first read, never.
func (k *keyInfo) gapDeadline() int64 {
	if !k.hasFirst || k.first.Input.(RegInput).Op != OpRead || k.first.Output.(RegOutput).Unknown {
		return math.MaxInt64
	}
	base := k.first.Output.(RegOutput).Gen
	for i := len(k.gens) - 1; i > 0; i-- {
		if k.gens[i] <= base {
			break
		}
		if k.gens[i-1] != k.gens[i]-1 { // a gap just below gens[i]
			return k.soonest[i]
		}
	}
	return math.MinInt64
}

// CheckRegisters runs Porcupine on a register history, within timeout (then
// the result is porcupine.Unknown). The info feeds porcupine.Visualize.
func CheckRegisters(ops []porcupine.Operation, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(RegisterModel, ops, timeout)
}

// ReadRegisterHistory loads a register history written to an artifacts
// directory (registers.json), to check it again or cut it down.
func ReadRegisterHistory(path string) ([]porcupine.Operation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw []struct {
		ClientId int
		Input    RegInput
		Call     int64
		Output   RegOutput
		Return   int64
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	ops := make([]porcupine.Operation, len(raw))
	for i, r := range raw {
		ops[i] = porcupine.Operation{ClientId: r.ClientId, Input: r.Input, Call: r.Call, Output: r.Output, Return: r.Return}
	}
	return ops, nil
}
