package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// Line is one JSON line of lockd bench or of a reference harness.
type Line struct {
	System   string  `json:"system"`
	Workload string  `json:"workload"`
	Clients  int     `json:"clients"`
	Keys     int     `json:"keys"`
	Duration float64 `json:"duration"`
	Ops      int     `json:"ops"`
	OpsPerS  float64 `json:"ops_per_s"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	Min      float64 `json:"min_ms"`
	Kills    int     `json:"kills"`
	Errors   int     `json:"errors"`
}

// ReadLines reads the JSON lines of r, skipping every other line.
func ReadLines(r io.Reader) ([]Line, error) {
	var out []Line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		t := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(t, "{") {
			continue
		}
		var l Line
		if err := json.Unmarshal([]byte(t), &l); err != nil {
			continue
		}
		if l.Workload != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func readFile(path string) ([]Line, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadLines(f)
}

type rowKey struct {
	workload      string
	clients, keys int
}

// find returns the line of ls for k (the last one when repeated).
func find(ls []Line, k rowKey) *Line {
	var got *Line
	for i := range ls {
		l := &ls[i]
		if l.Workload != k.workload {
			continue
		}
		if k.workload == WorkloadFailover || (l.Clients == k.clients && l.Keys == k.keys) {
			got = l
		}
	}
	return got
}

// Table is the markdown comparison of lockd's lines with etcd's and
// ZooKeeper's: per row ops/s and p50/p99 of each, and the ratios
// lockd/etcd and lockd/ZooKeeper (of ops/s, and of p99: lower is better).
func Table(lockdLines, etcd, zk []Line) string {
	var keys []rowKey
	seen := map[rowKey]bool{}
	add := func(ls []Line) {
		for _, l := range ls {
			k := rowKey{l.Workload, l.Clients, l.Keys}
			if l.Workload == WorkloadFailover {
				k = rowKey{workload: WorkloadFailover}
			}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	add(lockdLines)
	add(etcd)
	add(zk)
	order := map[string]int{WorkloadPut: 0, WorkloadLock: 1, WorkloadElect: 2, WorkloadRead: 3, WorkloadReadStale: 4,
		WorkloadKeepAlive: 5, WorkloadWatch: 6, WorkloadFailover: 7}
	slices.SortStableFunc(keys, func(a, b rowKey) int {
		if d := order[a.workload] - order[b.workload]; d != 0 {
			return d
		}
		if a.keys == 1 && b.keys != 1 && a.workload == WorkloadLock && b.workload == WorkloadLock && b.keys == b.clients {
			return 1
		}
		if b.keys == 1 && a.keys != 1 && a.workload == WorkloadLock && b.workload == WorkloadLock && a.keys == a.clients {
			return -1
		}
		return a.clients - b.clients
	})
	var b strings.Builder
	b.WriteString("| workload | clients | keys | lockd ops/s | lockd p50 / p99 ms | etcd ops/s | etcd p50 / p99 ms | ZooKeeper ops/s | ZooKeeper p50 / p99 ms | ops/s lockd/etcd | ops/s lockd/ZK | p99 lockd/etcd | p99 lockd/ZK |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	cell := func(l *Line) (string, string) {
		if l == nil {
			return "–", "–"
		}
		e := ""
		if l.Errors > 0 {
			e = fmt.Sprintf(" (%d err)", l.Errors)
		}
		if l.Workload == WorkloadFailover {
			return "–", fmt.Sprintf("%s / %s%s", num(l.P50), num(l.P99), e)
		}
		return num(l.OpsPerS) + e, fmt.Sprintf("%s / %s", num(l.P50), num(l.P99))
	}
	ratio := func(a, b *Line, f func(*Line) float64) string {
		if a == nil || b == nil || f(b) == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", f(a)/f(b))
	}
	ops := func(l *Line) float64 {
		if l.Workload == WorkloadFailover {
			return 0
		}
		return l.OpsPerS
	}
	p99 := func(l *Line) float64 { return l.P99 }
	for _, k := range keys {
		lo, et, z := find(lockdLines, k), find(etcd, k), find(zk, k)
		lops, llat := cell(lo)
		eops, elat := cell(et)
		zops, zlat := cell(z)
		clients, keysCol := fmt.Sprint(k.clients), fmt.Sprint(k.keys)
		if k.workload == WorkloadFailover {
			clients, keysCol = "–", "–"
			for _, l := range []*Line{lo, et, z} {
				if l != nil {
					clients = fmt.Sprintf("%d kills", l.Kills)
					break
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			k.workload, clients, keysCol, lops, llat, eops, elat, zops, zlat,
			ratio(lo, et, ops), ratio(lo, z, ops), ratio(lo, et, p99), ratio(lo, z, p99))
	}
	return b.String()
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// series is one system's line in the plot.
type series struct {
	name  string
	color string
	pts   map[int]Line // by clients
}

// Plot draws, for workload (put), throughput and p99 latency against the
// client count for each system, as an SVG of two panels.
func Plot(workload string, counts []int, systems []series) string {
	const (
		W, H       = 980, 460
		panelW     = 400
		panelH     = 300
		top, left  = 60, 80
		gap        = 90
		tickLength = 5
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s: throughput and p99 latency against clients (five replicas on one host, durable writes)</text>`+"\n", left, workload)
	xpos := func(i int) float64 {
		if len(counts) == 1 {
			return panelW / 2
		}
		return float64(i) * panelW / float64(len(counts)-1)
	}
	panel := func(x0 int, title, unit string, val func(Line) float64, logY bool) {
		var maxV, minV float64 = 0, math.Inf(1)
		for _, s := range systems {
			for _, p := range s.pts {
				if v := val(p); v > 0 {
					maxV = max(maxV, v)
					minV = min(minV, v)
				}
			}
		}
		if maxV == 0 {
			maxV, minV = 1, 0.1
		}
		var ticks []float64
		var ypos func(v float64) float64
		if logY {
			lo := math.Pow(10, math.Floor(math.Log10(minV)))
			hi := math.Pow(10, math.Ceil(math.Log10(maxV)))
			for t := lo; t <= hi*1.001; t *= 10 {
				ticks = append(ticks, t)
			}
			ypos = func(v float64) float64 {
				return panelH - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*panelH
			}
		} else {
			step := niceStep(maxV / 5)
			hi := math.Ceil(maxV/step) * step
			for t := 0.0; t <= hi*1.0001; t += step {
				ticks = append(ticks, t)
			}
			ypos = func(v float64) float64 { return panelH - v/hi*panelH }
		}
		fmt.Fprintf(&b, `<g transform="translate(%d,%d)">`+"\n", x0, top)
		fmt.Fprintf(&b, `<text x="%d" y="-12" font-size="14" text-anchor="middle">%s</text>`+"\n", panelW/2, title)
		fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="none" stroke="#444"/>`+"\n", panelW, panelH)
		for _, t := range ticks {
			y := ypos(t)
			fmt.Fprintf(&b, `<line x1="0" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, panelW, y, y)
			fmt.Fprintf(&b, `<text x="-8" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", y, tickLabel(t))
		}
		for i, c := range counts {
			x := xpos(i)
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#444"/>`, x, x, panelH, panelH+tickLength)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x, panelH+20, c)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">clients (log scale)</text>`+"\n", panelW/2, panelH+40)
		fmt.Fprintf(&b, `<text transform="translate(-60,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", panelH/2, unit)
		for _, s := range systems {
			var pts []string
			for i, c := range counts {
				p, ok := s.pts[c]
				if !ok || val(p) <= 0 {
					continue
				}
				x, y := xpos(i), ypos(val(p))
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`, x, y, s.color)
			}
			if len(pts) > 1 {
				fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), s.color)
			}
		}
		b.WriteString("</g>\n")
	}
	panel(left, "throughput (higher is better)", "ops/s", func(l Line) float64 { return l.OpsPerS }, false)
	panel(left+panelW+gap, "p99 latency (lower is better)", "p99 ms (log scale)", func(l Line) float64 { return l.P99 }, true)
	for i, s := range systems {
		x := left + i*170
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="14" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, H-22, s.color, x+20, H-11, s.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func tickLabel(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%gk", v/1000)
	case v >= 1:
		return fmt.Sprintf("%g", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// plotSeries picks the lines of one workload (uncontended: keys = clients
// for lock) by client count.
func plotSeries(name, color, workload string, ls []Line) series {
	s := series{name: name, color: color, pts: map[int]Line{}}
	for _, l := range ls {
		if l.Workload != workload {
			continue
		}
		if workload == WorkloadLock && l.Keys != l.Clients {
			continue
		}
		s.pts[l.Clients] = l
	}
	return s
}

func reportCommand() *cobra.Command {
	var lockdPath, etcdPath, zkPath, tableOut, svgOut, workload, counts string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Compare JSON lines of lockd bench, etcdref and zkref: a markdown table and an SVG plot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lo, err := readFile(lockdPath)
			if err != nil {
				return err
			}
			et, err := readFile(etcdPath)
			if err != nil {
				return err
			}
			zk, err := readFile(zkPath)
			if err != nil {
				return err
			}
			table := Table(lo, et, zk)
			if tableOut == "" || tableOut == "-" {
				_, err = io.WriteString(cmd.OutOrStdout(), table)
			} else {
				err = os.WriteFile(tableOut, []byte(table), 0o644)
			}
			if err != nil {
				return err
			}
			if svgOut != "" {
				cs, err := parseCounts(counts)
				if err != nil {
					return fmt.Errorf("--counts: %w", err)
				}
				svg := Plot(workload, cs, []series{
					plotSeries("lockd", "#1f77b4", workload, lo),
					plotSeries("etcd", "#d62728", workload, et),
					plotSeries("ZooKeeper", "#2ca02c", workload, zk),
				})
				if err := os.WriteFile(svgOut, []byte(svg), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&lockdPath, "lockd", "", "JSON lines of lockd bench")
	f.StringVar(&etcdPath, "etcd", "", "JSON lines of etcdref")
	f.StringVar(&zkPath, "zk", "", "JSON lines of zkref")
	f.StringVar(&tableOut, "table", "-", "markdown table output (- for stdout)")
	f.StringVar(&svgOut, "svg", "", "SVG plot output (none when empty)")
	f.StringVar(&workload, "plot-workload", WorkloadPut, "workload plotted against clients")
	f.StringVar(&counts, "counts", "1,4,16,64,256", "client counts on the plot's x axis")
	return cmd
}
