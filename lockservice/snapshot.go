package lockservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// snapshotVersion is the version of the snapshot image format.
const snapshotVersion = 1

// The snapshot image: JSON of these types, every list in a fixed order
// (nodes, sessions and locks by path or id; request ids, ended sessions,
// holders and waiters in their own order), so equal states give equal bytes.
type snapImage struct {
	Version   int           `json:"version"`
	Cell      string        `json:"cell"`
	Applied   uint64        `json:"applied"`
	NowMs     int64         `json:"now_ms"`
	Instances uint64        `json:"instances"`
	LockGens  uint64        `json:"lock_gens"`
	Leader    string        `json:"leader"`
	Nodes     []snapNode    `json:"nodes"`
	Sessions  []snapSession `json:"sessions"`
	Ended     []snapEnded   `json:"ended"`
	Locks     []snapLock    `json:"locks"`
	ACLs      []snapACL     `json:"acls,omitempty"`
}

// snapACL is the rules of one prefix (by principal), and the index of the
// last change there. A prefix whose rules were all deleted is kept (no
// rules) for its index, which acl_generation still counts.
type snapACL struct {
	Prefix  string        `json:"prefix"`
	Changed uint64        `json:"changed"`
	Rules   []snapACLRule `json:"rules,omitempty"`
}

type snapACLRule struct {
	Principal string   `json:"principal"`
	Perms     []string `json:"perms,omitempty"`
}

type snapNode struct {
	Path        string `json:"path"`
	Dir         bool   `json:"dir,omitempty"`
	Contents    []byte `json:"contents,omitempty"`
	Owner       string `json:"owner,omitempty"`
	Instance    uint64 `json:"instance"`
	ContentGen  uint64 `json:"content_gen"`
	LockGen     uint64 `json:"lock_gen"`
	ACLGen      uint64 `json:"acl_gen"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

type snapSession struct {
	ID           string        `json:"id"`
	TTLMs        int64         `json:"ttl_ms"`
	LockDelayMs  int64         `json:"lock_delay_ms"`
	Label        string        `json:"label,omitempty"`
	Host         string        `json:"host,omitempty"`
	PID          int64         `json:"pid,omitempty"`
	Principal    string        `json:"principal,omitempty"`
	CreatedIndex uint64        `json:"created_index"`
	Requests     []snapRequest `json:"requests,omitempty"`
}

type snapRequest struct {
	ID           string `json:"id"`
	Kind         Kind   `json:"kind"`
	Path         string `json:"path"`
	WaitID       uint64 `json:"wait_id,omitempty"`
	Done         bool   `json:"done,omitempty"`
	Grant        *Grant `json:"grant,omitempty"`
	Released     bool   `json:"released,omitempty"`
	ErrCode      string `json:"err_code,omitempty"`
	ErrMsg       string `json:"err_msg,omitempty"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
}

type snapEnded struct {
	ID      string `json:"id"`
	Expired bool   `json:"expired,omitempty"`
}

type snapLock struct {
	Path              string       `json:"path"`
	Gen               uint64       `json:"gen"`
	Holders           []snapHolder `json:"holders,omitempty"`
	Waiters           []snapWaiter `json:"waiters,omitempty"`
	DelayUntil        int64        `json:"delay_until,omitempty"`
	DelayBlocksShared bool         `json:"delay_blocks_shared,omitempty"`
}

type snapHolder struct {
	Session    string `json:"session"`
	Mode       Mode   `json:"mode"`
	Generation uint64 `json:"generation"`
	SinceIndex uint64 `json:"since_index"`
}

type snapWaiter struct {
	ID         uint64   `json:"id"`
	Session    string   `json:"session"`
	Mode       Mode     `json:"mode"`
	SinceMs    int64    `json:"since_ms"`
	SinceIndex uint64   `json:"since_index"`
	Deadline   int64    `json:"deadline"`
	Contents   *[]byte  `json:"contents,omitempty"`
	RequestIDs []string `json:"request_ids,omitempty"`
}

// Snapshot returns an image of the whole state after the applied index:
// namespace, sessions (with their request-id tables), the ended-session
// record, locks with holders, queues, deadlines and lock-delays, the
// counters, the clock and the leader. Equal states give equal bytes. The
// event history is not included.
func (m *Machine) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := json.Marshal(m.st.image())
	if err != nil {
		return nil, fmt.Errorf("encoding snapshot: %w", err)
	}
	return b, nil
}

func (s *state) image() *snapImage {
	img := &snapImage{
		Version: snapshotVersion, Cell: s.cell, Applied: s.applied, NowMs: s.now,
		Instances: s.instances, LockGens: s.lockGens, Leader: s.leader,
		Nodes: []snapNode{}, Sessions: []snapSession{}, Ended: []snapEnded{}, Locks: []snapLock{},
	}
	for _, p := range sortedKeys(s.nodes) {
		n := s.nodes[p]
		img.Nodes = append(img.Nodes, snapNode{
			Path: n.path, Dir: n.dir, Contents: n.contents, Owner: n.owner, Instance: n.instance,
			ContentGen: n.contentGen, LockGen: n.lockGen,
			CreateIndex: n.createIndex, ModifyIndex: n.modifyIndex,
		})
	}
	for _, id := range sortedKeys(s.sessions) {
		sess := s.sessions[id]
		ss := snapSession{
			ID: id, TTLMs: sess.ttlMs, LockDelayMs: sess.lockDelayMs, Label: sess.label, Host: sess.host,
			PID: sess.pid, Principal: sess.principal, CreatedIndex: sess.createdIndex,
		}
		for _, rid := range sess.reqs.order {
			r := sess.reqs.m[rid]
			sr := snapRequest{ID: r.id, Kind: r.kind, Path: r.path, WaitID: r.waitID, Done: r.done, Grant: r.grant, Released: r.released}
			var e *Error
			if errors.As(r.err, &e) {
				sr.ErrCode, sr.ErrMsg, sr.RetryAfterMs = Code(e), e.Msg, e.RetryAfterMs
			}
			ss.Requests = append(ss.Requests, sr)
		}
		img.Sessions = append(img.Sessions, ss)
	}
	for _, id := range s.ended.order {
		img.Ended = append(img.Ended, snapEnded{ID: id, Expired: s.ended.m[id]})
	}
	for _, p := range sortedKeys(s.locks) {
		l := s.locks[p]
		sl := snapLock{Path: p, Gen: l.gen, DelayUntil: l.delayUntil, DelayBlocksShared: l.delayBlocksShared}
		for _, h := range l.holders {
			sl.Holders = append(sl.Holders, snapHolder{Session: h.session, Mode: h.mode, Generation: h.generation, SinceIndex: h.sinceIndex})
		}
		for _, w := range l.waiters {
			sl.Waiters = append(sl.Waiters, snapWaiter{
				ID: w.id, Session: w.session, Mode: w.mode, SinceMs: w.sinceMs, SinceIndex: w.sinceIndex,
				Deadline: w.deadline, Contents: w.contents, RequestIDs: w.requestIDs,
			})
		}
		img.Locks = append(img.Locks, sl)
	}
	for _, p := range sortedKeys(s.acls) {
		e := s.acls[p]
		sa := snapACL{Prefix: p, Changed: e.changed}
		for _, who := range sortedKeys(e.rules) {
			sa.Rules = append(sa.Rules, snapACLRule{Principal: who, Perms: e.rules[who].Strings()})
		}
		img.ACLs = append(img.ACLs, sa)
	}
	return img
}

// Restore replaces the whole state with a snapshot image. The image is
// checked for consistency first; on any error the machine is unchanged.
// After Restore the event history is empty and starts at the snapshot's
// index (EventsSince of an older index is ErrCompacted), and waits that
// finished before it are unknown to AwaitAcquire.
func (m *Machine) Restore(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var img snapImage
	if err := dec.Decode(&img); err != nil {
		return fmt.Errorf("decoding snapshot: %w", err)
	}
	if dec.More() {
		return errors.New("decoding snapshot: trailing data")
	}
	st, err := fromImage(m.cell, &img)
	if err != nil {
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
	m.events.reset(st.applied)
	clear(m.outcomes)
	m.outOrder = nil
	m.notify()
	return nil
}

func fromImage(cell string, img *snapImage) (*state, error) {
	if img.Version != snapshotVersion {
		return nil, fmt.Errorf("snapshot version %d, want %d", img.Version, snapshotVersion)
	}
	if img.Cell != cell {
		return nil, fmt.Errorf("snapshot of cell %q, not %q", img.Cell, cell)
	}
	if img.NowMs < 0 {
		return nil, fmt.Errorf("negative clock %d", img.NowMs)
	}
	if err := validText("leader", img.Leader, MaxLeaderBytes); err != nil {
		return nil, err
	}
	s := newState(cell)
	s.applied, s.now, s.instances, s.lockGens, s.leader = img.Applied, img.NowMs, img.Instances, img.LockGens, img.Leader

	prev := ""
	for i, ss := range img.Sessions {
		if err := validSessionID(ss.ID); err != nil {
			return nil, err
		}
		if i > 0 && ss.ID <= prev {
			return nil, fmt.Errorf("sessions out of order at %s", ss.ID)
		}
		prev = ss.ID
		if ss.TTLMs < MinTTLMs || ss.TTLMs > MaxTTLMs || ss.LockDelayMs < MinLockDelayMs || ss.LockDelayMs > MaxLockDelayMs ||
			ss.PID < 0 || ss.PID > MaxPID || ss.CreatedIndex > img.Applied {
			return nil, fmt.Errorf("session %s out of bounds", ss.ID)
		}
		if validText("label", ss.Label, MaxLabelBytes) != nil || validText("host", ss.Host, MaxHostBytes) != nil {
			return nil, fmt.Errorf("session %s: bad label or host", ss.ID)
		}
		sess := newSession(ss.ID)
		if ss.Principal != "" {
			if err := ValidatePrincipal(ss.Principal, false); err != nil {
				return nil, fmt.Errorf("session %s: %w", ss.ID, err)
			}
		}
		sess.ttlMs, sess.lockDelayMs, sess.label, sess.host, sess.pid, sess.createdIndex =
			ss.TTLMs, ss.LockDelayMs, ss.Label, ss.Host, ss.PID, ss.CreatedIndex
		sess.principal = ss.Principal
		if len(ss.Requests) > RequestIDsPerSession {
			return nil, fmt.Errorf("session %s: %d request ids", ss.ID, len(ss.Requests))
		}
		for _, sr := range ss.Requests {
			if err := validRequestID(sr.ID); err != nil || sr.ID == "" || sess.reqs.m[sr.ID] != nil {
				return nil, fmt.Errorf("session %s: bad request id %q", ss.ID, sr.ID)
			}
			if sr.Kind != KindAcquire && sr.Kind != KindRelease {
				return nil, fmt.Errorf("session %s: request %q of kind %v", ss.ID, sr.ID, sr.Kind)
			}
			r := &requestRecord{id: sr.ID, kind: sr.Kind, path: sr.Path, waitID: sr.WaitID, done: sr.Done, grant: sr.Grant, released: sr.Released}
			if sr.ErrCode != "" {
				sentinel := sentinelForCode(sr.ErrCode)
				if sentinel == nil {
					return nil, fmt.Errorf("session %s: request %q: unknown error code %q", ss.ID, sr.ID, sr.ErrCode)
				}
				r.err = &Error{Err: sentinel, Msg: sr.ErrMsg, RetryAfterMs: sr.RetryAfterMs}
			}
			if !r.done && (r.waitID == 0 || r.grant != nil || r.err != nil || r.released) {
				return nil, fmt.Errorf("session %s: request %q: inconsistent", ss.ID, sr.ID)
			}
			sess.reqs.add(r)
		}
		s.sessions[ss.ID] = sess
	}

	if len(img.Ended) > MaxEndedSessions {
		return nil, fmt.Errorf("%d ended sessions", len(img.Ended))
	}
	for _, e := range img.Ended {
		if _, dup := s.ended.m[e.ID]; dup || s.sessions[e.ID] != nil || validSessionID(e.ID) != nil {
			return nil, fmt.Errorf("bad ended session %q", e.ID)
		}
		s.ended.add(e.ID, e.Expired)
	}

	if len(img.Nodes) == 0 || img.Nodes[0].Path != s.root || !img.Nodes[0].Dir {
		return nil, fmt.Errorf("no root directory %s", s.root)
	}
	for i, sn := range img.Nodes {
		if i > 0 {
			if sn.Path <= img.Nodes[i-1].Path {
				return nil, fmt.Errorf("nodes out of order at %s", sn.Path)
			}
			if err := validNodePath(cell, sn.Path); err != nil {
				return nil, err
			}
			if p := s.nodes[parentOf(sn.Path)]; p == nil || !p.dir {
				return nil, fmt.Errorf("node %s has no parent directory", sn.Path)
			}
		}
		if len(sn.Contents) > MaxContentsBytes || sn.Dir && len(sn.Contents) > 0 || sn.ContentGen == 0 ||
			sn.Instance > img.Instances || sn.LockGen > img.LockGens || sn.CreateIndex > img.Applied ||
			sn.ModifyIndex > img.Applied || sn.ModifyIndex < sn.CreateIndex {
			return nil, fmt.Errorf("node %s out of bounds", sn.Path)
		}
		n := &node{
			path: sn.Path, dir: sn.Dir, contents: nilIfEmpty(sn.Contents), owner: sn.Owner, instance: sn.Instance,
			contentGen: sn.ContentGen, lockGen: sn.LockGen,
			createIndex: sn.CreateIndex, modifyIndex: sn.ModifyIndex,
		}
		if n.dir {
			n.children = map[string]struct{}{}
		}
		if n.owner != "" {
			sess := s.sessions[n.owner]
			if sess == nil || n.dir {
				return nil, fmt.Errorf("ephemeral node %s of no live session", n.path)
			}
			sess.ephemerals[n.path] = struct{}{}
		}
		if i > 0 {
			s.nodes[parentOf(n.path)].children[baseOf(n.path)] = struct{}{}
		}
		s.nodes[n.path] = n
	}

	for i, sl := range img.Locks {
		if err := s.restoreLock(i, img, &sl); err != nil {
			return nil, err
		}
	}
	for _, sess := range s.sessions {
		for _, rid := range sess.reqs.order {
			r := sess.reqs.m[rid]
			if r.done {
				continue
			}
			w := s.waiters[r.waitID]
			if w == nil || w.session != sess.id || w.path != r.path {
				return nil, fmt.Errorf("session %s: request %q waits for no wait", sess.id, rid)
			}
		}
	}
	if err := s.restoreACLs(img); err != nil {
		return nil, err
	}
	s.rebuildDeadlines()
	return s, nil
}

func (s *state) restoreACLs(img *snapImage) error {
	for i, sa := range img.ACLs {
		if err := ValidatePath(s.cell, sa.Prefix); err != nil {
			return fmt.Errorf("acl: %w", err)
		}
		if i > 0 && sa.Prefix <= img.ACLs[i-1].Prefix {
			return fmt.Errorf("acls out of order at %s", sa.Prefix)
		}
		if sa.Changed == 0 || sa.Changed > img.Applied {
			return fmt.Errorf("acl %s: changed index %d out of bounds", sa.Prefix, sa.Changed)
		}
		e := &aclEntry{rules: map[string]Perm{}, changed: sa.Changed}
		for j, r := range sa.Rules {
			if err := ValidatePrincipal(r.Principal, true); err != nil {
				return fmt.Errorf("acl %s: %w", sa.Prefix, err)
			}
			if j > 0 && r.Principal <= sa.Rules[j-1].Principal {
				return fmt.Errorf("acl %s: rules out of order at %s", sa.Prefix, r.Principal)
			}
			perms, err := ParsePerms(r.Perms)
			if err != nil {
				return fmt.Errorf("acl %s: %w", sa.Prefix, err)
			}
			e.rules[r.Principal] = perms
		}
		s.acls[sa.Prefix] = e
	}
	return nil
}

func (s *state) restoreLock(i int, img *snapImage, sl *snapLock) error {
	if err := validNodePath(s.cell, sl.Path); err != nil {
		return err
	}
	if i > 0 && sl.Path <= img.Locks[i-1].Path {
		return fmt.Errorf("locks out of order at %s", sl.Path)
	}
	if len(sl.Holders) == 0 && len(sl.Waiters) == 0 && sl.DelayUntil == 0 {
		return fmt.Errorf("lock %s is empty", sl.Path)
	}
	if sl.Gen > img.LockGens || sl.DelayUntil != 0 && sl.DelayUntil <= img.NowMs {
		return fmt.Errorf("lock %s out of bounds", sl.Path)
	}
	if n := s.nodes[sl.Path]; n != nil && n.lockGen != sl.Gen {
		return fmt.Errorf("lock %s disagrees with its node", sl.Path)
	}
	l := &lockState{path: sl.Path, gen: sl.Gen, delayUntil: sl.DelayUntil, delayBlocksShared: sl.DelayBlocksShared}
	for _, sh := range sl.Holders {
		sess := s.sessions[sh.Session]
		if sess == nil || sess.held[sl.Path] != "" {
			return fmt.Errorf("lock %s: bad holder %s", sl.Path, sh.Session)
		}
		if sh.Mode != ModeExclusive && sh.Mode != ModeShared || sh.Generation != sl.Gen ||
			len(l.holders) > 0 && (sh.Mode == ModeExclusive || l.holders[0].mode == ModeExclusive) {
			return fmt.Errorf("lock %s: bad holder %s", sl.Path, sh.Session)
		}
		l.holders = append(l.holders, holder{session: sh.Session, mode: sh.Mode, generation: sh.Generation, sinceIndex: sh.SinceIndex})
		sess.held[sl.Path] = sh.Mode
	}
	for _, sw := range sl.Waiters {
		sess := s.sessions[sw.Session]
		if sess == nil || sess.held[sl.Path] != "" || sess.waits[sl.Path] != 0 || s.waiters[sw.ID] != nil ||
			sw.ID == 0 || sw.ID > img.Applied || sw.Mode != ModeExclusive && sw.Mode != ModeShared ||
			sw.Deadline <= img.NowMs || sw.Contents != nil && len(*sw.Contents) > MaxContentsBytes {
			return fmt.Errorf("lock %s: bad waiter %d", sl.Path, sw.ID)
		}
		w := &waiter{
			id: sw.ID, path: sl.Path, session: sw.Session, mode: sw.Mode, sinceMs: sw.SinceMs,
			sinceIndex: sw.SinceIndex, deadline: sw.Deadline, contents: sw.Contents, requestIDs: sw.RequestIDs,
		}
		l.waiters = append(l.waiters, w)
		s.waiters[w.id] = w
		sess.waits[sl.Path] = w.id
	}
	s.locks[sl.Path] = l
	return nil
}

// nilIfEmpty keeps empty contents in one form (nil), so equal states encode
// equally.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
