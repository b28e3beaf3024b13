package paxos

import (
	"flag"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	simSeeds = flag.Int("sim.seeds", 2000, "number of simulation seeds to run")
	simSeed  = flag.Int64("sim.seed", 0, "run only this simulation seed (replay)")
	simTrace = flag.Bool("sim.trace", false, "print the fault and leader trace of a replayed seed")
	simSteps = flag.Int("sim.steps", 0, "chaos steps per seed (0: default)")
)

// TestSimulation runs the seeded simulation of a five-replica cell under
// message loss, duplication, delay and reordering, partitions of several
// shapes, crashes and restarts from durable state, pauses longer than the
// lease and disk loss, and checks agreement, validity, durability, leases
// and progress after every step.
func TestSimulation(t *testing.T) {
	opt := defaultSimOptions()
	if *simSteps > 0 {
		opt.steps = *simSteps
	}
	if *simSeed != 0 {
		opt.trace = *simTrace
		res := newSim(*simSeed, opt).run()
		for _, l := range res.trace {
			t.Log(l)
		}
		if len(res.violations) > 0 {
			t.Fatalf("seed %d: %s", *simSeed, strings.Join(res.violations, "\n"))
		}
		t.Logf("simulation: seed %d, %d steps, %d commits, %d faults, 0 violations", *simSeed, res.steps, res.commits, res.faults)
		return
	}
	seeds := *simSeeds
	if testing.Short() {
		seeds = min(seeds, 200)
	}
	type outcome struct {
		seed int64
		res  simResult
	}
	var (
		mu       sync.Mutex
		failures []outcome
		steps    int
		commits  int
		faults   int
		wg       sync.WaitGroup
		next     = make(chan int64)
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for seed := range next {
				res := newSim(seed, opt).run()
				mu.Lock()
				steps += res.steps
				commits += res.commits
				faults += res.faults
				if len(res.violations) > 0 {
					failures = append(failures, outcome{seed, res})
				}
				mu.Unlock()
			}
		})
	}
	for i := 1; i <= seeds; i++ {
		next <- int64(i)
	}
	close(next)
	wg.Wait()
	for i, f := range failures {
		if i >= 5 {
			break
		}
		t.Errorf("seed %d: %s\nreplay: go test ./paxos -run 'TestSimulation$' -sim.seed=%d -sim.trace -v",
			f.seed, strings.Join(f.res.violations, "\n"), f.seed)
	}
	fmt.Printf("simulation: %d seeds, %d steps, %d violations (%d commits, %d faults)\n",
		seeds, steps, len(failures), commits, faults)
}

// TestSimulationCatchesBrokenAcceptor shows the checks can fail: acceptors
// that forget on restart what they promised and accepted must be caught.
func TestSimulationCatchesBrokenAcceptor(t *testing.T) {
	opt := defaultSimOptions()
	opt.forgetPromise = true
	opt.forgetAccepts = true
	opt.wipes = false
	opt.faultEvery = 8
	for seed := int64(1); seed <= 300; seed++ {
		res := newSim(seed, opt).run()
		if len(res.violations) > 0 {
			t.Logf("seed %d caught: %s", seed, res.violations[0])
			return
		}
	}
	t.Fatal("300 seeds with amnesiac acceptors and no violation: the checks cannot fail")
}

// TestSimulationCatchesBrokenLease shows the lease check can fail: a leader
// that counts its lease longer than its acceptors grant it must be caught
// holding it alongside its successor.
func TestSimulationCatchesBrokenLease(t *testing.T) {
	opt := defaultSimOptions()
	opt.longLease = true
	opt.faultEvery = 10
	for seed := int64(1); seed <= 300; seed++ {
		res := newSim(seed, opt).run()
		for _, v := range res.violations {
			if strings.HasPrefix(v, "lease:") {
				t.Logf("seed %d caught: %s", seed, v)
				return
			}
		}
	}
	t.Fatal("300 seeds with an over-long leader lease and no lease violation: the lease check cannot fail")
}

// TestCheckerCatchesBadHistories feeds the checker histories that break each
// property and expects each to be reported.
func TestCheckerCatchesBadHistories(t *testing.T) {
	tests := []struct {
		name string
		feed func(k *checker)
		want string
	}{
		{"two values for one slot", func(k *checker) {
			k.propose([]byte("a"))
			k.propose([]byte("b"))
			k.commit(1, Entry{Slot: 3, Value: Value{[]byte("a")}})
			k.commit(2, Entry{Slot: 3, Value: Value{[]byte("b")}})
		}, "agreement:"},
		{"a value nobody proposed", func(k *checker) {
			k.commit(1, Entry{Slot: 1, Value: Value{[]byte("ghost")}})
		}, "validity:"},
		{"two commands at one index", func(k *checker) {
			k.apply(1, 7, []byte("x"))
			k.apply(2, 7, []byte("y"))
		}, "apply order:"},
		{"commit lost across a restart", func(k *checker) {
			k.saved(1, 10)
			k.restarted(1, 4)
		}, "durability:"},
		{"two lease holders", func(k *checker) {
			k.leases(5, []NodeID{1, 2})
		}, "lease:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := newChecker()
			tc.feed(k)
			if len(k.violations) != 1 || !strings.HasPrefix(k.violations[0], tc.want) {
				t.Fatalf("violations = %q, want one starting with %q", k.violations, tc.want)
			}
		})
	}
	k := newChecker()
	k.propose([]byte("a"))
	k.commit(1, Entry{Slot: 1, Value: Value{[]byte("a")}})
	k.commit(2, Entry{Slot: 1, Value: Value{[]byte("a")}})
	k.commit(2, Entry{Slot: 2})
	k.saved(1, 3)
	k.restarted(1, 3)
	k.leases(1, []NodeID{4})
	if len(k.violations) != 0 {
		t.Fatalf("a good history was reported: %q", k.violations)
	}
}
