package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// op builds a register operation.
func op(client int, in RegInput, call int64, out RegOutput, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func initRead(key string) porcupine.Operation {
	return op(0, RegInput{Key: key, Op: OpRead}, 0, RegOutput{OK: true, Value: "init", Gen: 1}, 1)
}

func TestRegisterCheckerAcceptsLinearizable(t *testing.T) {
	h := []porcupine.Operation{
		initRead("a"), initRead("b"),
		op(1, RegInput{Key: "a", Op: OpWrite, Value: "x"}, 10, RegOutput{OK: true, Gen: 2}, 20),
		// Concurrent with the write: may see either state.
		op(2, RegInput{Key: "a", Op: OpRead}, 12, RegOutput{OK: true, Value: "init", Gen: 1}, 15),
		op(2, RegInput{Key: "a", Op: OpRead}, 25, RegOutput{OK: true, Value: "x", Gen: 2}, 30),
		op(3, RegInput{Key: "a", Op: OpCAS, Expect: 2, Value: "y"}, 31, RegOutput{OK: true, Gen: 3}, 40),
		op(2, RegInput{Key: "a", Op: OpCAS, Expect: 2, Value: "z"}, 41, RegOutput{OK: false}, 45),
		// An unknown write that did happen: a later read sees it.
		op(4, RegInput{Key: "b", Op: OpWrite, Value: "u"}, 10, RegOutput{Unknown: true}, 1000),
		op(5, RegInput{Key: "b", Op: OpRead}, 50, RegOutput{OK: true, Value: "u", Gen: 2}, 60),
		// An unknown CAS that did not: nobody sees it.
		op(6, RegInput{Key: "a", Op: OpCAS, Expect: 3, Value: "never"}, 50, RegOutput{Unknown: true}, 1000),
		op(7, RegInput{Key: "a", Op: OpRead}, 70, RegOutput{OK: true, Value: "y", Gen: 3}, 80),
	}
	if res, _ := CheckRegisters(h, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("linearizable history judged %s", res)
	}
}

func TestRegisterCheckerCatchesViolations(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    []porcupine.Operation
	}{
		{"stale read after an acknowledged write", []porcupine.Operation{
			initRead("a"),
			op(1, RegInput{Key: "a", Op: OpWrite, Value: "x"}, 10, RegOutput{OK: true, Gen: 2}, 20),
			op(2, RegInput{Key: "a", Op: OpRead}, 30, RegOutput{OK: true, Value: "init", Gen: 1}, 40),
		}},
		{"a refused write shows up", []porcupine.Operation{
			// "ghost" was answered no_leader, so it is in no history; a read sees it anyway.
			initRead("a"),
			op(2, RegInput{Key: "a", Op: OpRead}, 30, RegOutput{OK: true, Value: "ghost", Gen: 2}, 40),
		}},
		{"compare-and-set succeeds on a wrong generation", []porcupine.Operation{
			initRead("a"),
			op(1, RegInput{Key: "a", Op: OpWrite, Value: "x"}, 10, RegOutput{OK: true, Gen: 2}, 20),
			op(2, RegInput{Key: "a", Op: OpCAS, Expect: 1, Value: "y"}, 30, RegOutput{OK: true, Gen: 2}, 40),
		}},
		{"reads go back in time", []porcupine.Operation{
			initRead("a"),
			op(1, RegInput{Key: "a", Op: OpWrite, Value: "x"}, 10, RegOutput{Unknown: true}, 1000),
			op(2, RegInput{Key: "a", Op: OpRead}, 20, RegOutput{OK: true, Value: "x", Gen: 2}, 30),
			op(3, RegInput{Key: "a", Op: OpRead}, 40, RegOutput{OK: true, Value: "init", Gen: 1}, 50),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, info := CheckRegisters(tc.h, 10*time.Second)
			if res != porcupine.Illegal {
				t.Fatalf("non-linearizable history judged %s", res)
			}
			path := filepath.Join(t.TempDir(), "viz.html")
			if err := porcupine.VisualizePath(RegisterModel, info, path); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
				t.Fatalf("no visualization: %v", err)
			}
		})
	}
}

func TestRegisterHistoryResolvesUnknown(t *testing.T) {
	h := &regHistory{}
	h.add(initRead("a"))
	h.add(op(1, RegInput{Key: "a", Op: OpWrite, Value: "x"}, 10, RegOutput{Unknown: true}, 20))
	h.add(op(2, RegInput{Key: "a", Op: OpRead}, 30, RegOutput{OK: true, Value: "x", Gen: 2}, 40))
	ops := h.operations()
	if ops[1].Output.(RegOutput) != (RegOutput{OK: true, Gen: 2}) || ops[1].Return != 40 {
		t.Fatalf("unknown write seen by a read: %+v, want generation 2 returning when the read did", ops[1])
	}
	if len(h.acked) != 0 {
		t.Fatalf("unknown write counted as acknowledged: %v", h.acked)
	}
	if res, _ := CheckRegisters(ops, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("got %s", res)
	}
}

func TestLostWrites(t *testing.T) {
	acked := []ackedWrite{{"a", "x", 2}, {"a", "y", 3}, {"b", "u", 5}, {"c", "v", 2}}
	final := map[string]RegOutput{
		"a": {OK: true, Value: "y", Gen: 3}, // both present (x overwritten later)
		"b": {OK: true, Value: "w", Gen: 5}, // same generation, other contents: lost
		"c": {OK: true, Value: "init", Gen: 1},
	}
	lost := LostWrites(acked, final)
	if len(lost) != 2 || !strings.Contains(lost[0], `"u"`) || !strings.Contains(lost[1], `"v"`) {
		t.Fatalf("lost = %q, want u and v", lost)
	}
}

func TestLockCheckerAcceptsGoodHistory(t *testing.T) {
	grants := []Grant{
		{Lock: "L", Session: "A", Client: 1, Gen: 1, Call: 0, Return: 5, End: 10},
		{Lock: "L", Session: "B", Client: 2, Gen: 2, Call: 3, Return: 12, End: 20},
		{Lock: "L", Session: "A", Client: 1, Gen: 3, Call: 15, Return: 25, End: 25}, // lease lapsed at once
		{Lock: "M", Session: "B", Client: 2, Gen: 1, Call: 0, Return: 5, End: 30},
	}
	log := []ResourceWrite{
		{Lock: "L", Gen: 1, Session: "A", ID: "w1", CheckCall: 6},
		{Lock: "L", Gen: 2, Session: "B", ID: "w2", CheckCall: 13},
		{Lock: "L", Gen: 2, Session: "B", ID: "w3", CheckCall: 14},
		{Lock: "M", Gen: 1, Session: "B", ID: "w4", CheckCall: 14},
	}
	if bad := CheckLocks(grants, log, []string{"w1", "w2", "w3", "w4"}); len(bad) != 0 {
		t.Fatalf("good history judged bad: %q", bad)
	}
}

func TestLockCheckerCatchesViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		grants []Grant
		log    []ResourceWrite
		acked  []string
		want   string
	}{
		{name: "double holder", want: "two holders at once", grants: []Grant{
			{Lock: "L", Session: "A", Client: 1, Gen: 1, Call: 0, Return: 5, End: 15},
			{Lock: "L", Session: "B", Client: 2, Gen: 2, Call: 3, Return: 12, End: 20},
		}},
		{name: "double holder across a gap", want: "two holders at once", grants: []Grant{
			{Lock: "L", Session: "A", Client: 1, Gen: 1, Call: 0, Return: 5, End: 50},
			{Lock: "L", Session: "B", Client: 2, Gen: 2, Call: 3, Return: 12, End: 20},
			{Lock: "L", Session: "C", Client: 3, Gen: 3, Call: 21, Return: 30, End: 40},
		}},
		{name: "one generation granted twice", want: "granted twice", grants: []Grant{
			{Lock: "L", Session: "A", Client: 1, Gen: 4, Call: 0, Return: 5, End: 6},
			{Lock: "L", Session: "B", Client: 2, Gen: 4, Call: 7, Return: 12, End: 20},
		}},
		{name: "generation goes down", want: "a later acquire", grants: []Grant{
			{Lock: "L", Session: "A", Client: 1, Gen: 5, Call: 0, Return: 5, End: 6},
			{Lock: "L", Session: "B", Client: 2, Gen: 3, Call: 7, Return: 12, End: 20},
		}},
		{name: "stale sequencer accepted", want: "checked valid", grants: []Grant{
			{Lock: "L", Session: "A", Client: 1, Gen: 1, Call: 0, Return: 5, End: 10},
			{Lock: "L", Session: "B", Client: 2, Gen: 2, Call: 3, Return: 12, End: 20},
		}, log: []ResourceWrite{{Lock: "L", Gen: 1, Session: "A", ID: "w1", CheckCall: 14}}},
		{name: "resource accepts one generation from two sessions", want: "from sessions", log: []ResourceWrite{
			{Lock: "L", Gen: 1, Session: "A", ID: "w1", CheckCall: 6},
			{Lock: "L", Gen: 1, Session: "B", ID: "w2", CheckCall: 7},
		}},
		{name: "acknowledged resource write missing", want: "missing", acked: []string{"w9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := CheckLocks(tc.grants, tc.log, tc.acked)
			if len(bad) == 0 || !strings.Contains(strings.Join(bad, "\n"), tc.want) {
				t.Fatalf("violations %q, want one about %q", bad, tc.want)
			}
		})
	}
}

func TestSummaryLine(t *testing.T) {
	s := Summary{Seed: 7, Ops: 1234, Faults: 9, Linearizable: porcupine.Ok}
	want := "chaos: seed 7, ops 1234, faults 9, linearizable yes, lock violations 0, acknowledged writes lost 0"
	if s.String() != want || !s.OK() {
		t.Fatalf("%q (ok %v), want %q", s, s.OK(), want)
	}
	s.Linearizable, s.LockViolations, s.LostWrites = porcupine.Illegal, 2, 1
	want = "chaos: seed 7, ops 1234, faults 9, linearizable no, lock violations 2, acknowledged writes lost 1"
	if s.String() != want || s.OK() {
		t.Fatalf("%q (ok %v), want %q", s, s.OK(), want)
	}
}

func TestResolveUnknownOutcomes(t *testing.T) {
	w := func(client int, v string, call, ret int64, out RegOutput) porcupine.Operation {
		return op(client, RegInput{Key: "a", Op: OpWrite, Value: v}, call, out, ret)
	}
	read := func(client int, v string, g uint64, call, ret int64) porcupine.Operation {
		return op(client, RegInput{Key: "a", Op: OpRead}, call, RegOutput{OK: true, Value: v, Gen: g}, ret)
	}
	unknown := RegOutput{Unknown: true}
	h := []porcupine.Operation{
		initRead("a"),
		w(1, "seen", 10, 20, unknown), // read later at gen 2: resolved
		w(2, "gap", 12, 22, unknown),  // nobody saw it; gen 3 is a gap and it came in time: kept
		w(3, "x", 30, 40, RegOutput{OK: true, Gen: 4}),
		w(4, "late", 45, 50, unknown), // called after every gap closed: dropped
		read(5, "seen", 2, 15, 25),
		read(5, "x", 4, 60, 70),
	}
	got := Resolve(h)
	if len(got) != 6 {
		t.Fatalf("resolved history has %d operations, want 6 (late dropped): %v", len(got), got)
	}
	byValue := map[string]porcupine.Operation{}
	for _, o := range got {
		byValue[o.Input.(RegInput).Value] = o
	}
	if o := byValue["seen"]; o.Output.(RegOutput) != (RegOutput{OK: true, Gen: 2}) || o.Return != 25 {
		t.Errorf("seen: %+v, want generation 2, returning when it was read", o)
	}
	if o := byValue["gap"]; !o.Output.(RegOutput).Unknown || o.Return != 40 {
		t.Errorf("gap: %+v, want unknown, returning when generation 4 was known", o)
	}
	if _, ok := byValue["late"]; ok {
		t.Errorf("late was kept")
	}
	if res, _ := CheckRegisters(got, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("resolved history judged %s", res)
	}

	// Without "gap", generation 3 has no writer that could have made it: the
	// history is not linearizable, and stays so once resolved.
	bad := append([]porcupine.Operation{h[0], h[1]}, h[3:]...)
	if res, _ := CheckRegisters(Resolve(bad), 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("history with an unexplained generation judged %s", res)
	}
	// A write called after generation 4 was known cannot have made generation 3.
	bad = append([]porcupine.Operation{}, h...)
	bad[2] = w(2, "gap", 41, 42, unknown)
	if res, _ := CheckRegisters(Resolve(bad), 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("history whose only candidate for a generation came too late judged %s", res)
	}
}

func TestPartitionCutsQuietMoments(t *testing.T) {
	defer func(n int) { chunkMin = n }(chunkMin)
	chunkMin = 3
	var h []porcupine.Operation
	h = append(h, initRead("a"))
	for i := range 12 {
		at := int64(10 + 10*i)
		v := fmt.Sprintf("v%d", i)
		h = append(h, op(1, RegInput{Key: "a", Op: OpWrite, Value: v}, at, RegOutput{OK: true, Gen: uint64(2 + i)}, at+5))
		// A read overlapping the next write keeps some moments busy.
		h = append(h, op(2, RegInput{Key: "a", Op: OpRead}, at+6, RegOutput{OK: true, Value: v, Gen: uint64(2 + i)}, at+8))
	}
	parts := RegisterModel.Partition(h)
	if len(parts) < 3 {
		t.Fatalf("%d pieces, want several", len(parts))
	}
	for _, p := range parts[1:] {
		if p[0].Call != p[0].Return || p[0].Input.(RegInput).Op != OpRead {
			t.Fatalf("a piece does not start with the synthetic read: %+v", p[0])
		}
	}
	if res, _ := CheckRegisters(h, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("cut history judged %s", res)
	}
	// A stale read far from the start is still caught across the cuts.
	bad := append(append([]porcupine.Operation(nil), h...),
		op(3, RegInput{Key: "a", Op: OpRead}, 200, RegOutput{OK: true, Value: "v3", Gen: 5}, 201))
	if res, _ := CheckRegisters(bad, 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("stale read after the cuts judged %s", res)
	}
}
