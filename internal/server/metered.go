package server

import (
	"context"
	"time"

	"github.com/lockd/lockd/internal/metrics"
	"github.com/lockd/lockd/lockservice"
	"github.com/lockd/lockd/paxos"
)

// meteredConsensus times every proposal for the commit-latency histogram.
type meteredConsensus struct {
	*paxos.Node
	m *metrics.Metrics
}

func (c meteredConsensus) Propose(ctx context.Context, cmd []byte) (paxos.Result, error) {
	start := time.Now()
	res, err := c.Node.Propose(ctx, cmd)
	c.m.ObserveProposal(time.Since(start), err)
	return res, err
}

// meteredStorage times every synced write and counts snapshots taken.
type meteredStorage struct {
	paxos.Storage
	m *metrics.Metrics
}

func (s meteredStorage) Save(hs *paxos.HardState, entries []paxos.Entry, snap *paxos.Snapshot) error {
	start := time.Now()
	err := s.Storage.Save(hs, entries, snap)
	s.m.ObservePersist(time.Since(start))
	return err
}

func (s meteredStorage) Compact(snap paxos.Snapshot) error {
	err := s.Storage.Compact(snap)
	if err == nil {
		s.m.SnapshotTaken()
	}
	return err
}

// meteredMachine counts applied commands, installed snapshots and expiries.
type meteredMachine struct {
	*lockservice.Machine
	m *metrics.Metrics
}

func (sm meteredMachine) Apply(index uint64, cmd []byte) any {
	res := sm.Machine.Apply(index, cmd)
	sm.m.ObserveCommands(1)
	if r, ok := res.(lockservice.Result); ok && r.Err == nil && r.Kind == lockservice.KindExpireSession {
		sm.m.SessionsExpired(1)
	}
	return res
}

func (sm meteredMachine) Restore(data []byte) error {
	err := sm.Machine.Restore(data)
	if err == nil {
		sm.m.SnapshotInstalled()
	}
	return err
}
