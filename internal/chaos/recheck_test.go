package chaos

import (
	"flag"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var flagHistory = flag.String("chaos.history", "", "re-check a registers.json artifact and narrow a violation down (TestRecheckHistory)")

// TestRecheckHistory checks a register history saved by a failed run again,
// piece by piece, and for a piece that is not linearizable prints its
// shortest failing prefix: the operation that cannot be explained and what
// ran around it.
//
//	go test ./internal/chaos -run TestRecheckHistory -chaos.history=/tmp/lockd-chaos-seed1-.../registers.json -v
func TestRecheckHistory(t *testing.T) {
	if *flagHistory == "" {
		t.Skip("set -chaos.history to a registers.json artifact")
	}
	ops, err := ReadRegisterHistory(*flagHistory)
	if err != nil {
		t.Fatal(err)
	}
	ops = Resolve(ops)
	bad := 0
	for _, piece := range RegisterModel.Partition(ops) {
		if res, _ := CheckRegisters(piece, time.Minute); res != porcupine.Illegal {
			continue
		}
		bad++
		sort.SliceStable(piece, func(i, j int) bool { return piece[i].Call < piece[j].Call })
		n := sort.Search(len(piece), func(n int) bool { // shortest prefix that fails
			res, _ := CheckRegisters(prefix(piece[:n]), time.Minute)
			return res == porcupine.Illegal
		})
		last := piece[n-1]
		t.Errorf("%s: not linearizable; the first operation that cannot be explained:\n  %s", last.Input.(RegInput).Key, describe(last))
		for _, o := range piece[:n] {
			if o.Return > last.Call-int64(200*time.Millisecond) {
				t.Logf("  around it: %s", describe(o))
			}
		}
	}
	t.Logf("%d operations, %d pieces not linearizable", len(ops), bad)
}

// prefix returns ops cut to a prefix: an operation still open at the cut
// (its return past the last call) stays open to the end.
func prefix(ops []porcupine.Operation) []porcupine.Operation {
	var end int64
	for _, o := range ops {
		end = max(end, o.Call)
	}
	out := append([]porcupine.Operation(nil), ops...)
	for i := range out {
		if out[i].Return > end {
			out[i].Return = end + 1
		}
	}
	return out
}

func describe(o porcupine.Operation) string {
	return fmt.Sprintf("client %d [%s .. %s] %s", o.ClientId, ts(o.Call), ts(o.Return), RegisterModel.DescribeOperation(o.Input, o.Output))
}
