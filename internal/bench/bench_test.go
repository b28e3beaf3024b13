package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
)

// Functional checks: each workload, for a short window on an in-process
// cell, produces a valid Result. No figure is checked against a time.

func runOn(t *testing.T, c *apitest.Cell, cfg Config) Result {
	t.Helper()
	cfg.Endpoints = c.URLs()
	if cfg.Duration == 0 {
		cfg.Duration = 500 * time.Millisecond
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg, &out)
	if err != nil {
		t.Fatalf("Run(%s): %v", cfg.Workload, err)
	}
	t.Logf("%s", out.String())
	if res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("%s: %d ops, %d errors (%v); want ops and no errors", cfg.Workload, res.Ops, res.Errors, res.ErrorsByMessage)
	}
	if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 || res.Min > res.P50 {
		t.Fatalf("%s: latencies out of order: min %v p50 %v p99 %v max %v", cfg.Workload, res.Min, res.P50, res.P99, res.Max)
	}
	checkLine(t, out.String(), res)
	return res
}

// checkLine checks that out ends with one JSON line of exactly the
// reference harnesses' fields.
func checkLine(t *testing.T, out string, res Result) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	var m map[string]any
	if err := json.Unmarshal([]byte(last), &m); err != nil {
		t.Fatalf("last line %q is not JSON: %v", last, err)
	}
	want := []string{"system", "workload", "clients", "keys", "duration", "ops", "ops_per_s", "p50_ms", "p99_ms", "max_ms", "errors"}
	if res.Workload == WorkloadFailover {
		want = []string{"system", "workload", "kills", "p50_ms", "p99_ms", "max_ms", "min_ms", "errors"}
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("JSON fields %v, want exactly %v", got, want)
	}
	if m["system"] != "lockd" || m["workload"] != res.Workload {
		t.Fatalf("JSON line %s: want system lockd, workload %s", last, res.Workload)
	}
}

func TestWorkloads(t *testing.T) {
	c := apitest.NewCell(t, 3)
	cases := []Config{
		{Workload: WorkloadPut, Clients: 2},
		{Workload: WorkloadLock, Clients: 3},
		{Workload: WorkloadLock, Clients: 3, Keys: 1},
		{Workload: WorkloadElect, Clients: 3},
		{Workload: WorkloadRead, Clients: 2, Keys: 3},
		{Workload: WorkloadReadStale, Clients: 2},
		{Workload: WorkloadKeepAlive, Clients: 2, Sessions: 20},
		{Workload: WorkloadWatch, Clients: 4, Interval: 20 * time.Millisecond},
		{Workload: WorkloadPut, Clients: 1, Warmup: 200 * time.Millisecond},
	}
	for _, cfg := range cases {
		t.Run(cfg.Workload, func(t *testing.T) {
			res := runOn(t, c, cfg)
			if res.Clients != cfg.Clients {
				t.Fatalf("clients %d, want %d", res.Clients, cfg.Clients)
			}
			switch cfg.Workload {
			case WorkloadPut:
				if res.Keys != 0 {
					t.Fatalf("put keys %d, want 0", res.Keys)
				}
			case WorkloadLock:
				want := cfg.Keys
				if want == 0 {
					want = cfg.Clients
				}
				if res.Keys != want {
					t.Fatalf("lock keys %d, want %d", res.Keys, want)
				}
			case WorkloadElect:
				if res.Keys != 1 {
					t.Fatalf("elect keys %d, want 1", res.Keys)
				}
			}
		})
	}
}

func TestUnknownWorkload(t *testing.T) {
	if _, err := Run(context.Background(), Config{Workload: "nope", Endpoints: []string{"http://127.0.0.1:1"}}, nil); err == nil {
		t.Fatal("Run of an unknown workload: want an error")
	}
	if _, err := Run(context.Background(), Config{Workload: WorkloadPut}, nil); err == nil {
		t.Fatal("Run without endpoints: want an error")
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(s, 0.5); p != 50*time.Millisecond {
		t.Fatalf("p50 = %v", p)
	}
	if p := percentile(s, 0.99); p != 99*time.Millisecond {
		t.Fatalf("p99 = %v", p)
	}
	if p := percentile(nil, 0.99); p != 0 {
		t.Fatalf("p99 of nothing = %v", p)
	}
}

func TestReport(t *testing.T) {
	lo := []Line{{System: "lockd", Workload: "put", Clients: 1, OpsPerS: 1000, P50: 1, P99: 2},
		{System: "lockd", Workload: "put", Clients: 4, OpsPerS: 3000, P50: 1, P99: 3},
		{System: "lockd", Workload: "failover", Kills: 20, P50: 300, P99: 400}}
	et := []Line{{System: "etcd", Workload: "put", Clients: 1, OpsPerS: 500, P50: 2, P99: 4}}
	zk := []Line{{System: "zk", Workload: "put", Clients: 1, OpsPerS: 250, P50: 2, P99: 8},
		{System: "zk", Workload: "failover", Kills: 10, P50: 600, P99: 800}}
	tab := Table(lo, et, zk)
	for _, want := range []string{"| put | 1 | 0 | 1000 |", "2.00×", "4.00×", "0.50×", "| failover | 20 kills |"} {
		if !strings.Contains(tab, want) {
			t.Fatalf("table lacks %q:\n%s", want, tab)
		}
	}
	svg := Plot("put", []int{1, 4, 16}, []series{plotSeries("lockd", "#00f", "put", lo), plotSeries("etcd", "#f00", "put", et)})
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "polyline") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Fatalf("plot is not an SVG with lines:\n%s", svg)
	}
	got, err := ReadLines(strings.NewReader("noise\n{\"system\":\"x\",\"workload\":\"put\",\"clients\":2}\n{bad\n"))
	if err != nil || len(got) != 1 || got[0].Clients != 2 {
		t.Fatalf("ReadLines = %v, %v", got, err)
	}
}

// TestFailover runs two leader kills on a real three-replica cell of lockd
// processes (built here); not in -short runs.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lockd and runs a cell of processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "lockd")
	build := exec.Command("go", "build", "-o", bin, "github.com/lockd/lockd/cmd/lockd")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building lockd: %v", err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{Workload: WorkloadFailover, Kills: 2, Replicas: 3, BasePort: 17301,
		Lockd: bin, LocalDir: filepath.Join(dir, "cell"), Settle: 100 * time.Millisecond, Log: &out}, &out)
	t.Logf("%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || len(res.Samples) != 2 || res.Min <= 0 || res.Max < res.Min {
		t.Fatalf("failover: %d samples %v, %d errors; want 2 samples and no errors", len(res.Samples), res.Samples, res.Errors)
	}
	checkLine(t, out.String(), res)
}
