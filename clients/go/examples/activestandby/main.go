// Command activestandby is a small service that runs active/standby with a
// lockd Election and fences its writes with the leadership's sequencer.
//
// It has two modes. "store" is the downstream service the active instance
// writes to: an append-only log behind lockd.FenceMiddleware, which asks the
// cell whether each write's sequencer is current, and which also refuses a
// generation lower than the highest it accepted. "service" is an instance
// that campaigns; while it leads it appends a line to the store every
// second, attaching its sequencer; otherwise it stands by. When its session
// is lost it stops writing (its work runs under the session's context),
// and campaigns again with a new session.
//
// Run it against a local cell:
//
//	make cell                                   # five replicas on 127.0.0.1:7001-7005
//	go run ./clients/go/examples/activestandby -mode store -listen 127.0.0.1:8090
//	go run ./clients/go/examples/activestandby -mode service -name a
//	go run ./clients/go/examples/activestandby -mode service -name b
//
// One service says "active", the other "standby". Stop the active one with
// Ctrl-C (it resigns: the standby takes over at once) or freeze it with
// kill -STOP (its session expires after the TTL and the lock-delay, then
// the standby takes over); resumed with kill -CONT, the frozen one finds its
// session expired, and any write it still sends is refused by the store
// with 409 not_holder. curl 127.0.0.1:8090/log shows who wrote what, under
// which generation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	lockd "github.com/lockd/lockd/clients/go"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "activestandby:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("activestandby", flag.ContinueOnError)
	mode := fs.String("mode", "service", "store or service")
	endpoints := fs.String("endpoints", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005", "lockd replicas")
	election := fs.String("election", "/ls/local/activestandby/primary", "election node")
	listen := fs.String("listen", "127.0.0.1:8090", "store: address to listen on")
	storeURL := fs.String("store", "http://127.0.0.1:8090", "service: the store's URL")
	name := fs.String("name", fmt.Sprintf("pid-%d", os.Getpid()), "service: this instance's name")
	ttl := fs.Duration("ttl", 5*time.Second, "service: session TTL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := lockd.New(strings.Split(*endpoints, ","))
	if err != nil {
		return err
	}
	defer c.Close()
	switch *mode {
	case "store":
		return runStore(ctx, c, *listen, out)
	case "service":
		return runService(ctx, c, *election, *name, *storeURL, *ttl, out)
	}
	return fmt.Errorf("-mode %q: want store or service", *mode)
}

// store is the downstream append-only log.
type store struct {
	mu      sync.Mutex
	highest uint64 // highest generation accepted
	lines   []string
}

func (s *store) write(w http.ResponseWriter, r *http.Request) {
	f, _ := lockd.FencedFrom(r.Context()) // FenceMiddleware checked it with the cell
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10))
	s.mu.Lock()
	defer s.mu.Unlock()
	// The cell said "current" a moment ago; a successor may have written
	// since. Generations only rise, so never accept one below the highest.
	if gen := f.Status.CurrentGeneration; gen < s.highest {
		http.Error(w, `{"error":{"code":"not_holder","message":"a newer generation has written"}}`, http.StatusConflict)
		return
	}
	s.highest = f.Status.CurrentGeneration
	s.lines = append(s.lines, fmt.Sprintf("generation %d: %s", s.highest, body))
	w.WriteHeader(http.StatusNoContent)
}

func (s *store) log(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		fmt.Fprintln(w, l)
	}
}

func runStore(ctx context.Context, c *lockd.Client, listen string, out io.Writer) error {
	st := &store{}
	mux := http.NewServeMux()
	mux.Handle("POST /write", lockd.FenceMiddleware(c, "")(http.HandlerFunc(st.write)))
	mux.HandleFunc("GET /log", st.log)
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintln(out, "store listening on", listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func runService(ctx context.Context, c *lockd.Client, path, name, storeURL string, ttl time.Duration, out io.Writer) error {
	for ctx.Err() == nil {
		s, err := lockd.NewSession(ctx, c, lockd.WithTTL(ttl), lockd.WithLabel("activestandby "+name))
		if err != nil {
			fmt.Fprintln(out, "no session yet:", err)
			sleep(ctx, time.Second)
			continue
		}
		e := lockd.NewElection(s, path)
		fmt.Fprintln(out, "standby")
		if err := e.Campaign(ctx, name); err != nil {
			fmt.Fprintln(out, "campaign:", err)
		} else {
			fmt.Fprintf(out, "active (generation %d)\n", e.Generation())
			// Leader-only work runs under the session's context: it stops
			// by itself when the session, and leadership with it, is lost.
			work, cancel := context.WithCancel(s.Context())
			stopWhenDone := context.AfterFunc(ctx, cancel)
			lead(work, e, name, storeURL, out)
			stopWhenDone()
			cancel()
			if err := s.Err(); err != nil {
				fmt.Fprintln(out, "lost leadership:", err)
			}
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.Resign(cctx)
		_ = s.Close(cctx)
		cancel()
	}
	return nil
}

// lead appends a line to the store every second, fenced by the sequencer,
// until ctx ends or the store refuses the sequencer.
func lead(ctx context.Context, e *lockd.Election, name, storeURL string, out io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, storeURL+"/write",
			strings.NewReader(fmt.Sprintf("%s write %d", name, n)))
		if err != nil {
			return
		}
		req.Header.Set(lockd.DefaultSequencerHeader, e.Sequencer())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return // leadership lost mid-write: the write was cut off
			}
			fmt.Fprintln(out, "store unreachable:", err)
			continue
		}
		err = lockd.ErrorFromResponse(resp)
		resp.Body.Close()
		switch {
		case errors.Is(err, lockd.ErrNotHolder):
			fmt.Fprintln(out, "the store refused our sequencer: no longer the leader")
			return
		case err != nil:
			fmt.Fprintln(out, "write:", err)
		default:
			fmt.Fprintln(out, "wrote", n)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
