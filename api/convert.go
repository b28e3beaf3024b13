package api

import (
	"encoding/base64"
	"unicode/utf8"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
	"github.com/lockd/lockd/session"
)

// Mapping of lockservice and session types to wire types. Slices are never
// nil, so lists encode as [] rather than null.

func textOf(b []byte) *string {
	if !utf8.Valid(b) {
		return nil
	}
	s := string(b)
	return &s
}

func strs(in []string) []string {
	if in == nil {
		return []string{}
	}
	return in
}

func wireSession(si session.SessionInfo) wire.Session {
	return wire.Session{
		ID: si.ID, TTLMs: si.TTLMs, LockDelayMs: si.LockDelayMs, LeaseRemainingMs: si.LeaseRemainingMs,
		Label: si.Label, Host: si.Host, PID: si.PID, Principal: si.Principal, CreatedIndex: si.CreatedIndex,
		Locks: strs(si.Locks), Ephemerals: strs(si.Ephemerals),
	}
}

func wireNode(n lockservice.Node, children bool) wire.Node {
	w := wire.Node{
		Path: n.Path, Kind: n.Kind, Contents: textOf(n.Contents),
		ContentsB64: base64.StdEncoding.EncodeToString(n.Contents), EphemeralOwner: n.EphemeralOwner,
		Instance: n.Instance, ContentGeneration: n.ContentGeneration, LockGeneration: n.LockGeneration,
		ACLGeneration: n.ACLGeneration, CreateIndex: n.CreateIndex, ModifyIndex: n.ModifyIndex,
	}
	if children && n.Kind == wire.KindDir {
		w.Children = strs(n.Children)
	}
	return w
}

func wireGrant(g lockservice.Grant) wire.Grant {
	return wire.Grant{Path: g.Path, Mode: string(g.Mode), Generation: g.Generation, Sequencer: g.Sequencer, Session: g.Session}
}

func wireLock(l lockservice.LockState) wire.LockState {
	w := wire.LockState{
		Path: l.Path, Mode: string(l.Mode), Generation: l.Generation,
		Holders: make([]wire.Holder, 0, len(l.Holders)), Waiters: make([]wire.Waiter, 0, len(l.Waiters)),
		LockDelayRemainingMs: l.LockDelayRemainingMs,
	}
	for _, h := range l.Holders {
		w.Holders = append(w.Holders, wire.Holder{
			Session: h.Session, Label: h.Label, Host: h.Host, PID: h.PID, SinceIndex: h.SinceIndex,
			Mode: string(h.Mode), Generation: h.Generation,
		})
	}
	for _, q := range l.Waiters {
		w.Waiters = append(w.Waiters, wire.Waiter{Session: q.Session, Label: q.Label, Mode: string(q.Mode), WaitingMs: q.WaitingMs})
	}
	return w
}

func wireEvent(e lockservice.Event) wire.Event {
	return wire.Event{
		Index: e.Index, Type: string(e.Type), Path: e.Path, Session: e.Session,
		Generation: e.Generation, Child: e.Child, Leader: e.Leader,
	}
}

func wireEvents(evs []lockservice.Event) []wire.Event {
	out := make([]wire.Event, len(evs))
	for i, e := range evs {
		out[i] = wireEvent(e)
	}
	return out
}

func wireElection(l *lockservice.ElectionLeader) *wire.ElectionLeader {
	if l == nil {
		return nil
	}
	return &wire.ElectionLeader{
		Session: l.Session, Value: textOf(l.Value), ValueB64: base64.StdEncoding.EncodeToString(l.Value),
		Generation: l.Generation, Sequencer: l.Sequencer, Label: l.Label, Host: l.Host, PID: l.PID,
		SinceIndex: l.SinceIndex,
	}
}
