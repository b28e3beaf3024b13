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
