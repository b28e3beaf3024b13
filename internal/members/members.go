// Package members runs hashicorp/memberlist gossip among the replicas of a
// cell. It gives liveness hints only (for the dashboard, health and leader
// hints); it never decides a quorum: Paxos does that with its own votes.
package members

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Config configures gossip for one replica.
type Config struct {
	// Name is the replica id, unique in the cell.
	Name string
	// Bind is the host:port gossip listens on (UDP and TCP).
	Bind string
	// Advertise is the host:port others reach it on (default Bind).
	Advertise string
	// Peers are the gossip addresses of the other replicas.
	Peers []string
	// SecretKey (16, 24 or 32 bytes), when set, encrypts and authenticates
	// every gossip message (memberlist's AES-GCM keyring), and messages
	// without it are refused both ways: a host without the key can neither
	// join nor forge member states.
	SecretKey []byte
	Logger    hclog.Logger
}

// Members is a running gossip member.
type Members struct {
	ml     *memberlist.Memberlist
	peers  []string
	log    hclog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start begins gossip and keeps trying to join the peers in the background.
func Start(cfg Config) (*Members, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	log := cfg.Logger.Named("members")
	mc := memberlist.DefaultLocalConfig()
	mc.Name = cfg.Name
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip bind address: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	adv := cfg.Advertise
	if adv == "" {
		adv = cfg.Bind
	}
	if host, port, err = splitHostPort(adv); err != nil {
		return nil, fmt.Errorf("gossip advertise address: %w", err)
	}
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	mc.Logger = log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = cfg.SecretKey
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("starting gossip: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Members{ml: ml, peers: cfg.Peers, log: log, cancel: cancel}
	m.wg.Add(1)
	go m.joinLoop(ctx)
	return m, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}

// joinLoop joins whichever peers answer, and retries while some are missing,
// so replicas may start in any order.
func (m *Members) joinLoop(ctx context.Context) {
	defer m.wg.Done()
	backoff := 200 * time.Millisecond
	for {
		if m.ml.NumMembers() < len(m.peers)+1 {
			if n, err := m.ml.Join(m.peers); err != nil && n == 0 {
				m.log.Debug("gossip join pending", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Status returns the state of every member memberlist still lists, by name:
// "alive" or "suspect" (it drops members that left or died, so a configured
// replica missing from the map is down).
func (m *Members) Status() map[string]string {
	out := map[string]string{}
	for _, n := range m.ml.Members() {
		out[n.Name] = stateName(n.State)
	}
	return out
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// Names returns the sorted names of live members.
func (m *Members) Names() []string {
	var out []string
	for _, n := range m.ml.Members() {
		if n.State == memberlist.StateAlive {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Close leaves the cluster (briefly telling the others) and stops gossip.
func (m *Members) Close() error {
	m.cancel()
	m.wg.Wait()
	_ = m.ml.Leave(500 * time.Millisecond)
	return m.ml.Shutdown()
}
