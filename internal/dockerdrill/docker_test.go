package dockerdrill

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// drillLabel marks every container, network and volume a drill creates; its
// value is the creation time (Unix seconds), so that a later run can remove
// what a killed run left behind.
const drillLabel = "io.lockd.drill"

// staleAfter is how old a labelled leftover must be before a run removes it
// (far longer than any drill, so a parallel run is never touched).
const staleAfter = 2 * time.Hour

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// docker runs a docker command and returns its trimmed stdout; the error
// carries stderr.
func docker(ctx context.Context, args ...string) (string, error) {
	return runCmd(ctx, nil, "docker", args...)
}

func runCmd(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// requireDocker skips the test, loudly, when no Docker engine answers (or
// fails it when LOCKD_REQUIRE_DOCKER=1).
func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var why string
	if _, err := exec.LookPath("docker"); err != nil {
		why = "no docker command on PATH"
	} else if _, err := exec.LookPath("bash"); err != nil {
		why = "no bash on PATH"
	} else if v, err := docker(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil || v == "" {
		why = fmt.Sprintf("no Docker engine answers (docker info: %v)", err)
	}
	if why == "" {
		return
	}
	msg := "\n" + strings.Repeat("!", 78) + "\n" +
		"!!! SKIPPING the Docker failure drill: " + why + "\n" +
		"!!! The containerized cell, partition/kill/wipe drill and its checks did NOT run.\n" +
		"!!! Run it on a machine with Docker: scripts/docker-drill.sh\n" +
		strings.Repeat("!", 78)
	if os.Getenv("LOCKD_REQUIRE_DOCKER") == "1" {
		t.Fatal(msg + "\n(LOCKD_REQUIRE_DOCKER=1: failing instead of skipping)")
	}
	t.Skip(msg)
}

// buildImage builds the static binaries into a private build context, then
// the image from the module's Dockerfile, tagged by the hash of everything
// that goes into it: an unchanged build reuses the image already there.
func buildImage(t *testing.T, ctx context.Context) string {
	t.Helper()
	root := moduleRoot()
	bctx := t.TempDir()
	for _, f := range []string{"Dockerfile", ".dockerignore", "configs/docker/passwd", "configs/docker/group"} {
		copyFile(t, filepath.Join(root, f), filepath.Join(bctx, f))
	}
	if err := os.MkdirAll(filepath.Join(bctx, "configs/docker/empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, pkg := range []string{"lockd", "lockd-health"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w",
			"-o", filepath.Join(bctx, "bin", pkg), "./cmd/"+pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	h := sha256.New()
	for _, f := range []string{"Dockerfile", ".dockerignore", "configs/docker/passwd", "configs/docker/group", "bin/lockd", "bin/lockd-health"} {
		data, err := os.ReadFile(filepath.Join(bctx, f))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	tag := "lockd-drill:" + hex.EncodeToString(h.Sum(nil))[:16]
	if _, err := docker(ctx, "image", "inspect", tag); err == nil {
		t.Logf("image %s is up to date (binaries built in %v)", tag, time.Since(start).Round(time.Millisecond))
		return tag
	}
	if _, err := docker(ctx, "build", "-q", "-t", tag, "--label", drillLabel+"-image=1", bctx); err != nil {
		t.Fatalf("docker build: %v", err)
	}
	t.Logf("built image %s in %v", tag, time.Since(start).Round(time.Millisecond))
	pruneImages(ctx, t, tag)
	return tag
}

// pruneImages removes drill images other than keep that are more than ten
// minutes old (best effort: docker refuses to remove an image that a
// container, say of a parallel drill, still uses).
func pruneImages(ctx context.Context, t *testing.T, keep string) {
	out, err := docker(ctx, "images", "lockd-drill", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		return
	}
	for _, img := range strings.Fields(out) {
		if img == keep {
			continue
		}
		created, err := docker(ctx, "image", "inspect", "-f", "{{.Created}}", img)
		if err != nil {
			continue
		}
		if ts, err := time.Parse(time.RFC3339Nano, created); err == nil && time.Since(ts) > 10*time.Minute {
			if _, err := docker(ctx, "rmi", img); err == nil {
				t.Logf("removed old drill image %s", img)
			}
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// removeStale removes containers, networks and volumes of drills that were
// started more than staleAfter ago (a killed run cannot clean up).
func removeStale(ctx context.Context, t *testing.T) {
	cutoff := time.Now().Add(-staleAfter).Unix()
	stale := func(label string) bool {
		ts, err := strconv.ParseInt(label, 10, 64)
		return err == nil && ts < cutoff
	}
	for _, kind := range []struct{ list, rm []string }{
		{[]string{"ps", "-a"}, []string{"rm", "-f"}},
		{[]string{"network", "ls"}, []string{"network", "rm"}},
		{[]string{"volume", "ls"}, []string{"volume", "rm", "-f"}},
	} {
		args := append(append([]string{}, kind.list...), "--filter", "label="+drillLabel,
			"--format", `{{.Name}}{{"\t"}}{{.Label "`+drillLabel+`"}}`)
		if kind.list[0] == "ps" {
			args[len(args)-1] = `{{.Names}}{{"\t"}}{{.Label "` + drillLabel + `"}}`
		}
		out, err := docker(ctx, args...)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			name, label, ok := strings.Cut(line, "\t")
			if ok && stale(label) {
				if _, err := docker(ctx, append(append([]string{}, kind.rm...), name)...); err == nil {
					t.Logf("removed stale drill leftover %s", name)
				}
			}
		}
	}
}

// cell is a five-container cell run through configs/cell-docker.sh.
type cell struct {
	t      *testing.T
	name   string // prefix of every container, network and volume
	cell   string // lockd cell name
	subnet string
	ports  []int // host client port per replica (index id-1)
	env    []string
}

const replicas = 5

// startCell creates a cell with a unique name on a random 172.28.X.0/24
// subnet and free host ports, and registers its removal.
func startCell(t *testing.T, ctx context.Context, image string) *cell {
	t.Helper()
	var buf [4]byte
	_, _ = rand.Read(buf[:])
	c := &cell{t: t, name: "lockd-drill-" + hex.EncodeToString(buf[:]), cell: "drill"}
	c.ports = freePorts(t, replicas)
	t.Cleanup(c.destroy)
	labels := fmt.Sprintf("%s=%d", drillLabel, time.Now().Unix())
	if run := os.Getenv("LOCKD_DRILL_RUN"); run != "" { // set by scripts/docker-drill.sh for its trap
		labels += " " + drillLabel + "-run=" + run
	}
	var lastErr error
	for try := 0; try < 8; try++ {
		// A pair of /24s in 172.28.0.0/16: 172.28.X.0/24 for the cell
		// network, the next one for the client network. X = 0 is
		// configs/cell-docker.sh's default: never used here.
		x := 2 + 2*mrand.IntN(126)
		c.subnet = fmt.Sprintf("172.28.%d.0/24", x)
		clientSubnet := fmt.Sprintf("172.28.%d.0/24", x+1)
		var ps []string
		for _, p := range c.ports {
			ps = append(ps, strconv.Itoa(p))
		}
		c.env = []string{
			"LOCKD_DOCKER_NAME=" + c.name,
			"LOCKD_DOCKER_IMAGE=" + image,
			"LOCKD_DOCKER_SUBNET=" + c.subnet,
			"LOCKD_DOCKER_CLIENT_SUBNET=" + clientSubnet,
			"LOCKD_DOCKER_HOST_PORTS=" + strings.Join(ps, ","),
			"LOCKD_DOCKER_CELL=" + c.cell,
			"LOCKD_DOCKER_LABELS=" + labels,
			"LOCKD_LOG_LEVEL=info",
		}
		out, err := c.script(ctx, "up")
		if err == nil {
			t.Logf("cell %s up on %s, clients on 127.0.0.1:%v\n%s", c.name, c.subnet, c.ports, out)
			return c
		}
		lastErr = err
		for id := 1; id <= replicas; id++ {
			if logs := c.logs(ctx, id, 20); logs != "" && !strings.Contains(logs, "No such container") {
				t.Logf("---- replica %d log (last 20 lines) ----\n%s", id, logs)
			}
		}
		_, _ = c.script(ctx, "down", "-v")
		if !strings.Contains(err.Error(), "overlap") {
			break
		}
	}
	t.Fatalf("starting the cell: %v", lastErr)
	return nil
}

// script runs configs/cell-docker.sh with the cell's settings.
func (c *cell) script(ctx context.Context, args ...string) (string, error) {
	return runCmd(ctx, c.env, "bash", append([]string{filepath.Join(moduleRoot(), "configs", "cell-docker.sh")}, args...)...)
}

// do runs a verb on replica id and fails the test if it fails.
func (c *cell) do(ctx context.Context, verb string, id int) {
	c.t.Helper()
	if out, err := c.script(ctx, verb, strconv.Itoa(id)); err != nil {
		c.t.Fatalf("%s %d: %v %s", verb, id, err, out)
	}
}

func (c *cell) container(id int) string { return fmt.Sprintf("%s-r%d", c.name, id) }

// cellAddr is replica id's address on the cell network.
func (c *cell) cellAddr(id int) string {
	return fmt.Sprintf("%s.%d", strings.TrimSuffix(c.subnet, ".0/24"), 10+id)
}

// reaches reports whether replica from gets a 200 from replica to's
// /healthz over the cell network (asked from inside from's container).
func (c *cell) reaches(ctx context.Context, from, to int) bool {
	_, err := docker(ctx, "exec", c.container(from), "/usr/local/bin/lockd-health",
		"--timeout", "1s", "--url", "http://"+c.cellAddr(to)+":7001/healthz")
	return err == nil
}

// url is replica id's client API as the host reaches it.
func (c *cell) url(id int) string { return fmt.Sprintf("http://127.0.0.1:%d", c.ports[id-1]) }

func (c *cell) urls() []string {
	var out []string
	for id := 1; id <= replicas; id++ {
		out = append(out, c.url(id))
	}
	return out
}

// logs returns the last n lines of replica id's log (n <= 0: all of it).
func (c *cell) logs(ctx context.Context, id, n int) string {
	args := []string{"logs"}
	if n > 0 {
		args = append(args, "--tail", strconv.Itoa(n))
	}
	cmd := exec.CommandContext(ctx, "docker", append(args, c.container(id))...)
	out, _ := cmd.CombinedOutput() // the replica logs to stderr
	return string(out)
}

// health is the container's HEALTHCHECK status.
func (c *cell) health(ctx context.Context, id int) string {
	out, err := docker(ctx, "container", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", c.container(id))
	if err != nil {
		return "absent"
	}
	return out
}

func (c *cell) destroy() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if c.t.Failed() {
		for id := 1; id <= replicas; id++ {
			c.t.Logf("---- replica %d log (last 60 lines) ----\n%s", id, c.logs(ctx, id, 60))
		}
	}
	if _, err := c.script(ctx, "down", "-v"); err != nil {
		c.t.Logf("cleanup: %v", err)
	}
	// Whatever the script did not remove (it names things by its prefix).
	for _, kind := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}, {"volume", "ls", "-q"}} {
		out, _ := docker(ctx, append(kind, "--filter", "label=io.lockd.cell="+c.name)...)
		for _, id := range strings.Fields(out) {
			switch kind[0] {
			case "ps":
				_, _ = docker(ctx, "rm", "-f", id)
			default:
				_, _ = docker(ctx, kind[0], "rm", id)
			}
		}
	}
}

// freePorts finds n TCP ports free on 127.0.0.1, below the kernel's
// ephemeral range when there is room.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	lo, span := 20000, 30000
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first, last int
		if _, err := fmt.Sscan(string(data), &first, &last); err == nil && first-15000 >= 4000 {
			lo, span = 15000, first-15000
		}
	}
	seen := map[int]bool{}
	var out []int
	for tries := 0; len(out) < n && tries < 10000; tries++ {
		p := lo + mrand.IntN(span)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		out = append(out, p)
	}
	if len(out) < n {
		t.Fatalf("found only %d free ports", len(out))
	}
	return out
}

// readAll is io.ReadAll bounded to 1 MiB.
func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(io.LimitReader(r, 1<<20)) }
