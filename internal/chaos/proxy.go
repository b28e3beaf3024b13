package chaos

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lockd/lockd/internal/testcell"
)

// Mode is what a Link does with the bytes it carries.
type Mode int

const (
	// Pass forwards bytes both ways.
	Pass Mode = iota
	// Drop closes the link's connections and refuses new ones (accepts and
	// resets them at once): a partition the sender notices.
	Drop
	// BlackHole accepts connections but forwards nothing, in either
	// direction, until the mode changes: a partition that only timeouts
	// reveal. Bytes held back are delivered, late, once the link passes
	// again, as TCP would after a partition heals.
	BlackHole
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Drop:
		return "drop"
	case BlackHole:
		return "black-hole"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Link is a TCP proxy for one direction of one replica pair: the
// connections replica From opens to one of replica To's ports.
type Link struct {
	From, To uint32
	Kind     string // "client" or "peer"

	ln     net.Listener
	mu     sync.Mutex
	cond   *sync.Cond // broadcast on every mode change and on close
	target string
	mode   Mode
	closed bool
	pipes  map[*pipe]struct{}
	wg     sync.WaitGroup
}

// pipe is one proxied connection.
type pipe struct {
	mu      sync.Mutex
	in, out net.Conn
	closed  bool
}

func (p *pipe) close() {
	p.mu.Lock()
	p.closed = true
	in, out := p.in, p.out
	p.mu.Unlock()
	in.Close()
	if out != nil {
		out.Close()
	}
}

// setOut records the onward connection, or closes it if the pipe is closed.
func (p *pipe) setOut(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.out = c
	return true
}

func newLink(from, to uint32, kind string) (*Link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Link{From: from, To: to, Kind: kind, ln: ln, pipes: map[*pipe]struct{}{}}
	l.cond = sync.NewCond(&l.mu)
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr is the address the link listens on.
func (l *Link) Addr() string { return l.ln.Addr().String() }

func (l *Link) setTarget(addr string) {
	l.mu.Lock()
	l.target = addr
	l.mu.Unlock()
}

// Mode returns the link's mode.
func (l *Link) Mode() Mode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mode
}

// SetMode changes what the link does. Drop also closes every connection.
func (l *Link) SetMode(m Mode) {
	l.mu.Lock()
	l.mode = m
	var doomed []*pipe
	if m == Drop {
		for p := range l.pipes {
			doomed = append(doomed, p)
		}
	}
	l.cond.Broadcast()
	l.mu.Unlock()
	for _, p := range doomed {
		p.close()
	}
}

// Close stops the link and closes its connections.
func (l *Link) Close() {
	l.mu.Lock()
	l.closed = true
	var doomed []*pipe
	for p := range l.pipes {
		doomed = append(doomed, p)
	}
	l.cond.Broadcast()
	l.mu.Unlock()
	l.ln.Close()
	for _, p := range doomed {
		p.close()
	}
	l.wg.Wait()
}

// waitPass blocks while the link black-holes; it reports whether bytes may
// flow (false: dropped or closed).
func (l *Link) waitPass() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.mode == BlackHole && !l.closed {
		l.cond.Wait()
	}
	return l.mode == Pass && !l.closed
}

func (l *Link) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed || l.mode == Drop {
			l.mu.Unlock()
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, as a refused connection looks
			}
			c.Close()
			continue
		}
		p := &pipe{in: c}
		l.pipes[p] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(p)
	}
}

func (l *Link) serve(p *pipe) {
	defer l.wg.Done()
	defer func() {
		p.close()
		l.mu.Lock()
		delete(l.pipes, p)
		l.mu.Unlock()
	}()
	if !l.waitPass() {
		return
	}
	l.mu.Lock()
	target := l.target
	l.mu.Unlock()
	out, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil || !p.setOut(out) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { l.copy(out, p.in); done <- struct{}{} }()
	go func() { l.copy(p.in, out); done <- struct{}{} }()
	<-done
	<-done
}

// copy moves bytes from src to dst, holding them while the link
// black-holes; at src's end it half-closes dst.
func (l *Link) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !l.waitPass() {
				dst.Close()
				src.Close()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				_ = tc.CloseWrite()
			} else {
				dst.Close()
			}
			return
		}
	}
}

// Network is a full mesh of Links between the replicas of a cell: for every
// ordered pair (A, B) one link for A's Paxos connections to B and one for
// A's HTTP requests to B (followers forward to the leader over HTTP, so a
// partition must cut that too). Gossip is not proxied: it only gives
// liveness hints.
type Network struct {
	n     int
	links map[linkKey]*Link
}

type linkKey struct {
	from, to uint32
	kind     string
}

// NewNetwork listens for every link of an n-replica cell. Create it before
// the cell, so the cell's port search skips the links' ports.
func NewNetwork(n int) (*Network, error) {
	nw := &Network{n: n, links: map[linkKey]*Link{}}
	for a := uint32(1); a <= uint32(n); a++ {
		for b := uint32(1); b <= uint32(n); b++ {
			if a == b {
				continue
			}
			for _, kind := range []string{"client", "peer"} {
				l, err := newLink(a, b, kind)
				if err != nil {
					nw.Close()
					return nil, err
				}
				nw.links[linkKey{a, b, kind}] = l
			}
		}
	}
	return nw, nil
}

// Addresses is testcell.Options.Addresses: replica self reaches other's
// client and peer ports through the links self→other.
func (nw *Network) Addresses(self, other *testcell.Replica) (client, peer string) {
	cl := nw.links[linkKey{self.ID, other.ID, "client"}]
	pl := nw.links[linkKey{self.ID, other.ID, "peer"}]
	cl.setTarget(other.Client)
	pl.setTarget(other.Peer)
	return cl.Addr(), pl.Addr()
}

// Link returns the link of kind from → to.
func (nw *Network) Link(from, to uint32, kind string) *Link { return nw.links[linkKey{from, to, kind}] }

// Cut sets both kinds of link from → to (one direction only) to m.
func (nw *Network) Cut(from, to uint32, m Mode) {
	nw.links[linkKey{from, to, "client"}].SetMode(m)
	nw.links[linkKey{from, to, "peer"}].SetMode(m)
}

// Partition cuts, both ways and with mode m, every pair of replicas that
// share no group; a replica in two groups bridges them, one in none is
// isolated. Pairs that share a group pass.
func (nw *Network) Partition(groups [][]uint32, m Mode) {
	for k, l := range nw.links {
		if connected(groups, k.from, k.to) {
			l.SetMode(Pass)
		} else {
			l.SetMode(m)
		}
	}
}

func connected(groups [][]uint32, a, b uint32) bool {
	for _, g := range groups {
		var ina, inb bool
		for _, x := range g {
			ina = ina || x == a
			inb = inb || x == b
		}
		if ina && inb {
			return true
		}
	}
	return false
}

// Heal lets every link pass.
func (nw *Network) Heal() {
	for _, l := range nw.links {
		l.SetMode(Pass)
	}
}

// Cuts describes the links that do not pass, as "1→2 drop, ...".
func (nw *Network) Cuts() string {
	seen := map[string]bool{}
	var out []string
	for k, l := range nw.links {
		if m := l.Mode(); m != Pass {
			s := fmt.Sprintf("%d→%d %s", k.from, k.to, m)
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// Close stops every link.
func (nw *Network) Close() {
	for _, l := range nw.links {
		l.Close()
	}
}
