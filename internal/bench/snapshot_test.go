package bench

import (
	"fmt"
	"testing"

	"github.com/lockd/lockd/lockservice"
)

// BenchmarkMachineSnapshot measures what a replica's Paxos loop does every
// SnapshotEvery slots (the state machine's image of itself), and what a
// restarting replica does first (Restore), for namespaces of 10,000 and
// 100,000 nodes written by the put workload (64-byte contents).
func BenchmarkMachineSnapshot(b *testing.B) {
	for _, nodes := range []int{10_000, 100_000} {
		m := filledMachine(b, nodes)
		b.Run(fmt.Sprintf("nodes=%d/snapshot", nodes), func(b *testing.B) {
			var size int
			for b.Loop() {
				data, err := m.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				size = len(data)
			}
			b.ReportMetric(float64(size), "bytes")
		})
		b.Run(fmt.Sprintf("nodes=%d/restore", nodes), func(b *testing.B) {
			data, err := m.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				r, err := lockservice.New(lockservice.Config{Cell: "local"})
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Restore(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func filledMachine(b *testing.B, nodes int) *lockservice.Machine {
	b.Helper()
	m, err := lockservice.New(lockservice.Config{Cell: "local"})
	if err != nil {
		b.Fatal(err)
	}
	val := value(64)
	for i := range nodes {
		cmd, err := lockservice.Encode(lockservice.Command{Kind: lockservice.KindPutNode, NowMs: 1,
			Path: fmt.Sprintf("/ls/local/bench/put/run/c%d/%d", i%64, i), Contents: &val})
		if err != nil {
			b.Fatal(err)
		}
		if r, ok := m.Apply(uint64(i+1), cmd).(lockservice.Result); !ok || r.Err != nil {
			b.Fatalf("put %d: %v", i, r.Err)
		}
	}
	return m
}
