package lockd

import (
	"bytes"
	"encoding/json"
)

// Wire structs: the JSON of API.md, field for field. They are unexported;
// the exported types (SessionInfo, Node, Grant, ...) carry Go types
// (time.Duration, []byte) and are converted from these. Requests carry only
// fields of the contract, because the cell rejects unknown fields; responses
// are decoded leniently, because the contract may gain fields.

type wireError struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		Leader       string `json:"leader,omitempty"`
		RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
	} `json:"error"`
}

type wireCreateSession struct {
	TTLMs       int64  `json:"ttl_ms,omitempty"`
	LockDelayMs *int64 `json:"lock_delay_ms,omitempty"`
	Label       string `json:"label,omitempty"`
	Host        string `json:"host,omitempty"`
	PID         int    `json:"pid,omitempty"`
}

type wireSession struct {
	ID               string   `json:"id"`
	TTLMs            int64    `json:"ttl_ms"`
	LockDelayMs      int64    `json:"lock_delay_ms"`
	LeaseRemainingMs int64    `json:"lease_remaining_ms"`
	Label            string   `json:"label"`
	Host             string   `json:"host"`
	PID              int      `json:"pid"`
	CreatedIndex     uint64   `json:"created_index"`
	Locks            []string `json:"locks"`
	Ephemerals       []string `json:"ephemerals"`
}

type wireSessionResp struct {
	Session wireSession `json:"session"`
}

type wireSessionsResp struct {
	Sessions []wireSession `json:"sessions"`
}

type wirePut struct {
	Contents            *string `json:"contents,omitempty"`
	ContentsB64         *string `json:"contents_b64,omitempty"`
	Dir                 bool    `json:"dir,omitempty"`
	Ephemeral           bool    `json:"ephemeral,omitempty"`
	Session             string  `json:"session,omitempty"`
	CreateOnly          bool    `json:"create_only,omitempty"`
	IfContentGeneration *uint64 `json:"if_content_generation,omitempty"`
}

type wireNode struct {
	Path              string   `json:"path"`
	Kind              string   `json:"kind"`
	Contents          *string  `json:"contents"`     // when valid UTF-8
	ContentsB64       *string  `json:"contents_b64"` // standard base64
	EphemeralOwner    string   `json:"ephemeral_owner"`
	Instance          uint64   `json:"instance"`
	ContentGeneration uint64   `json:"content_generation"`
	LockGeneration    uint64   `json:"lock_generation"`
	ACLGeneration     uint64   `json:"acl_generation"`
	CreateIndex       uint64   `json:"create_index"`
	ModifyIndex       uint64   `json:"modify_index"`
	Children          []string `json:"children"`
}

type wireNodeResp struct {
	Node     wireNode `json:"node"`
	Children []string `json:"children"` // also accepted beside the node
}

type wireAcquire struct {
	Path        string  `json:"path"`
	Session     string  `json:"session"`
	Mode        string  `json:"mode"`
	WaitMs      int64   `json:"wait_ms"`
	RequestID   string  `json:"request_id"`
	Contents    *string `json:"contents,omitempty"`
	ContentsB64 *string `json:"contents_b64,omitempty"` // extension, for contents that are not UTF-8
}

type wireGrant struct {
	Path       string `json:"path"`
	Mode       string `json:"mode"`
	Generation uint64 `json:"generation"`
	Sequencer  string `json:"sequencer"`
	Session    string `json:"session"`
}

type wireGrantResp struct {
	Lock wireGrant `json:"lock"`
}

type wireRelease struct {
	Path       string `json:"path"`
	Session    string `json:"session"`
	Generation uint64 `json:"generation"`
	RequestID  string `json:"request_id"`
}

type wireReleaseResp struct {
	Released bool `json:"released"`
}

type wireHolder struct {
	Session    string `json:"session"`
	Label      string `json:"label"`
	Host       string `json:"host"`
	PID        int    `json:"pid"`
	SinceIndex uint64 `json:"since_index"`
	Mode       string `json:"mode"`       // extension
	Generation uint64 `json:"generation"` // extension
}

type wireWaiter struct {
	Session   string `json:"session"`
	Label     string `json:"label"`
	Mode      string `json:"mode"`
	WaitingMs int64  `json:"waiting_ms"`
}

type wireLockState struct {
	Path                 string       `json:"path"`
	Mode                 string       `json:"mode"`
	Generation           uint64       `json:"generation"`
	Holders              []wireHolder `json:"holders"`
	Waiters              []wireWaiter `json:"waiters"`
	LockDelayRemainingMs int64        `json:"lock_delay_remaining_ms"`
}

type wireLockStateResp struct {
	Lock wireLockState `json:"lock"`
}

type wireLockStatesResp struct {
	Locks []wireLockState `json:"locks"`
}

type wireCheckOne struct {
	Sequencer string `json:"sequencer"`
}

type wireCheckMany struct {
	Sequencers []string `json:"sequencers"`
}

type wireCheckResult struct {
	Valid             bool   `json:"valid"`
	CurrentGeneration uint64 `json:"current_generation"`
}

type wireCheckManyResp struct {
	Results []wireCheckResult `json:"results"`
}

type wireEvent struct {
	Index      uint64 `json:"index"`
	Type       string `json:"type"`
	Path       string `json:"path"`
	Session    string `json:"session"`
	Generation uint64 `json:"generation"`
	Child      string `json:"child"`
	Leader     string `json:"leader"`
}

type wirePoll struct {
	Events []wireEvent `json:"events"`
	Index  uint64      `json:"index"`
}

type wireLeader struct {
	Session    string  `json:"session"`
	Value      *string `json:"value"`
	ValueB64   string  `json:"value_b64"` // extension: always, standard base64
	Generation uint64  `json:"generation"`
	Sequencer  string  `json:"sequencer"`
	Label      string  `json:"label"`       // extension
	Host       string  `json:"host"`        // extension
	PID        int     `json:"pid"`         // extension
	SinceIndex uint64  `json:"since_index"` // extension
}

type wireElectionResp struct {
	Leader *wireLeader `json:"leader"`
}

type wireReplica struct {
	ID             string      `json:"id"`
	ClientURL      string      `json:"client_url"`
	PeerAddress    string      `json:"peer_address"`
	Role           string      `json:"role"`
	Up             bool        `json:"up"`
	PromisedBallot looseString `json:"promised_ballot"`
	CommitIndex    uint64      `json:"commit_index"`
	AppliedIndex   uint64      `json:"applied_index"`
	Lag            uint64      `json:"lag"`
	SnapshotIndex  uint64      `json:"snapshot_index"`
	LastContactMs  int64       `json:"last_contact_ms"`
	MemberStatus   string      `json:"member_status"`
}

type wireCluster struct {
	Cell             string        `json:"cell"`
	Leader           string        `json:"leader"`
	LeaderURL        string        `json:"leader_url"`
	Ballot           looseString   `json:"ballot"`
	LeaseRemainingMs int64         `json:"lease_remaining_ms"`
	Replicas         []wireReplica `json:"replicas"`
}

// looseString decodes a JSON string, or any other scalar as its JSON text:
// ballots are shown as text by the cell, and a reader should not fail on a
// field it only displays.
type looseString string

func (l *looseString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = looseString(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*l = ""
		return nil
	}
	*l = looseString(b)
	return nil
}
