package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lockd/lockd/internal/config"
)

// localCell is a cell of lockd replica processes on this machine, laid out
// as `lockd cell` lays it out: replica i's config at dir/r<i>.json, data in
// dir/r<i>. Either the bench started it (owned: it also stops it), or it
// was running already (CellDir) and the bench only kills and restarts its
// replicas.
type localCell struct {
	bin   string
	dir   string
	owned bool
	log   *logger
	cfgs  []config.Config
	paths []string // config file per replica

	mu    sync.Mutex
	procs map[int]*exec.Cmd // replicas this bench started, by index
	waits map[int]chan struct{}
}

// lockdBinary finds the lockd binary: cfg.Lockd, this program when it is
// lockd, bin/lockd, or lockd on PATH.
func lockdBinary(cfg Config) (string, error) {
	if cfg.Lockd != "" {
		return cfg.Lockd, nil
	}
	if exe, err := os.Executable(); err == nil && filepath.Base(exe) == "lockd" {
		return exe, nil
	}
	if p, err := filepath.Abs("bin/lockd"); err == nil {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("lockd"); err == nil {
		return p, nil
	}
	return "", errors.New("no lockd binary: build it (make build) or name it with --lockd")
}

// startLocalCell writes the configs of a new n-replica cell under dir and
// starts its replicas.
func startLocalCell(bin, dir string, n, base int, cell string, log *logger) (*localCell, error) {
	var reps []config.Replica
	for i := 1; i <= n; i++ {
		reps = append(reps, config.Replica{
			ID:     uint32(i),
			Client: fmt.Sprintf("127.0.0.1:%d", base+i-1),
			Peer:   fmt.Sprintf("127.0.0.1:%d", base+100+i-1),
			Gossip: fmt.Sprintf("127.0.0.1:%d", base+200+i-1),
		})
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &localCell{bin: bin, dir: dir, owned: true, log: log, procs: map[int]*exec.Cmd{}, waits: map[int]chan struct{}{}}
	for i := 1; i <= n; i++ {
		cfg := config.Default()
		cfg.Cell = cell
		cfg.ID = uint32(i)
		cfg.DataDir = filepath.Join(dir, fmt.Sprintf("r%d", i))
		cfg.Bootstrap = true
		cfg.Replicas = reps
		cfg.LogLevel = "warn"
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		data, _ := json.MarshalIndent(cfg, "", "  ")
		path := filepath.Join(dir, fmt.Sprintf("r%d.json", i))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, err
		}
		c.cfgs = append(c.cfgs, cfg)
		c.paths = append(c.paths, path)
	}
	for i := range c.cfgs {
		if err := c.start(i, true); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// openLocalCell finds a running cell's configs under dir (r1.json, r2.json,
// ... as `lockd cell --dir dir` writes them).
func openLocalCell(bin, dir string, log *logger) (*localCell, error) {
	c := &localCell{bin: bin, dir: dir, log: log, procs: map[int]*exec.Cmd{}, waits: map[int]chan struct{}{}}
	for i := 1; ; i++ {
		path := filepath.Join(dir, fmt.Sprintf("r%d.json", i))
		if _, err := os.Stat(path); err != nil {
			break
		}
		cfg, err := config.Load(path, func(string) string { return "" })
		if err != nil {
			return nil, err
		}
		c.cfgs = append(c.cfgs, cfg)
		c.paths = append(c.paths, path)
	}
	if len(c.cfgs) == 0 {
		return nil, fmt.Errorf("%s: no replica configs (r1.json, ...)", dir)
	}
	return c, nil
}

func (c *localCell) endpoints() []string {
	var eps []string
	for _, cfg := range c.cfgs {
		eps = append(eps, "http://"+cfg.Self().Client)
	}
	return eps
}

// index returns the replica index of a replica id ("3" → 2), or -1.
func (c *localCell) index(id string) int {
	n, err := strconv.Atoi(id)
	if err != nil {
		return -1
	}
	for i, cfg := range c.cfgs {
		if cfg.ID == uint32(n) {
			return i
		}
	}
	return -1
}

// start runs replica i. Its log goes to dir/r<i>.log.
func (c *localCell) start(i int, bootstrap bool) error {
	logf, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("r%d.log", c.cfgs[i].ID)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"serve", "--config", c.paths[i]}
	if !bootstrap {
		args = append(args, "--bootstrap=false")
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group (a terminal's ^C goes to the bench, which stops
	// the cell in order); an owned cell's replicas die with the bench.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.owned {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting replica %d: %w", c.cfgs[i].ID, err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.mu.Lock()
	c.procs[i], c.waits[i] = cmd, done
	c.mu.Unlock()
	_ = os.WriteFile(filepath.Join(c.dir, fmt.Sprintf("r%d.pid", c.cfgs[i].ID)), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	return nil
}

// pid returns replica i's process id: one this bench started, else
// dir/r<i>.pid when that process is a lockd serve of this config, else the
// lockd serve process in /proc whose --config is this replica's.
func (c *localCell) pid(i int) (int, error) {
	c.mu.Lock()
	cmd := c.procs[i]
	c.mu.Unlock()
	if cmd != nil {
		return cmd.Process.Pid, nil
	}
	if b, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("r%d.pid", c.cfgs[i].ID))); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && c.isReplica(p, i) {
			return p, nil
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		if p, err := strconv.Atoi(e.Name()); err == nil && c.isReplica(p, i) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("replica %d: no running lockd serve --config %s", c.cfgs[i].ID, c.paths[i])
}

// isReplica reports whether process p runs `serve --config <replica i's config>`.
func (c *localCell) isReplica(p, i int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p))
	want, _ := filepath.Abs(c.paths[i])
	for k := 0; k+1 < len(args); k++ {
		if args[k] != "--config" {
			continue
		}
		got := args[k+1]
		if !filepath.IsAbs(got) {
			got = filepath.Join(cwd, got)
		}
		if filepath.Clean(got) == want && bytes.Contains(raw, []byte("serve")) {
			return true
		}
	}
	return false
}

// kill sends SIGKILL to replica i and waits until it is gone.
func (c *localCell) kill(i int) error {
	p, err := c.pid(i)
	if err != nil {
		return err
	}
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing replica %d (pid %d): %w", c.cfgs[i].ID, p, err)
	}
	return nil
}

// waitGone waits until replica i's process has exited (at most d).
func (c *localCell) waitGone(i, p int, d time.Duration) error {
	c.mu.Lock()
	done := c.waits[i]
	c.mu.Unlock()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if done != nil {
			select {
			case <-done:
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if syscall.Kill(p, 0) != nil || !c.isReplica(p, i) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("replica %d (pid %d) still there %s after SIGKILL", c.cfgs[i].ID, p, d)
}

// stop ends the replicas this bench started: SIGTERM, then SIGKILL after 10s.
func (c *localCell) stop() {
	c.mu.Lock()
	procs := make(map[int]*exec.Cmd, len(c.procs))
	waits := make(map[int]chan struct{}, len(c.waits))
	for i, p := range c.procs {
		procs[i], waits[i] = p, c.waits[i]
	}
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(10 * time.Second)
	for i, p := range procs {
		select {
		case <-waits[i]:
		case <-deadline:
			_ = p.Process.Kill()
			<-waits[i]
		}
	}
}

// healthy waits (at most d) until every replica answers GET /v1/cluster and
// they all name the same leader, then returns that leader's replica index.
func (c *localCell) healthy(ctx context.Context, d time.Duration) (int, error) {
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		leader := ""
		ok := true
		for _, ep := range c.endpoints() {
			cl, err := clusterOf(ctx, hc, ep)
			if err != nil {
				last, ok = err, false
				break
			}
			if cl.Leader == "" || (leader != "" && cl.Leader != leader) {
				last, ok = fmt.Errorf("%s sees leader %q, others %q", ep, cl.Leader, leader), false
				break
			}
			leader = cl.Leader
		}
		if ok {
			if i := c.index(leader); i >= 0 {
				return i, nil
			}
			last = fmt.Errorf("leader %q is not a replica of %s", leader, c.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1, fmt.Errorf("cell not healthy within %s: %w", d, last)
}
