// Command lockd-bench is `lockd bench` as a program of its own, for
// scripts/bench-compare.sh and for machines whose lockd binary predates the
// subcommand.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockd/lockd/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := bench.NewCommand()
	cmd.Use = "lockd-bench"
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockd-bench:", err)
		os.Exit(1)
	}
}
