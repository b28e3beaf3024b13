package paxos

// Transport moves protocol messages between the replicas of a cell. It is
// lossy by contract: Paxos tolerates dropped, duplicated and reordered
// messages, so an implementation may drop a message rather than block (for
// example when a peer is down or its queue is full).
type Transport interface {
	// Send queues m for delivery to m.To. It never blocks.
	Send(m Message)
	// Receive returns the channel of messages addressed to this replica.
	// It is closed when the transport is closed.
	Receive() <-chan Message
	// Close stops the transport and releases its connections.
	Close() error
}
