package tcptransport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/paxos"
)

// ErrInvalidConfig is wrapped by the error New returns for a bad Config.
var ErrInvalidConfig = errors.New("tcptransport: invalid config")

// Defaults for the zero fields of Config.
const (
	DefaultQueueSize     = 4096
	DefaultReceiveBuffer = 8192
	DefaultDialTimeout   = 2 * time.Second
	DefaultWriteTimeout  = 10 * time.Second
	DefaultMaxFrame      = paxos.MaxMessageSize
)

// Config configures a Transport. Zero fields take the default written beside
// them.
type Config struct {
	// Self is this replica's id; required.
	Self paxos.NodeID
	// Cell names the cell; required, at most 255 bytes. Connections from a
	// replica of another cell are refused.
	Cell string
	// Listen is the address to accept peer connections on, such as
	// "10.0.0.1:7001" or "127.0.0.1:0"; Transport.Addr reports the bound
	// address. Required unless Listener is set.
	Listen string
	// Listener, if set, is used instead of listening on Listen, and is closed
	// by Close. Tests use it to learn every address before building Peers.
	Listener net.Listener
	// Peers maps every other replica to the address it listens on. An entry
	// for Self is ignored, so the whole cell can be passed.
	Peers map[paxos.NodeID]string
	// Logger receives the transport's logs, under Named("transport").
	// Default: no logging.
	Logger hclog.Logger
	// QueueSize bounds the messages waiting for one peer. Default 4096.
	QueueSize int
	// ReceiveBuffer is the capacity of the Receive channel. Default 8192.
	ReceiveBuffer int
	// DialTimeout bounds a TCP connect plus the TLS and hello handshakes, on
	// both sides. Default 2s.
	DialTimeout time.Duration
	// WriteTimeout bounds one batch of writes to a peer; a peer that reads
	// nothing for that long is disconnected. Default 10s.
	WriteTimeout time.Duration
	// MaxFrame bounds one frame's payload in bytes, in both directions.
	// Default and maximum paxos.MaxMessageSize (64 MiB).
	MaxFrame int
	// TLS, if set, wraps every connection: the listener serves with it and
	// dials are TLS clients with it (ServerName defaults to the peer's host).
	// Set ClientAuth to tls.RequireAndVerifyClientCert for mutual TLS.
	TLS *tls.Config
}

// withDefaults returns c with zero fields filled in and Peers copied.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.ReceiveBuffer == 0 {
		c.ReceiveBuffer = DefaultReceiveBuffer
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	peers := make(map[paxos.NodeID]string, len(c.Peers))
	for id, addr := range c.Peers {
		peers[id] = addr
	}
	c.Peers = peers
	return c
}

// validate reports every problem of a defaulted config at once.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Self == paxos.None {
		bad("Self is required")
	}
	if c.Cell == "" || len(c.Cell) > maxCellLen {
		bad("Cell must be 1 to %d bytes, got %d", maxCellLen, len(c.Cell))
	}
	if c.Listen == "" && c.Listener == nil {
		bad("Listen or Listener is required")
	}
	for id, addr := range c.Peers {
		if id == paxos.None {
			bad("peer id 0 is not a node id")
		}
		if addr == "" && id != c.Self {
			bad("peer %d has no address", id)
		}
	}
	if c.QueueSize < 0 {
		bad("QueueSize %d is negative", c.QueueSize)
	}
	if c.ReceiveBuffer < 0 {
		bad("ReceiveBuffer %d is negative", c.ReceiveBuffer)
	}
	if c.DialTimeout < 0 || c.WriteTimeout < 0 {
		bad("timeouts must not be negative")
	}
	if c.MaxFrame < 0 || c.MaxFrame > paxos.MaxMessageSize {
		bad("MaxFrame %d is outside 1..%d", c.MaxFrame, paxos.MaxMessageSize)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
