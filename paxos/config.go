package paxos

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
)

// Config configures the protocol core of one replica. Times are in logical
// ticks; the driver decides how long a tick is (Node uses TickInterval).
type Config struct {
	// ID is this replica's id; it must be one of Peers.
	ID NodeID
	// Peers lists every replica of the cell, this one included.
	Peers []NodeID
	// ElectionTicks is the base election timeout: a replica that hears no
	// leader for a random time in [ElectionTicks, 1.5*ElectionTicks) starts
	// a campaign; after failed campaigns the random part doubles, up to 8x.
	ElectionTicks int
	// HeartbeatTicks is how often the leader sends heartbeats and
	// retransmits unacknowledged accepts.
	HeartbeatTicks int
	// LeaseTicks is the leader lease: an acceptor that heard the leader
	// refuses other Prepares for this long on its own clock.
	LeaseTicks int
	// DriftTicks bounds how far clocks may drift apart over one lease; the
	// leader counts its lease as LeaseTicks-DriftTicks from when it sent.
	DriftTicks int
	// MaxBatchCmds and MaxBatchBytes bound one slot's value.
	MaxBatchCmds  int
	MaxBatchBytes int
	// MaxInflightSlots bounds how many slots may be proposed and not yet
	// chosen at once (the pipeline depth).
	MaxInflightSlots int
	// CheckQuorum makes a leader step down when it has not heard from a
	// majority for an election timeout, so clients stop talking to a leader
	// that cannot commit. It is no part of lease safety, which acceptors
	// enforce by refusing Prepares.
	CheckQuorum bool
	// MaxFetchEntries bounds the entries in one catch-up reply.
	MaxFetchEntries int
	// Rand is the source of election jitter. Nil means a source seeded with
	// the replica id (deterministic; the driver passes a real seed).
	Rand *rand.Rand
}

// DefaultConfig returns a configuration for replica id of a cell with the
// given peers, tuned for a 10 ms tick: heartbeats every 30 ms, a 150 ms
// lease, and an election after 200-300 ms without a leader, so a dead leader
// is replaced in well under half a second.
func DefaultConfig(id NodeID, peers []NodeID) Config {
	return Config{
		ID:               id,
		Peers:            slices.Clone(peers),
		ElectionTicks:    20,
		HeartbeatTicks:   3,
		LeaseTicks:       15,
		DriftTicks:       2,
		MaxBatchCmds:     256,
		MaxBatchBytes:    1 << 20,
		MaxInflightSlots: 64,
		MaxFetchEntries:  512,
		CheckQuorum:      true,
	}
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == None {
		errs = append(errs, errors.New("id must be set"))
	}
	if len(c.Peers) == 0 {
		errs = append(errs, errors.New("peers must not be empty"))
	}
	seen := map[NodeID]bool{}
	for _, p := range c.Peers {
		if p == None {
			errs = append(errs, errors.New("peer id 0 is reserved"))
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("peer %d listed twice", p))
		}
		seen[p] = true
	}
	if c.ID != None && !seen[c.ID] {
		errs = append(errs, fmt.Errorf("id %d is not among the peers", c.ID))
	}
	if c.HeartbeatTicks <= 0 {
		errs = append(errs, errors.New("heartbeat ticks must be positive"))
	}
	if c.LeaseTicks <= c.DriftTicks || c.DriftTicks < 0 {
		errs = append(errs, errors.New("lease ticks must exceed drift ticks, which must not be negative"))
	}
	if c.LeaseTicks <= c.HeartbeatTicks {
		errs = append(errs, errors.New("lease ticks must exceed heartbeat ticks"))
	}
	if c.ElectionTicks < c.LeaseTicks {
		errs = append(errs, errors.New("election ticks must be at least the lease ticks"))
	}
	if c.MaxBatchCmds <= 0 || c.MaxBatchBytes <= 0 || c.MaxInflightSlots <= 0 || c.MaxFetchEntries <= 0 {
		errs = append(errs, errors.New("batch, inflight and fetch bounds must be positive"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("paxos: invalid config: %w", errors.Join(errs...))
	}
	return nil
}
