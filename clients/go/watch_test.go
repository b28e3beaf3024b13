package lockd_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	lockd "github.com/lockd/lockd/clients/go"
)

// put writes a new file through failures whose outcome is unknown: it
// retries, and takes "already exists" after a failed attempt as its own
// success.
func put(t *testing.T, ctx context.Context, c *lockd.Client, path string) {
	t.Helper()
	failed := false
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := c.Put(ctx, path, []byte("x"), lockd.CreateOnly())
		switch {
		case err == nil, failed && errors.Is(err, lockd.ErrAlreadyExists):
			return
		case time.Now().After(deadline):
			t.Fatalf("put %s: %v", path, err)
		case errors.Is(err, lockd.ErrUnavailable), errors.Is(err, lockd.ErrNoLeader):
			failed = true
			time.Sleep(10 * time.Millisecond) // retry pacing, not synchronization
		default:
			t.Fatalf("put %s: %v", path, err)
		}
	}
}

// collectCreated reads events until it has seen want node_created events
// under dir, and returns their paths in order.
func collectCreated(t *testing.T, w *lockd.Watcher, want int) []string {
	t.Helper()
	var got []string
	var last uint64
	for len(got) < want {
		ev := recv(t, w.Events(), 15*time.Second, fmt.Sprintf("event %d (have %v)", len(got), got))
		if ev.Index < last {
			t.Fatalf("event index %d after %d", ev.Index, last)
		}
		last = ev.Index
		if ev.Type == lockd.EventNodeCreated {
			got = append(got, ev.Path)
		}
	}
	return got
}

// TestWatchResumesAcrossReplicaStop watches through the leader, stops it,
// and checks that every event arrives exactly once, in order, from another
// replica.
func TestWatchResumesAcrossReplicaStop(t *testing.T) {
	for _, mode := range []string{"sse", "longpoll"} {
		t.Run(mode, func(t *testing.T) {
			cell := apitest.NewCell(t, 3)
			ctx := testCtx(t)
			l := cell.Leader()
			urls := []string{cell.URL(l)}
			for i := range cell.Replicas() {
				if i != l {
					urls = append(urls, cell.URL(i))
				}
			}
			wc := newClient(t, urls)
			writer := newClient(t, cell.URLs())
			dir := cellPath(cell, "watched")
			if _, err := writer.Put(ctx, dir, nil, lockd.AsDir()); err != nil {
				t.Fatal(err)
			}
			opts := []lockd.WatchOption{lockd.Recursive()}
			if mode == "longpoll" {
				opts = append(opts, lockd.LongPoll(time.Second))
			}
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			w := wc.Watch(wctx, dir, opts...)
			var want []string
			for i := range 10 {
				p := fmt.Sprintf("%s/k%02d", dir, i)
				want = append(want, p)
				if i == 5 {
					if got := collectCreated(t, w, 5); fmt.Sprint(got) != fmt.Sprint(want[:5]) {
						t.Fatalf("before the stop: %v, want %v", got, want[:5])
					}
					cell.StopReplica(l)
				}
				put(t, ctx, writer, p)
			}
			if got := collectCreated(t, w, 5); fmt.Sprint(got) != fmt.Sprint(want[5:]) {
				t.Fatalf("after the stop: %v, want %v", got, want[5:])
			}
			select {
			case ev := <-w.Events():
				if ev.Type == lockd.EventNodeCreated {
					t.Fatalf("extra event %+v", ev)
				}
			default:
			}
			if w.Index() == 0 {
				t.Fatal("watcher index not advanced")
			}
			cancel()
			for range w.Events() {
			}
			if err := w.Err(); err != nil {
				t.Fatalf("Err after cancel: %v, want nil", err)
			}
		})
	}
}

// TestWatchSinceIndex replays history from an index.
func TestWatchSinceIndex(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	c := newClient(t, cell.URLs())
	p := cellPath(cell, "since/a")
	n, err := c.Put(ctx, p, []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, p, []byte("2")); err != nil {
		t.Fatal(err)
	}
	w := c.Watch(ctx, p, lockd.SinceIndex(n.ModifyIndex-1))
	ev := recv(t, w.Events(), 5*time.Second, "created")
	if ev.Type != lockd.EventNodeCreated || ev.Path != p || ev.Index != n.ModifyIndex || ev.Generation != 1 {
		t.Fatalf("first event %+v", ev)
	}
	ev = recv(t, w.Events(), 5*time.Second, "changed")
	if ev.Type != lockd.EventContentsChanged || ev.Generation != 2 {
		t.Fatalf("second event %+v", ev)
	}
}

// TestWatchCompacted falls behind a short event history: the watch ends
// with ErrCompacted, or with ResumeAfterCompaction goes on after an
// EventCompacted.
func TestWatchCompacted(t *testing.T) {
	cell := apitest.NewCellWith(t, apitest.Options{Replicas: 3, EventHistory: 8})
	ctx := testCtx(t)
	c := newClient(t, cell.URLs())
	p := cellPath(cell, "compact/a")
	for i := range 20 {
		if _, err := c.Put(ctx, p, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []string{"sse", "longpoll"} {
		t.Run(mode, func(t *testing.T) {
			var opts []lockd.WatchOption
			if mode == "longpoll" {
				opts = append(opts, lockd.LongPoll(time.Second))
			}
			w := c.Watch(ctx, p, append(opts, lockd.SinceIndex(1))...)
			for ev := range w.Events() {
				t.Fatalf("event from a compacted position: %+v", ev)
			}
			if err := w.Err(); !errors.Is(err, lockd.ErrCompacted) {
				t.Fatalf("Err %v, want ErrCompacted", err)
			}
			if ae := apiErr(t, w.Err()); ae.Status != 410 || ae.Index == 0 {
				t.Fatalf("compacted error %+v: want status 410 and the current index", ae)
			}

			w = c.Watch(ctx, p, append(opts, lockd.SinceIndex(1), lockd.ResumeAfterCompaction())...)
			ev := recv(t, w.Events(), 5*time.Second, "compacted event")
			if ev.Type != lockd.EventCompacted || ev.Index == 0 {
				t.Fatalf("first event %+v, want compacted", ev)
			}
			n, err := c.Put(ctx, p, []byte("after"))
			if err != nil {
				t.Fatal(err)
			}
			ev = recv(t, w.Events(), 5*time.Second, "event after resuming")
			if ev.Type != lockd.EventContentsChanged || ev.Index != n.ModifyIndex {
				t.Fatalf("event %+v, want contents_changed at %d", ev, n.ModifyIndex)
			}
		})
	}
}
