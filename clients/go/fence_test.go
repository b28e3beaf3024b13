package lockd_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/lockd/lockd/api/apitest"
	lockd "github.com/lockd/lockd/clients/go"
)

// TestFenceMiddleware puts a downstream service behind FenceMiddleware:
// a current sequencer passes, a missing, garbled or stale one is refused,
// and the refusal decodes into the matching sentinel.
func TestFenceMiddleware(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	c := newClient(t, cell.URLs())
	path := cellPath(cell, "store/lock")

	var mu sync.Mutex
	var accepted []uint64
	store := httptest.NewServer(lockd.FenceMiddleware(c, "")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := lockd.FencedFrom(r.Context())
		if !ok {
			t.Error("no FencedRequest in the handler's context")
		}
		mu.Lock()
		accepted = append(accepted, f.Status.CurrentGeneration)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})))
	defer store.Close()
	send := func(seq string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, store.URL+"/write", nil)
		if seq != "" {
			req.Header.Set(lockd.DefaultSequencerHeader, seq)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return lockd.ErrorFromResponse(resp)
	}

	a := lockd.NewMutex(newSession(t, c), path)
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	stale, genA := a.Sequencer(), a.Generation()
	if err := send(stale); err != nil {
		t.Fatalf("current sequencer refused: %v", err)
	}
	check(t, "missing sequencer", send(""), lockd.ErrInvalidArgument, 400)
	check(t, "garbled sequencer", send("v1:not-a-sequencer"), lockd.ErrInvalidArgument, 400)

	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	b := lockd.NewMutex(newSession(t, c), path)
	if err := b.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	err := send(stale)
	check(t, "stale sequencer", err, lockd.ErrNotHolder, 409)
	if err := send(b.Sequencer()); err != nil {
		t.Fatalf("successor's sequencer refused: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) != 2 || accepted[0] != genA || accepted[1] != b.Generation() {
		t.Fatalf("accepted generations %v, want [%d %d]", accepted, genA, b.Generation())
	}

	results, err := c.CheckSequencers(ctx, []string{stale, b.Sequencer()})
	if err != nil || len(results) != 2 || results[0].Valid || !results[1].Valid || results[0].CurrentGeneration != b.Generation() {
		t.Fatalf("batch check: %+v, %v", results, err)
	}
	if _, err := c.CheckSequencers(ctx, []string{stale, "garbage"}); !errors.Is(err, lockd.ErrInvalidArgument) {
		t.Fatalf("batch with a garbled sequencer: %v", err)
	}
}
