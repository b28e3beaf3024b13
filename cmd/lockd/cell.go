package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockd/lockd/internal/config"
)

func cellCmd() *cobra.Command {
	var (
		replicas int
		dir      string
		host     string
		basePort int
		cell     string
	)
	cmd := &cobra.Command{
		Use:   "cell",
		Short: "Run a whole cell on this machine: N replica processes on " + "127.0.0.1",
		Long: `Run a development cell: N lockd replica processes (default 5) on one host,
each with its own data directory under --dir and its own client, peer and
gossip ports. A new cell (no data directories yet) is bootstrapped; an
existing one restarts on its data. Ctrl-C stops every replica.

Replica i listens for clients on base-port+i-1, for peers on base-port+100+i-1
and for gossip on base-port+200+i-1. The dashboard is on every replica at /ui/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if replicas < 1 || replicas > 9 {
				return usageError{fmt.Errorf("--replicas %d: want 1 to 9", replicas)}
			}
			return runCell(cmd.Context(), cmd.OutOrStdout(), cellPlan{n: replicas, dir: dir, host: host, base: basePort, cell: cell})
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", 5, "number of replicas")
	cmd.Flags().StringVar(&dir, "dir", "data/local-cell", "parent of the replicas' data directories")
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "address every replica listens on")
	cmd.Flags().IntVar(&basePort, "base-port", 7001, "first client port")
	cmd.Flags().StringVar(&cell, "cell", "local", "cell name (node paths are /ls/<cell>/...)")
	return cmd
}

type cellPlan struct {
	n    int
	dir  string
	host string
	base int
	cell string
}

// configs returns each replica's configuration; bootstrap only when no
// replica has a data directory yet (a brand-new cell). A replica whose
// directory alone is missing lost its disk: it must rejoin, not bootstrap.
func (p cellPlan) configs() ([]config.Config, error) {
	var reps []config.Replica
	for i := 1; i <= p.n; i++ {
		reps = append(reps, config.Replica{
			ID:     uint32(i),
			Client: fmt.Sprintf("%s:%d", p.host, p.base+i-1),
			Peer:   fmt.Sprintf("%s:%d", p.host, p.base+100+i-1),
			Gossip: fmt.Sprintf("%s:%d", p.host, p.base+200+i-1),
		})
	}
	fresh := true
	for i := 1; i <= p.n; i++ {
		if _, err := os.Stat(filepath.Join(p.dir, fmt.Sprintf("r%d", i))); err == nil {
			fresh = false
		}
	}
	var out []config.Config
	for i := 1; i <= p.n; i++ {
		c := config.Default()
		c.Cell = p.cell
		c.ID = uint32(i)
		c.DataDir = filepath.Join(p.dir, fmt.Sprintf("r%d", i))
		c.Bootstrap = fresh
		c.Replicas = reps
		if err := c.Validate(); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func runCell(ctx context.Context, out io.Writer, p cellPlan) error {
	cfgs, err := p.configs()
	if err != nil {
		return usageError{err}
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var mu sync.Mutex // serializes output lines
	var wg sync.WaitGroup
	var procs []*exec.Cmd
	for _, c := range cfgs {
		path := filepath.Join(p.dir, fmt.Sprintf("r%d.json", c.ID))
		data, _ := json.MarshalIndent(c, "", "  ")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
		proc := exec.Command(exe, "serve", "--config", path)
		proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		pipe, err := proc.StdoutPipe()
		if err != nil {
			return err
		}
		proc.Stderr = proc.Stdout
		if err := proc.Start(); err != nil {
			stopAll(procs)
			return fmt.Errorf("starting replica %d: %w", c.ID, err)
		}
		procs = append(procs, proc)
		prefix := fmt.Sprintf("[r%d] ", c.ID)
		wg.Go(func() {
			sc := bufio.NewScanner(pipe)
			sc.Buffer(make([]byte, 64*1024), 1<<20)
			for sc.Scan() {
				mu.Lock()
				fmt.Fprintln(out, prefix+sc.Text())
				mu.Unlock()
			}
		})
	}
	mu.Lock()
	fmt.Fprintf(out, "lockd cell %q: %d replicas under %s\n", p.cell, p.n, p.dir)
	for _, c := range cfgs {
		fmt.Fprintf(out, "  replica %d  http://%s  (dashboard http://%s/ui/)\n", c.ID, c.Self().Client, c.Self().Client)
	}
	fmt.Fprintln(out, "Ctrl-C stops the cell.")
	mu.Unlock()

	exited := make(chan int, len(procs))
	for i, proc := range procs {
		go func() {
			err := proc.Wait()
			mu.Lock()
			fmt.Fprintf(out, "[r%d] exited: %v\n", i+1, err)
			mu.Unlock()
			exited <- i
		}()
	}
	<-ctx.Done()
	stopAll(procs)
	deadline := time.After(10 * time.Second)
	for range procs {
		select {
		case <-exited:
		case <-deadline:
			for _, proc := range procs {
				_ = proc.Process.Kill()
			}
		}
	}
	wg.Wait()
	return nil
}

func stopAll(procs []*exec.Cmd) {
	for _, proc := range procs {
		if proc.Process != nil {
			_ = proc.Process.Signal(syscall.SIGTERM)
		}
	}
}
