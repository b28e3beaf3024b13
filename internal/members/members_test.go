package members

import (
	"fmt"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

func TestMembersSeeEachOtherAndALeaver(t *testing.T) {
	first, err := Start(Config{Name: "1", Bind: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	addr := fmt.Sprintf("127.0.0.1:%d", first.ml.LocalNode().Port)
	var others []*Members
	for _, name := range []string{"2", "3"} {
		m, err := Start(Config{Name: name, Bind: "127.0.0.1:0", Peers: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		others = append(others, m)
	}
	t.Cleanup(func() { others[0].Close() })
	waitFor(t, "three alive members", func() bool { return len(first.Names()) == 3 && len(others[0].Names()) == 3 })
	if err := others[1].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica 3 to be gone", func() bool {
		st, known := first.Status()["3"]
		return !known || st == "left" || st == "dead"
	})
}

func TestGossipKeyKeepsOutsiders(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	first, err := Start(Config{Name: "1", Bind: "127.0.0.1:0", SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	addr := fmt.Sprintf("127.0.0.1:%d", first.ml.LocalNode().Port)
	second, err := Start(Config{Name: "2", Bind: "127.0.0.1:0", Peers: []string{addr}, SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	outsider, err := Start(Config{Name: "3", Bind: "127.0.0.1:0", Peers: []string{addr},
		SecretKey: []byte("another key, 32 bytes long......")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { outsider.Close() })
	plain, err := Start(Config{Name: "4", Bind: "127.0.0.1:0", Peers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	waitFor(t, "the keyed replicas to see each other", func() bool { return len(first.Names()) == 2 && len(second.Names()) == 2 })
	// Give the outsiders time to try (they retry with backoff).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := first.Names(); len(n) != 2 {
			t.Fatalf("an outsider joined: %v", n)
		}
		time.Sleep(50 * time.Millisecond) // polling for a fixed window
	}
	if len(outsider.Names()) != 1 || len(plain.Names()) != 1 {
		t.Fatalf("outsiders see %v and %v", outsider.Names(), plain.Names())
	}
}
