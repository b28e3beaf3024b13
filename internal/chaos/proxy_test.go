package chaos

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lockd/lockd/internal/testcell"
)

// echoServer echoes every line back until closed.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return line, err
}

func TestLinkModes(t *testing.T) {
	target := echoServer(t)
	nw, err := NewNetwork(2)
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	a := &testcell.Replica{ID: 1, Client: "127.0.0.1:1", Peer: "127.0.0.1:2"}
	b := &testcell.Replica{ID: 2, Client: target, Peer: target}
	client, _ := nw.Addresses(a, b)
	l := nw.Link(1, 2, "client")

	c, err := net.Dial("tcp", client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "hello", 2*time.Second); err != nil || got != "hello\n" {
		t.Fatalf("pass: %q, %v", got, err)
	}

	// Black hole: the bytes are held, then delivered once it passes again.
	l.SetMode(BlackHole)
	if _, err := roundTrip(c, "held", 200*time.Millisecond); err == nil {
		t.Fatal("black hole let an answer through")
	}
	c2, err := net.Dial("tcp", client) // accepted, but nothing flows
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := roundTrip(c2, "new", 200*time.Millisecond); err == nil {
		t.Fatal("black hole served a new connection")
	}
	l.SetMode(Pass)
	_ = c2.SetDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(c2).ReadString('\n'); err != nil || line != "new\n" {
		t.Fatalf("after healing, the held bytes: %q, %v", line, err)
	}

	// Drop: the open connection is closed, new ones are refused.
	l.SetMode(Drop)
	if _, err := roundTrip(c2, "x", 2*time.Second); err == nil {
		t.Fatal("dropped link still carries an open connection")
	}
	if c3, err := net.Dial("tcp", client); err == nil {
		_, err = roundTrip(c3, "y", 2*time.Second)
		c3.Close()
		if err == nil {
			t.Fatal("dropped link served a new connection")
		}
	}
	l.SetMode(Pass)
	c4, err := net.Dial("tcp", client)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if got, err := roundTrip(c4, "again", 2*time.Second); err != nil || got != "again\n" {
		t.Fatalf("healed: %q, %v", got, err)
	}
}

func TestPartitionShapes(t *testing.T) {
	nw, err := NewNetwork(5)
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	check := func(groups [][]uint32, cut [][2]uint32) {
		t.Helper()
		nw.Partition(groups, Drop)
		want := map[[2]uint32]bool{}
		for _, p := range cut {
			want[p], want[[2]uint32{p[1], p[0]}] = true, true
		}
		for a := uint32(1); a <= 5; a++ {
			for b := uint32(1); b <= 5; b++ {
				if a == b {
					continue
				}
				for _, kind := range []string{"client", "peer"} {
					if got := nw.Link(a, b, kind).Mode() != Pass; got != want[[2]uint32{a, b}] {
						t.Errorf("groups %v: %d→%d %s cut=%v, want %v", groups, a, b, kind, got, !got)
					}
				}
			}
		}
	}
	check([][]uint32{{1}, {2, 3, 4, 5}}, [][2]uint32{{1, 2}, {1, 3}, {1, 4}, {1, 5}})
	check([][]uint32{{1, 2, 3}, {4, 5}}, [][2]uint32{{1, 4}, {1, 5}, {2, 4}, {2, 5}, {3, 4}, {3, 5}})
	check([][]uint32{{1, 2, 3}, {3, 4, 5}}, [][2]uint32{{1, 4}, {1, 5}, {2, 4}, {2, 5}})
	nw.Heal()
	if c := nw.Cuts(); c != "" {
		t.Fatalf("after Heal: %s", c)
	}
}
