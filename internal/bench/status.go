package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/lockd/lockd/api/wire"
)

// drain reads what is left of a response body (at most 1 MiB), so that
// its connection can be reused.
func drain(resp *http.Response) error {
	_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return err
}

// clusterOf reads GET /v1/cluster from one replica.
func clusterOf(ctx context.Context, hc *http.Client, base string) (wire.Cluster, error) {
	var cl wire.Cluster
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/cluster", nil)
	if err != nil {
		return cl, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return cl, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_ = drain(resp)
		return cl, fmt.Errorf("%s/v1/cluster: %s", base, resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&cl)
	return cl, err
}

// processCPU reads process_cpu_seconds_total from a replica's /metrics.
func processCPU(ctx context.Context, hc *http.Client, base string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "process_cpu_seconds_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s/metrics: no process_cpu_seconds_total", base)
}
