package lockd_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	lockd "github.com/lockd/lockd/clients/go"
)

// The examples run against exampleCell, an in-process three-replica cell
// that TestMain starts (api/apitest). Against a real cell, pass its
// replicas' addresses to lockd.New, e.g. "127.0.0.1:7001" for `lockd cell`.

func ExampleMutex_Lock() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := lockd.New(exampleCell.URLs())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	s, err := lockd.NewSession(ctx, c, lockd.WithTTL(10*time.Second), lockd.WithLabel("nightly-job"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close(ctx)

	m := lockd.NewMutex(s, "/ls/local/examples/nightly")
	if err := m.Lock(ctx); err != nil {
		fmt.Println("lock:", err)
		return
	}
	fmt.Println("locked, sequencer to attach to writes:", m.Sequencer() != "")

	// Guarded work runs under the session's context: it stops by itself if
	// the session (and with it the lock) is lost.
	work := s.Context()
	_ = work

	// Another session cannot take the lock meanwhile.
	other, err := lockd.NewSession(ctx, c)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer other.Close(ctx)
	err = lockd.NewMutex(other, "/ls/local/examples/nightly").TryLock(ctx)
	fmt.Println("another session:", errors.Is(err, lockd.ErrLockHeld))

	if err := m.Unlock(ctx); err != nil {
		fmt.Println("unlock:", err)
		return
	}
	fmt.Println("unlocked")
	// Output:
	// locked, sequencer to attach to writes: true
	// another session: true
	// unlocked
}

func ExampleElection_Campaign() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := lockd.New(exampleCell.URLs())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	const path = "/ls/local/examples/primary"

	// An observer prints each new leader.
	octx, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	leaders := c.ObserveElection(octx, path)

	var candidates []*lockd.Election
	for _, name := range []string{"alpha", "beta"} {
		s, err := lockd.NewSession(ctx, c, lockd.WithLabel(name))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer s.Close(ctx)
		candidates = append(candidates, lockd.NewElection(s, path))
	}
	alpha, beta := candidates[0], candidates[1]

	if err := alpha.Campaign(ctx, "alpha at 10.0.0.1"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("leader:", (<-leaders).Value)

	won := make(chan error, 1)
	go func() { won <- beta.Campaign(ctx, "beta at 10.0.0.2") }() // waits in line
	if err := alpha.Resign(ctx); err != nil {                     // hands over to beta
		fmt.Println(err)
		return
	}
	if err := <-won; err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("leader:", (<-leaders).Value)
	fmt.Println("beta leads:", beta.IsLeader(), "alpha leads:", alpha.IsLeader())
	// Output:
	// leader: alpha at 10.0.0.1
	// leader: beta at 10.0.0.2
	// beta leads: true alpha leads: false
}

func ExampleClient_Watch() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := lockd.New(exampleCell.URLs())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	const path = "/ls/local/examples/config"

	// Watch returns once the watch is established: every later change is
	// seen, even across reconnects to other replicas.
	w := c.Watch(ctx, path)
	if _, err := c.Put(ctx, path, []byte("v1")); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := c.Put(ctx, path, []byte("v2")); err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Delete(ctx, path); err != nil {
		fmt.Println(err)
		return
	}
	for ev := range w.Events() {
		fmt.Println(ev.Type, ev.Path, ev.Generation)
		if ev.Type == lockd.EventNodeDeleted {
			break
		}
	}
	// Output:
	// node_created /ls/local/examples/config 1
	// contents_changed /ls/local/examples/config 2
	// node_deleted /ls/local/examples/config 2
}
