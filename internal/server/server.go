// Package server wires one lockd replica: the pebble store, the TCP peer
// transport, the Paxos node, the lock service state machine, the session
// service, gossip, and the HTTP API. It starts them in order and shuts them
// down in reverse: HTTP, sessions, Paxos, transport, pebble.
//
// Security (security.go): the configuration's tokens, bootstrap ACLs and
// limits become the API's Auth. With tls configured, the client API serves
// HTTPS (client certificates of the cell CA required with client_auth, and
// verified when given otherwise), the Paxos transport speaks mutual TLS 1.3
// (both ends present a certificate of the cell CA valid for a replica's
// host), and leader forwarding and the status fan-out dial the others over
// HTTPS, presenting this replica's certificate; every client URL is
// https://. gossip_key encrypts memberlist. A cell without tokens logs a
// loud warning at start (config.Validate has already refused it unless it
// listens on loopback only or auth.disabled is set).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/api"
	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/internal/members"
	"github.com/lockd/lockd/internal/metrics"
	"github.com/lockd/lockd/internal/ui"
	"github.com/lockd/lockd/lockservice"
	"github.com/lockd/lockd/paxos"
	"github.com/lockd/lockd/paxos/pebblestore"
	"github.com/lockd/lockd/paxos/tcptransport"
	"github.com/lockd/lockd/session"
)

// Server is one running replica.
type Server struct {
	cfg     config.Config
	log     hclog.Logger
	store   *pebblestore.Store
	tr      *tcptransport.Transport
	sm      *lockservice.Machine
	node    *paxos.Node
	svc     *session.Service
	members *members.Members
	api     *api.Server
	http    *http.Server
	ln      net.Listener
	flow    *flowRing
	metrics *metrics.Metrics
	peers   *peerStatus
	sec     *security
	started time.Time
}

func formatID(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// New opens the replica's data directory and builds every part; nothing runs
// until Run. A data directory of another cell or replica, or a damaged one,
// is refused, never reset.
func New(cfg config.Config, logger hclog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: logger, flow: newFlowRing(4096), metrics: metrics.New(metrics.Options{}), started: time.Now()}
	ok := false
	defer func() {
		if !ok {
			s.closeParts()
		}
	}()
	var err error
	if s.sec, err = newSecurity(&cfg); err != nil {
		return nil, err
	}
	s.warnInsecure()
	id := paxos.NodeID(cfg.ID)
	s.store, err = pebblestore.Open(cfg.DataDir, paxos.Identity{Cell: cfg.Cell, Node: id},
		pebblestore.Options{Bootstrap: cfg.Bootstrap, Logger: logger.Named("pebble")})
	if err != nil {
		return nil, fmt.Errorf("opening data directory %s: %w", cfg.DataDir, err)
	}
	clientAddr, peerAddr, gossipAddr := cfg.Listen()
	peerAddrs := map[paxos.NodeID]string{}
	var peerIDs []paxos.NodeID
	var gossipPeers []string
	for _, r := range cfg.Replicas {
		peerAddrs[paxos.NodeID(r.ID)] = r.Peer
		peerIDs = append(peerIDs, paxos.NodeID(r.ID))
		if r.ID != cfg.ID {
			gossipPeers = append(gossipPeers, r.Gossip)
		}
	}
	s.tr, err = tcptransport.New(tcptransport.Config{Self: id, Cell: cfg.Cell, Listen: peerAddr, Peers: peerAddrs,
		Logger: logger, TLS: s.sec.peerTLS()})
	if err != nil {
		return nil, fmt.Errorf("starting peer transport on %s: %w", peerAddr, err)
	}
	s.sm, err = lockservice.New(lockservice.Config{Cell: cfg.Cell})
	if err != nil {
		return nil, err
	}
	pcfg := paxos.DefaultConfig(id, peerIDs)
	pcfg.ElectionTicks, pcfg.HeartbeatTicks = cfg.ElectionTicks, cfg.HeartbeatTicks
	pcfg.LeaseTicks, pcfg.DriftTicks = cfg.LeaseTicks, cfg.DriftTicks
	s.node, err = paxos.NewNode(paxos.NodeConfig{Core: pcfg, Storage: meteredStorage{s.store, s.metrics}, Transport: s.tr,
		StateMachine: meteredMachine{s.sm, s.metrics}, TickInterval: cfg.Tick(), SnapshotEvery: cfg.SnapshotEvery,
		Observer: func(ev paxos.FlowEvent) { s.flow.Observe(ev); s.metrics.ObserveFlow(ev) }, Logger: logger})
	if err != nil {
		return nil, err
	}
	s.svc = session.NewService(session.ServiceConfig{Consensus: meteredConsensus{s.node, s.metrics}, Machine: s.sm,
		Grace: time.Duration(cfg.SessionGraceMs) * time.Millisecond, Self: formatID(cfg.ID), Logger: logger})
	gossipKey, err := cfg.GossipKeyBytes()
	if err != nil {
		return nil, err
	}
	s.members, err = members.Start(members.Config{Name: formatID(cfg.ID), Bind: gossipAddr,
		Advertise: cfg.Self().Gossip, Peers: gossipPeers, SecretKey: gossipKey, Logger: logger})
	if err != nil {
		return nil, err
	}
	s.peers = newPeerStatus(s)
	s.api = api.New(api.Options{
		Service:    s.svc,
		Cell:       cfg.Cell,
		Self:       formatID(cfg.ID),
		Leader:     s.leader,
		Cluster:    s.cluster,
		Flow:       func(since uint64) any { return map[string]any{"messages": s.flow.Since(since)} },
		SelfStatus: func() any { return s.peers.selfView() },
		Ready:      s.ready,
		Metrics:    s.metrics.Handler(),
		UI:         ui.Handler(),
		Logger:     logger,
		Auth:       s.sec.auth,

		ForwardTransport: s.sec.transport(),
	})
	s.api.Echo().Use(s.metrics.EchoMiddleware())
	s.metrics.OnCollect(s.collect)
	if cfg.Pprof {
		mountPprof(s.api)
	}
	s.ln, err = net.Listen("tcp", clientAddr)
	if err != nil {
		return nil, fmt.Errorf("listening for clients on %s: %w", clientAddr, err)
	}
	s.http = &http.Server{Handler: s.api.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{
			ForceLevel: hclog.Debug})}
	if s.sec.tls != nil {
		s.http.TLSConfig = s.sec.tls.Server()
	}
	ok = true
	return s, nil
}

// ClientAddr is the address the HTTP API listens on.
func (s *Server) ClientAddr() string { return s.ln.Addr().String() }

// Run serves until ctx ends, then shuts down in reverse order.
func (s *Server) Run(ctx context.Context) error {
	s.node.Start()
	svcCtx, stopSvc := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.svc.Run(svcCtx, 25*time.Millisecond) })
	httpErr := make(chan error, 1)
	go func() {
		if s.sec.tls != nil {
			httpErr <- s.http.ServeTLS(s.ln, "", "") // the certificate is in TLSConfig
			return
		}
		httpErr <- s.http.Serve(s.ln)
	}()
	open, _ := s.cfg.Open()
	s.log.Info("replica serving", "cell", s.cfg.Cell, "id", s.cfg.ID, "client", s.sec.url(s.ClientAddr()),
		"peer", s.tr.Addr(), "data_dir", s.cfg.DataDir, "auth", !open, "tls", s.sec.tls != nil,
		"gossip_encrypted", s.cfg.GossipKey != "")
	var err error
	select {
	case <-ctx.Done():
	case <-s.node.Done():
		err = fmt.Errorf("paxos stopped: %w", s.node.Err())
	case e := <-httpErr:
		if !errors.Is(e, http.ErrServerClosed) {
			err = fmt.Errorf("http server: %w", e)
		}
	}
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.api.Shutdown(shCtx)
	_ = s.http.Shutdown(shCtx)
	stopSvc()
	wg.Wait()
	s.node.Stop()
	s.closeParts()
	s.log.Info("replica stopped")
	return err
}

func (s *Server) closeParts() {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.members != nil {
		s.members.Close()
	}
	if s.tr != nil {
		s.tr.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
}

// collect refreshes the gauges that are read from state at scrape time.
func (s *Server) collect(m *metrics.Metrics) {
	m.SetStatus(s.node.Status(), s.cfg.Tick())
	m.SetSessions(len(s.sm.LiveSessions()))
	held, waiters := 0, 0
	for _, l := range s.sm.ListLocks(s.sm.NowMs()) {
		held += len(l.Holders)
		waiters += len(l.Waiters)
	}
	m.SetLocks(held, waiters)
}

// leader returns the leader this replica knows of and its client URL.
func (s *Server) leader() (string, string) {
	st := s.node.Status()
	if st.Leader == paxos.None {
		return "", ""
	}
	for _, r := range s.cfg.Replicas {
		if paxos.NodeID(r.ID) == st.Leader {
			return formatID(r.ID), s.sec.url(r.Client)
		}
	}
	return "", ""
}

// ready: part of a cell with a leader, and not recovering its state.
func (s *Server) ready() error {
	st := s.node.Status()
	switch {
	case st.Recovering:
		return errors.New("recovering: catching up after losing its data")
	case st.Leader == paxos.None:
		return errors.New("no leader known")
	case st.Applied < st.Commit:
		return fmt.Errorf("applying: %d of %d", st.Applied, st.Commit)
	}
	return nil
}
