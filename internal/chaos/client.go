package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/lockd/lockd/api/wire"
)

// reply is one HTTP exchange with a replica.
type reply struct {
	Status int
	Code   string // error code of an error body
	Body   []byte
	Leader string // X-Lockd-Leader
	Err    error  // transport error (no status)
}

// Outcome classifies a reply for the histories.
type Outcome int

const (
	// OK: a 2xx answer.
	OK Outcome = iota
	// Failed: an answer that says nothing was applied (API.md "applied? no").
	Failed
	// Unknown: the request may or may not have been applied (timeout, reset,
	// 503 unavailable, 500).
	Unknown
)

func (r reply) outcome() Outcome {
	switch {
	case r.Err != nil:
		var op *net.OpError
		if errors.As(r.Err, &op) && op.Op == "dial" {
			return Failed // never sent
		}
		return Unknown
	case r.Status >= 200 && r.Status < 300:
		return OK
	case r.Status == http.StatusServiceUnavailable && r.Code == wire.CodeNoLeader:
		return Failed
	case r.Status >= 500:
		return Unknown
	}
	return Failed
}

func (r reply) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	b := r.Body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("%d %s", r.Status, b)
}

// decode unmarshals the body of a 2xx reply.
func (r reply) decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decoding %q: %w", r.Body, err)
	}
	return nil
}

func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 30 * time.Second
	t.DialContext = (&net.Dialer{Timeout: time.Second}).DialContext
	return &http.Client{Transport: t}
}

// do sends one JSON request with a timeout; it never returns an error, only
// a reply that may carry one.
func do(ctx context.Context, hc *http.Client, timeout time.Duration, method, url string, body any) reply {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return reply{Err: err}
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return reply{Err: err}
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return reply{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return reply{Err: err}
	}
	out := reply{Status: resp.StatusCode, Body: raw, Leader: resp.Header.Get(wire.HeaderLeader)}
	if resp.StatusCode >= 300 {
		var e wire.ErrorResponse
		if json.Unmarshal(raw, &e) == nil {
			out.Code = e.Error.Code
		}
	}
	return out
}

// leaderIndex turns an X-Lockd-Leader hint into an index into urls, or -1.
func leaderIndex(hint string, n int) int {
	id, err := strconv.Atoi(hint)
	if err != nil || id < 1 || id > n {
		return -1
	}
	return id - 1
}
