package paxos

import "errors"

// Errors returned by the engine.
var (
	// ErrNotLeader means this replica is not the distinguished proposer; the
	// command was not proposed. Retry on the leader.
	ErrNotLeader = errors.New("paxos: not the leader")
	// ErrOutcomeUnknown means leadership was lost while the command was in
	// flight: it may or may not be chosen (trap 5). Retry idempotently.
	ErrOutcomeUnknown = errors.New("paxos: outcome unknown, leadership lost")
	// ErrStopped means the node was stopped.
	ErrStopped = errors.New("paxos: node stopped")
	// ErrRecovering means this replica lost its durable state and is
	// catching up; it does not vote or lead yet.
	ErrRecovering = errors.New("paxos: replica is recovering its state")
	// ErrTooLarge means a command exceeds the batch size bound.
	ErrTooLarge = errors.New("paxos: command too large")
)
