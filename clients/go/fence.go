package lockd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// DefaultSequencerHeader is the request header that carries a sequencer to
// a fenced service, unless FenceMiddleware is told another.
const DefaultSequencerHeader = "Lockd-Sequencer"

// fenceCheckTimeout bounds FenceMiddleware's check with the cell.
const fenceCheckTimeout = 5 * time.Second

// SequencerStatus is the cell's verdict on a sequencer.
type SequencerStatus struct {
	// Valid is true exactly while the session named in the sequencer still
	// holds that lock, in that mode, at that generation.
	Valid bool
	// CurrentGeneration is the lock's generation now.
	CurrentGeneration uint64
}

// CheckSequencer asks the cell whether seq is current (POST
// /v1/sequencers/check). A garbled sequencer is ErrInvalidArgument. The
// answer is true at the moment of the check: a service that acts on it
// should also remember the highest generation it accepted per resource and
// refuse lower ones, so that a holder delayed past its check cannot write
// after its successor.
func (c *Client) CheckSequencer(ctx context.Context, seq string) (SequencerStatus, error) {
	var w wireCheckResult
	if _, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/sequencers/check", body: wireCheckOne{Sequencer: seq},
		retry: retryUnknown}, &w); err != nil {
		return SequencerStatus{}, fmt.Errorf("checking sequencer: %w", err)
	}
	return SequencerStatus(w), nil
}

// CheckSequencers checks many sequencers in one request; the results are in
// the order of seqs. One garbled sequencer fails the batch with
// ErrInvalidArgument.
func (c *Client) CheckSequencers(ctx context.Context, seqs []string) ([]SequencerStatus, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	var w wireCheckManyResp
	if _, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/sequencers/check", body: wireCheckMany{Sequencers: seqs},
		retry: retryUnknown}, &w); err != nil {
		return nil, fmt.Errorf("checking sequencers: %w", err)
	}
	if len(w.Results) != len(seqs) {
		return nil, fmt.Errorf("lockd: checking %d sequencers got %d results: %w", len(seqs), len(w.Results), ErrUnavailable)
	}
	out := make([]SequencerStatus, len(seqs))
	for i, r := range w.Results {
		out[i] = SequencerStatus(r)
	}
	return out, nil
}

type fenceKey struct{}

// FencedRequest is what FenceMiddleware learned about a request it let
// through. Status.CurrentGeneration is then the sequencer's own generation
// (a valid sequencer is the current hold), the number to compare with the
// highest generation the service accepted before.
type FencedRequest struct {
	Sequencer string
	Status    SequencerStatus
}

// FencedFrom returns what FenceMiddleware checked for the request whose
// context is ctx.
func FencedFrom(ctx context.Context) (FencedRequest, bool) {
	f, ok := ctx.Value(fenceKey{}).(FencedRequest)
	return f, ok
}

// FenceMiddleware returns net/http middleware for a service that lock
// holders write to: it reads the sequencer from the request header (""
// means DefaultSequencerHeader), checks it with the cell on every request
// (no cache: a cached "valid" is exactly what fencing must not trust), and
// lets the request through only if it is current. The handler finds the
// checked sequencer with FencedFrom.
//
// Refusals are JSON in the shape of the lockd API's errors, so
// ErrorFromResponse decodes them:
//   - missing or garbled sequencer: 400 invalid_argument;
//   - stale sequencer (its holder no longer holds that lock at that
//     generation): 409 not_holder, with current_generation in the message;
//   - the cell could not be asked: 503 unavailable.
//
// The check is a moment's truth. Handlers that write should also refuse a
// generation lower than the highest they accepted for the same resource.
func FenceMiddleware(c *Client, header string) func(http.Handler) http.Handler {
	if header == "" {
		header = DefaultSequencerHeader
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seq := r.Header.Get(header)
			if seq == "" {
				writeFenceError(w, http.StatusBadRequest, "invalid_argument", "missing sequencer header "+header)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), fenceCheckTimeout)
			st, err := c.CheckSequencer(ctx, seq)
			cancel()
			switch {
			case errors.Is(err, ErrInvalidArgument):
				writeFenceError(w, http.StatusBadRequest, "invalid_argument", "garbled sequencer")
				return
			case err != nil:
				writeFenceError(w, http.StatusServiceUnavailable, "unavailable", "cannot check the sequencer with lockd")
				return
			case !st.Valid:
				writeFenceError(w, http.StatusConflict, "not_holder",
					fmt.Sprintf("stale sequencer: the lock's current generation is %d", st.CurrentGeneration))
				return
			}
			ctx = context.WithValue(r.Context(), fenceKey{}, FencedRequest{Sequencer: seq, Status: st})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func writeFenceError(w http.ResponseWriter, status int, code, msg string) {
	var body wireError
	body.Error.Code, body.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
