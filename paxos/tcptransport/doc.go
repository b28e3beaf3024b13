// Package tcptransport carries paxos messages between the replicas of a cell
// over TCP. *Transport implements paxos.Transport.
//
// # Contract
//
// The transport is lossy, as paxos.Transport allows. Send never blocks: it
// puts the message on a bounded per-peer queue (Config.QueueSize) and drops
// it, counting the drop, if the queue is full, the peer is unknown, or the
// transport is closed. Messages to Self are dropped too: the core counts its
// own votes. A message can also be lost when a connection breaks, or dropped
// while the peer is unreachable: after a failed dial every message to that
// peer is dropped until the back-off (exponential with jitter, capped at one
// second) runs out, so a peer that comes back gets fresh messages, not a
// burst of stale ones. A message received when the Receive channel is full is
// dropped. Stats counts every drop.
//
// Messages to one peer go over one connection and arrive in the order they
// were sent, with gaps where messages were lost. Across a reconnect, or
// between different senders, there is no ordering.
//
// Send keeps m until it is written: the caller must not modify the slices m
// refers to after Send. Received messages share no memory with the
// transport.
//
// # Connections
//
// Each replica dials every peer it sends to, lazily on the first message, and
// keeps that one connection; it never writes on connections it accepted. So
// two replicas talk over two TCP connections, one each way. A writer
// goroutine per peer drains the queue through a bufio.Writer and flushes when
// the queue is momentarily empty, so a burst costs few system calls.
// TCP_NODELAY is set. A reader goroutine per accepted connection decodes
// frames and delivers them to Receive. A newer connection from a peer
// replaces the older one.
//
// # Handshake
//
// The dialler sends a hello frame (see handshake.go): the magic "LKDP", a
// protocol version, its node id and its cell name. The acceptor answers with
// an ack frame if the cell is its own and the node id is one of its configured
// peers; otherwise it logs and closes the connection, so a replica of another
// cell cannot inject messages. Messages whose From is not the id of the hello,
// or whose To is not this replica, are dropped. Both sides give the TCP
// connect, the TLS handshake and the hello exchange Config.DialTimeout.
//
// The hello proves nothing by itself: a peer is only as authenticated as the
// network. With Config.TLS set, every connection is TLS (configure mutual
// TLS with client certificates to authenticate peers).
//
// # Framing and bounds
//
// After the handshake a connection carries frames: a 4-byte big-endian
// length, then that many bytes of paxos.EncodeMessage output. A frame longer
// than Config.MaxFrame (at most paxos.MaxMessageSize, 64 MiB), empty, or
// undecodable closes the connection; the sender redials. The reader grows
// its buffer as bytes arrive, so a lying length costs no up-front memory.
// The sender drops a message paxos.ValidateMessage refuses or whose frame is
// over its own MaxFrame rather than have the peer close the connection.
//
// # Shutdown
//
// Close stops the listener, closes every connection, waits for every
// goroutine the transport started, and then closes the Receive channel.
package tcptransport
