// Package wire holds the JSON shapes of the lockd HTTP API, version 1
// (docs: /work/shared/API.md, served as /v1/openapi.json): request and
// response bodies, the error envelope, event types, error codes, header
// names and bounds. It imports only the standard library, so the Go SDK
// (clients/go) and outside programs can share it without pulling in the
// server.
//
// Field names and JSON tags are the contract: new fields may be added,
// existing ones keep their name and meaning.
package wire

import "time"

// Headers every response carries, and the one a forwarding replica adds.
const (
	// HeaderIndex is the log index the answer reflects (decimal).
	HeaderIndex = "X-Lockd-Index"
	// HeaderLeader is the id of the leader replica, when known.
	HeaderLeader = "X-Lockd-Leader"
	// HeaderLeaderURL is the leader's client URL, when known (an extension,
	// so clients can find the leader without asking for the cell status).
	HeaderLeaderURL = "X-Lockd-Leader-Url"
	// HeaderReplica is the id of the replica that answered (an extension:
	// after forwarding it names the leader).
	HeaderReplica = "X-Lockd-Replica"
	// HeaderForwarded marks a request a follower forwarded to the leader; its
	// value is the follower's replica id. A replica that is not the leader
	// answers such a request with not_leader instead of forwarding it again.
	HeaderForwarded = "X-Lockd-Forwarded"
	// HeaderLastEventID resumes a Server-Sent Events watch.
	HeaderLastEventID = "Last-Event-ID"
)

// Bounds (API.md, "Bounds"). Out of range is invalid_argument; over a size
// limit is too_large.
const (
	MinTTLMs           = 1_000
	MaxTTLMs           = 300_000
	DefaultTTLMs       = 10_000
	MinLockDelayMs     = 0
	MaxLockDelayMs     = 60_000
	DefaultLockDelayMs = 15_000
	MaxWaitMs          = 300_000
	MaxContentsBytes   = 256 << 10
	MaxBodyBytes       = 512 << 10
	MaxPathBytes       = 1024
	MaxSegmentBytes    = 255
	MaxSessionIDBytes  = 64
	MaxRequestIDBytes  = 128
	MaxSequencerBytes  = 2048
	// MaxSequencersPerCheck bounds one batch of POST /v1/sequencers/check.
	MaxSequencersPerCheck = 1_000
)

// Error codes (API.md, "Errors"), with the HTTP status each comes with.
const (
	CodeInvalidArgument    = "invalid_argument"    // 400
	CodeUnauthenticated    = "unauthenticated"     // 401
	CodePermissionDenied   = "permission_denied"   // 403
	CodeNotFound           = "not_found"           // 404
	CodeMethodNotAllowed   = "method_not_allowed"  // 405 (route exists, other method)
	CodeAlreadyExists      = "already_exists"      // 409
	CodeLockHeld           = "lock_held"           // 409
	CodeLockDelayed        = "lock_delayed"        // 409, with RetryAfterMs
	CodeNotHolder          = "not_holder"          // 409
	CodeSessionExpired     = "session_expired"     // 410
	CodeCompacted          = "compacted"           // 410
	CodePreconditionFailed = "precondition_failed" // 412
	CodeTooLarge           = "too_large"           // 413
	CodeNotLeader          = "not_leader"          // 421, with Leader
	CodeTooManyRequests    = "too_many_requests"   // 429, with RetryAfterMs
	CodeInternal           = "internal"            // 500
	CodeNoLeader           = "no_leader"           // 503
	CodeUnavailable        = "unavailable"         // 503: outcome unknown, retry with the same request_id
)

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong. Leader (the leader's client URL) comes with
// not_leader; RetryAfterMs with lock_delayed, too_many_requests and, as a
// hint, with no_leader.
type ErrorBody struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	Leader       string `json:"leader,omitempty"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
}

// CreateSessionRequest is the body of POST /v1/sessions. Every field is
// optional: nil TTLMs is DefaultTTLMs, nil LockDelayMs is DefaultLockDelayMs.
type CreateSessionRequest struct {
	TTLMs       *int64 `json:"ttl_ms,omitempty"`
	LockDelayMs *int64 `json:"lock_delay_ms,omitempty"`
	Label       string `json:"label,omitempty"`
	Host        string `json:"host,omitempty"`
	PID         int64  `json:"pid,omitempty"`
}

// Session is a live session. LeaseRemainingMs is what remains of its lease on
// the leader (0 when answered by a replica that does not run leases, as a
// stale read on a follower).
type Session struct {
	ID               string `json:"id"`
	TTLMs            int64  `json:"ttl_ms"`
	LockDelayMs      int64  `json:"lock_delay_ms"`
	LeaseRemainingMs int64  `json:"lease_remaining_ms"`
	Label            string `json:"label"`
	Host             string `json:"host"`
	PID              int64  `json:"pid"`
	// Principal (an extension) created the session and owns it; absent
	// when the cell runs without authentication.
	Principal    string   `json:"principal,omitempty"`
	CreatedIndex uint64   `json:"created_index"`
	Locks        []string `json:"locks"`
	Ephemerals   []string `json:"ephemerals"`
}

// SessionResponse is the body of POST /v1/sessions (201), of a keepalive and
// of GET /v1/sessions/{id}.
type SessionResponse struct {
	Session Session `json:"session"`
}

// SessionsResponse is the body of GET /v1/sessions.
type SessionsResponse struct {
	Sessions []Session `json:"sessions"`
}

// PutNodeRequest is the body of PUT /v1/nodes/{path}. At most one of Contents
// (text) and ContentsB64 (standard base64, padded) may be set; neither means
// empty contents. IfContentGeneration absent is unconditional.
type PutNodeRequest struct {
	Contents            *string `json:"contents,omitempty"`
	ContentsB64         *string `json:"contents_b64,omitempty"`
	Dir                 bool    `json:"dir,omitempty"`
	Ephemeral           bool    `json:"ephemeral,omitempty"`
	Session             string  `json:"session,omitempty"`
	CreateOnly          bool    `json:"create_only,omitempty"`
	IfContentGeneration *uint64 `json:"if_content_generation,omitempty"`
}

// Node kinds.
const (
	KindFile = "file"
	KindDir  = "dir"
)

// Node is a file or directory. Contents is set (possibly to "") exactly when
// the contents are valid UTF-8; ContentsB64 always holds them in standard
// base64. Children is set only when asked for (?children=true) on a
// directory.
type Node struct {
	Path              string   `json:"path"`
	Kind              string   `json:"kind"`
	Contents          *string  `json:"contents,omitempty"`
	ContentsB64       string   `json:"contents_b64"`
	EphemeralOwner    string   `json:"ephemeral_owner"`
	Instance          uint64   `json:"instance"`
	ContentGeneration uint64   `json:"content_generation"`
	LockGeneration    uint64   `json:"lock_generation"`
	ACLGeneration     uint64   `json:"acl_generation"`
	CreateIndex       uint64   `json:"create_index"`
	ModifyIndex       uint64   `json:"modify_index"`
	Children          []string `json:"children,omitempty"`
}

// NodeResponse is the body of PUT (200 updated, 201 created) and GET
// /v1/nodes/{path}.
type NodeResponse struct {
	Node Node `json:"node"`
}

// Lock modes.
const (
	ModeExclusive = "exclusive"
	ModeShared    = "shared"
)

// AcquireRequest is the body of POST /v1/locks/acquire. Mode "" is
// exclusive; WaitMs 0 is a try. Contents (text) or ContentsB64, when set, is
// written into the node in the commit that grants the lock.
type AcquireRequest struct {
	Path        string  `json:"path"`
	Session     string  `json:"session"`
	Mode        string  `json:"mode,omitempty"`
	WaitMs      int64   `json:"wait_ms,omitempty"`
	RequestID   string  `json:"request_id,omitempty"`
	Contents    *string `json:"contents,omitempty"`
	ContentsB64 *string `json:"contents_b64,omitempty"`
}

// Grant is a held lock. Sequencer is opaque: pass it to the services you
// write to, which check it with POST /v1/sequencers/check.
type Grant struct {
	Path       string `json:"path"`
	Mode       string `json:"mode"`
	Generation uint64 `json:"generation"`
	Sequencer  string `json:"sequencer"`
	Session    string `json:"session"`
}

// LockResponse is the body of a successful acquire.
type LockResponse struct {
	Lock Grant `json:"lock"`
}

// ReleaseRequest is the body of POST /v1/locks/release: the generation named
// must be the one the session holds.
type ReleaseRequest struct {
	Path       string `json:"path"`
	Session    string `json:"session"`
	Generation uint64 `json:"generation"`
	RequestID  string `json:"request_id,omitempty"`
}

// ReleaseResponse is the body of a successful release.
type ReleaseResponse struct {
	Released bool `json:"released"`
}

// Holder is a session holding a lock. Mode and Generation are extensions
// (shared holders may differ in generation).
type Holder struct {
	Session    string `json:"session"`
	Label      string `json:"label"`
	Host       string `json:"host"`
	PID        int64  `json:"pid"`
	SinceIndex uint64 `json:"since_index"`
	Mode       string `json:"mode"`
	Generation uint64 `json:"generation"`
}

// Waiter is a queued acquire, in queue order.
type Waiter struct {
	Session   string `json:"session"`
	Label     string `json:"label"`
	Mode      string `json:"mode"`
	WaitingMs int64  `json:"waiting_ms"`
}

// LockState is the view of one lock. Mode is "" when nobody holds it.
type LockState struct {
	Path                 string   `json:"path"`
	Mode                 string   `json:"mode"`
	Generation           uint64   `json:"generation"`
	Holders              []Holder `json:"holders"`
	Waiters              []Waiter `json:"waiters"`
	LockDelayRemainingMs int64    `json:"lock_delay_remaining_ms"`
}

// LockStateResponse is the body of GET /v1/locks/{path}.
type LockStateResponse struct {
	Lock LockState `json:"lock"`
}

// LocksResponse is the body of GET /v1/locks: every lock held, awaited or
// in lock-delay, by path.
type LocksResponse struct {
	Locks []LockState `json:"locks"`
}

// CheckSequencerRequest is the body of POST /v1/sequencers/check: exactly one
// of Sequencer (a single check) and Sequencers (a batch, at most
// MaxSequencersPerCheck) is set.
type CheckSequencerRequest struct {
	Sequencer  string   `json:"sequencer,omitempty"`
	Sequencers []string `json:"sequencers,omitempty"`
}

// SequencerResult says whether a sequencer is current: Valid is true exactly
// while the session it names holds that lock, in that mode, at that
// generation. CurrentGeneration is the lock's generation now.
type SequencerResult struct {
	Valid             bool   `json:"valid"`
	CurrentGeneration uint64 `json:"current_generation"`
}

// CheckSequencersResponse is the body of a batch check, results in request
// order. (A single check answers with a bare SequencerResult.)
type CheckSequencersResponse struct {
	Results []SequencerResult `json:"results"`
}

// Event types (API.md, "Watches").
const (
	EventNodeCreated     = "node_created"
	EventContentsChanged = "contents_changed"
	EventNodeDeleted     = "node_deleted"
	EventChildAdded      = "child_added"
	EventChildRemoved    = "child_removed"
	EventLockAcquired    = "lock_acquired"
	EventLockReleased    = "lock_released"
	EventLockConflict    = "lock_conflict"
	EventSessionExpired  = "session_expired"
	EventLeaderChanged   = "leader_changed"
)

// Event is one change, stamped with the log index that caused it; one index
// may carry several events, in the order they happened. Generation is the
// lock generation for lock_* events and the content generation for
// node_created, contents_changed and node_deleted. Child (an extension) names
// the child of child_added/child_removed, whose Path is the parent; Leader
// (an extension) names the new leader replica of leader_changed.
type Event struct {
	Index      uint64 `json:"index"`
	Type       string `json:"type"`
	Path       string `json:"path"`
	Session    string `json:"session"`
	Generation uint64 `json:"generation"`
	Child      string `json:"child,omitempty"`
	Leader     string `json:"leader,omitempty"`
}

// WatchResponse is the body of a long-poll watch: the events after the asked
// index (empty when the wait ran out) and the index to ask from next time.
type WatchResponse struct {
	Events []Event `json:"events"`
	Index  uint64  `json:"index"`
}

// ElectionLeader is the current leader of an election: the exclusive holder
// of the election node, with the node's contents as its value (Value as text
// when valid UTF-8, ValueB64 always).
type ElectionLeader struct {
	Session    string  `json:"session"`
	Value      *string `json:"value,omitempty"`
	ValueB64   string  `json:"value_b64"`
	Generation uint64  `json:"generation"`
	Sequencer  string  `json:"sequencer"`
	Label      string  `json:"label"`
	Host       string  `json:"host"`
	PID        int64   `json:"pid"`
	SinceIndex uint64  `json:"since_index"`
}

// ElectionResponse is the body of GET /v1/elections/{path}; Leader is null
// when nobody holds the election.
type ElectionResponse struct {
	Leader *ElectionLeader `json:"leader"`
}

// Cluster is the body of GET /v1/cluster. Leader is "" when none is known.
type Cluster struct {
	Cell             string    `json:"cell"`
	Leader           string    `json:"leader"`
	LeaderURL        string    `json:"leader_url"`
	Ballot           string    `json:"ballot"`
	LeaseRemainingMs int64     `json:"lease_remaining_ms"`
	Replicas         []Replica `json:"replicas"`
}

// Replica is one replica of the cell as the answering replica sees it.
type Replica struct {
	ID             string `json:"id"`
	ClientURL      string `json:"client_url"`
	PeerAddress    string `json:"peer_address"`
	Role           string `json:"role"`
	Up             bool   `json:"up"`
	PromisedBallot string `json:"promised_ballot"`
	CommitIndex    uint64 `json:"commit_index"`
	AppliedIndex   uint64 `json:"applied_index"`
	Lag            uint64 `json:"lag"`
	SnapshotIndex  uint64 `json:"snapshot_index"`
	LastContactMs  int64  `json:"last_contact_ms"`
	MemberStatus   string `json:"member_status"`
}

// Flow is the body of GET /v1/cluster/flow?since=N: recent consensus
// messages with Seq above N, oldest first.
type Flow struct {
	Messages []FlowMessage `json:"messages"`
}

// FlowMessage is one consensus message. Type is one of prepare, promise,
// accept, accepted, commit, nack (and, as extensions, the other message
// kinds of the protocol).
type FlowMessage struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Type   string    `json:"type"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Ballot string    `json:"ballot"`
	Slot   uint64    `json:"slot"`
	OK     bool      `json:"ok"`
}

// Status is the body of GET /healthz and of a successful GET /readyz.
type Status struct {
	Status string `json:"status"`
}

// Permission names of ACL rules.
const (
	PermRead  = "read"  // read nodes, watch, lock and election state, check sequencers
	PermWrite = "write" // create, write and delete nodes
	PermLock  = "lock"  // acquire and release locks, create ephemeral nodes
	PermAdmin = "admin" // everything below the prefix, and its ACL rules
)

// HeaderAuthorization carries "Bearer <token>" when the cell has auth.
const HeaderAuthorization = "Authorization"

// SetACLRequest is the body of PUT /v1/acls/{prefix}: the rule for
// Principal (a token name, or "*" for every authenticated principal) at the
// prefix. Perms is required; [] is a rule that denies.
type SetACLRequest struct {
	Principal string    `json:"principal"`
	Perms     *[]string `json:"perms"`
}

// ACLRule is one rule. Source is "log" (set through the API, replicated;
// Index is the log index that last set it) or "config" (a bootstrap rule
// of the configuration, Index 0).
type ACLRule struct {
	Prefix    string   `json:"prefix"`
	Principal string   `json:"principal"`
	Perms     []string `json:"perms"`
	Index     uint64   `json:"index"`
	Source    string   `json:"source"`
}

// ACLResponse is the body of PUT /v1/acls/{prefix}.
type ACLResponse struct {
	ACL ACLRule `json:"acl"`
}

// ACLsResponse is the body of GET /v1/acls and GET /v1/acls/{prefix}: the
// rules at and below the prefix, and, with ?principal=P, what P may do at
// the prefix itself.
type ACLsResponse struct {
	ACLs      []ACLRule  `json:"acls"`
	Effective *Effective `json:"effective,omitempty"`
}

// Effective is what a principal may do at a path, and the path's
// acl_generation.
type Effective struct {
	Path          string   `json:"path"`
	Principal     string   `json:"principal"`
	Perms         []string `json:"perms"`
	Admin         bool     `json:"admin"`
	ACLGeneration uint64   `json:"acl_generation"`
}
