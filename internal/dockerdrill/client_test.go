package dockerdrill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// The JSON shapes the drill reads (API.md); only the fields it needs.
type (
	apiError struct {
		Error struct {
			Code         string `json:"code"`
			Message      string `json:"message"`
			RetryAfterMs int64  `json:"retry_after_ms"`
		} `json:"error"`
	}
	apiNode struct {
		Path              string   `json:"path"`
		Kind              string   `json:"kind"`
		Contents          string   `json:"contents"`
		ContentGeneration uint64   `json:"content_generation"`
		Children          []string `json:"children"` // with ?children=true
	}
	nodeBody struct {
		Node apiNode `json:"node"`
	}
	grantBody struct {
		Lock struct {
			Path       string `json:"path"`
			Generation uint64 `json:"generation"`
			Sequencer  string `json:"sequencer"`
			Session    string `json:"session"`
		} `json:"lock"`
	}
	sessionBody struct {
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	checkBody struct {
		Results []struct {
			Valid             bool   `json:"valid"`
			CurrentGeneration uint64 `json:"current_generation"`
		} `json:"results"`
	}
	// replicaView is one replica in GET /v1/cluster and GET /v1/cluster/self.
	replicaView struct {
		ID           string `json:"id"`
		Role         string `json:"role"`
		Up           bool   `json:"up"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
		Lag          uint64 `json:"lag"`
		Leader       string `json:"leader"`
		Recovering   bool   `json:"recovering"`
		MemberStatus string `json:"member_status"`
	}
	clusterView struct {
		Leader   string        `json:"leader"`
		Ballot   string        `json:"ballot"`
		Replicas []replicaView `json:"replicas"`
	}
)

// reply is one HTTP answer.
type reply struct {
	Status int
	Raw    []byte
	Code   string // error code of an error answer
}

func (r reply) decode(v any) error {
	if err := json.Unmarshal(r.Raw, v); err != nil {
		return fmt.Errorf("decoding %d %s: %w", r.Status, r.Raw, err)
	}
	return nil
}

// client is an HTTP client of the cell. Every request has its own deadline;
// an error means no answer (the outcome of a write is then unknown).
type client struct {
	hc *http.Client
}

func newClient() *client {
	tr := &http.Transport{
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       10 * time.Second,
		ResponseHeaderTimeout: 0, // per-request contexts bound every call
		DisableCompression:    true,
	}
	return &client{hc: &http.Client{Transport: tr}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// call sends body (nil or a value to encode as JSON) with a timeout.
func (c *client) call(ctx context.Context, timeout time.Duration, method, url string, body any) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd *bytes.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(data)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, method, url, rd)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, url, nil)
	}
	if err != nil {
		return reply{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := readAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{Status: resp.StatusCode, Raw: raw}
	if resp.StatusCode >= 300 {
		var e apiError
		if json.Unmarshal(raw, &e) == nil {
			r.Code = e.Error.Code
		}
	}
	return r, nil
}

// definitelyNotApplied reports whether an error answer says the request was
// not applied (API.md, "applied?" column): everything but unavailable and
// unexpected server errors.
func definitelyNotApplied(r reply) bool {
	if r.Status < 300 {
		return false
	}
	switch r.Code {
	case "unavailable", "internal", "":
		return false
	}
	return true
}

// notSent reports whether a call failed before its request could reach a
// replica (the connection was refused: a killed or partitioned container
// publishes no port), so it certainly had no effect.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// self asks one replica for its own view of itself.
func (c *client) self(ctx context.Context, url string) (replicaView, error) {
	var v replicaView
	r, err := c.call(ctx, 2*time.Second, http.MethodGet, url+"/v1/cluster/self", nil)
	if err != nil {
		return v, err
	}
	if r.Status != http.StatusOK {
		return v, fmt.Errorf("GET /v1/cluster/self: %d %s", r.Status, r.Raw)
	}
	return v, r.decode(&v)
}

// cluster asks one replica for its view of the cell.
func (c *client) cluster(ctx context.Context, url string) (clusterView, error) {
	var v clusterView
	r, err := c.call(ctx, 3*time.Second, http.MethodGet, url+"/v1/cluster", nil)
	if err != nil {
		return v, err
	}
	if r.Status != http.StatusOK {
		return v, fmt.Errorf("GET /v1/cluster: %d %s", r.Status, r.Raw)
	}
	return v, r.decode(&v)
}
