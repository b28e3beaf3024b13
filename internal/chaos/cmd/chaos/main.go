// Command chaos runs the lockd fault-testing harness (package
// internal/chaos) for as long as asked: a real five-process cell on
// 127.0.0.1 under concurrent workloads and a seeded fault schedule, then the
// checks. It prints one summary line per run and exits 1 if any run failed.
//
//	go run ./internal/chaos/cmd/chaos -duration 30m
//	go run ./internal/chaos/cmd/chaos -seed 42 -duration 1m -artifacts /tmp/chaos
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lockd/lockd/internal/chaos"
)

func main() {
	var (
		seed      = flag.Int64("seed", 0, "first seed (default: from the clock)")
		runs      = flag.Int("runs", 1, "runs, with seeds seed, seed+1, ...")
		duration  = flag.Duration("duration", 5*time.Minute, "workload time of each run")
		clients   = flag.Int("clients", 8, "register clients (lock clients: half as many)")
		faults    = flag.Bool("faults", true, "inject faults")
		workloads = flag.String("workloads", "register,lock,session", "comma-separated workloads")
		skip      = flag.String("skip", "", "comma-separated fault kinds to leave out, of: "+strings.Join(chaos.FaultKinds, ","))
		artifacts = flag.String("artifacts", "", "directory for the artifacts of failed runs (default: a temporary directory)")
		binary    = flag.String("lockd", "", "lockd binary to run (default: build ./cmd/lockd)")
	)
	flag.Parse()
	if *seed == 0 {
		*seed = time.Now().UnixNano() % 1_000_000
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	failed := 0
	for i := range *runs {
		cfg := chaos.Config{Seed: *seed + int64(i), Duration: *duration, Clients: *clients, Faults: *faults,
			Workloads: strings.Split(*workloads, ","), ArtifactsDir: *artifacts, Binary: *binary, Logf: logger.Printf}
		if *skip != "" {
			cfg.SkipFaults = strings.Split(*skip, ",")
		}
		sum, err := chaos.Run(ctx, cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos: seed %d: %v\n", cfg.Seed, err)
			os.Exit(2)
		}
		fmt.Println(sum)
		if !sum.OK() {
			failed++
			for _, v := range sum.Violations {
				fmt.Println("  violation:", v)
			}
			for _, p := range sum.Problems {
				fmt.Println("  problem:", p)
			}
			fmt.Println("  artifacts:", sum.Artifacts)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if failed > 0 {
		os.Exit(1)
	}
}
