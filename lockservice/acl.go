package lockservice

import (
	"fmt"
	"sort"
	"strings"
)

// ACLs (see doc.go, "Access control"). Rules live in the replicated state,
// as Chubby keeps its ACLs in files: KindSetACL and KindDeleteACL go
// through the log, so every replica agrees on them at every index. The
// machine stores and resolves rules; it does not enforce them (the API
// layer authorizes each request before it proposes or reads anything).

// Perm is a set of permissions.
type Perm uint8

// Permissions. PermAdmin on a prefix implies every other permission there
// and lets the holder manage the rules at and below that prefix.
const (
	PermRead  Perm = 1 << iota // read nodes, watch, read lock and election state, check sequencers
	PermWrite                  // create, write and delete nodes
	PermLock                   // acquire and release locks, create ephemeral nodes
	PermAdmin                  // everything, and manage ACLs at and below the prefix
	permAll   = PermRead | PermWrite | PermLock | PermAdmin
)

// MaxPrincipalBytes bounds a principal name.
const MaxPrincipalBytes = 64

// Everyone is the principal of a rule that applies to every authenticated
// principal that has no rule of its own at the same prefix.
const Everyone = "*"

var permNames = []struct {
	p    Perm
	name string
}{{PermRead, "read"}, {PermWrite, "write"}, {PermLock, "lock"}, {PermAdmin, "admin"}}

// Has reports whether p grants every permission of q. Admin grants all.
func (p Perm) Has(q Perm) bool {
	if p&PermAdmin != 0 {
		return true
	}
	return p&q == q
}

// Strings returns the names of the permissions in p, in a fixed order
// (read, write, lock, admin); never nil.
func (p Perm) Strings() []string {
	out := []string{}
	for _, n := range permNames {
		if p&n.p != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// String is the comma-separated names, or "none".
func (p Perm) String() string {
	if p == 0 {
		return "none"
	}
	return strings.Join(p.Strings(), ",")
}

// ParsePerms parses permission names ("read", "write", "lock", "admin").
// Repeats are an error, as is any other name. An empty list is no
// permission (a rule that denies).
func ParsePerms(names []string) (Perm, error) {
	var p Perm
	for _, s := range names {
		var bit Perm
		for _, n := range permNames {
			if n.name == s {
				bit = n.p
			}
		}
		if bit == 0 {
			return 0, errorf(ErrInvalidArgument, "unknown permission %q (want read, write, lock or admin)", truncate(s, 32))
		}
		if p&bit != 0 {
			return 0, errorf(ErrInvalidArgument, "permission %q given twice", s)
		}
		p |= bit
	}
	return p, nil
}

// ValidatePrincipal checks a principal name: 1..MaxPrincipalBytes bytes of
// [A-Za-z0-9._-]. With wildcard, Everyone ("*") is accepted too.
func ValidatePrincipal(name string, wildcard bool) error {
	if wildcard && name == Everyone {
		return nil
	}
	if name == "" {
		return errorf(ErrInvalidArgument, "principal missing")
	}
	if len(name) > MaxPrincipalBytes {
		return errorf(ErrInvalidArgument, "principal over %d bytes", MaxPrincipalBytes)
	}
	for i := 0; i < len(name); i++ {
		if !segmentByte(name[i]) {
			return errorf(ErrInvalidArgument, "principal %q has byte %q outside [A-Za-z0-9._-]", truncate(name, 64), name[i])
		}
	}
	return nil
}

// ACLRule grants Principal the permissions Perms on Prefix: the node at
// Prefix and everything below it. Index is the log index that last set it
// (0 for a rule from the configuration).
type ACLRule struct {
	Prefix    string
	Principal string
	Perms     Perm
	Index     uint64
}

// aclEntry holds the rules of one prefix. An entry stays after its last
// rule is deleted: its changed index still counts for acl_generation, so
// that never goes back.
type aclEntry struct {
	rules   map[string]Perm // principal -> perms
	changed uint64          // index of the last change at this prefix
}

// setACL applies KindSetACL.
func (s *state) setACL(tx *applyTx, c *Command) Result {
	perms, err := ParsePerms(c.Perms)
	if err != nil {
		return Result{Err: err}
	}
	e := s.acls[c.Path]
	if e == nil {
		e = &aclEntry{rules: map[string]Perm{}}
		s.acls[c.Path] = e
	}
	e.rules[c.Principal] = perms
	e.changed = tx.index
	return Result{}
}

// deleteACL applies KindDeleteACL: ErrNotFound when there is no such rule.
func (s *state) deleteACL(tx *applyTx, c *Command) Result {
	e := s.acls[c.Path]
	if e == nil {
		return Result{Err: errorf(ErrNotFound, "no ACL rule for %s at %s", c.Principal, c.Path)}
	}
	if _, ok := e.rules[c.Principal]; !ok {
		return Result{Err: errorf(ErrNotFound, "no ACL rule for %s at %s", c.Principal, c.Path)}
	}
	delete(e.rules, c.Principal)
	e.changed = tx.index
	return Result{}
}

// aclGeneration is the index of the last ACL change at any prefix of path
// (path itself included): it changes whenever a rule that may govern path
// changes, and never goes back. 0 when no rule ever covered path.
func (s *state) aclGeneration(path string) uint64 {
	if len(s.acls) == 0 {
		return 0
	}
	var gen uint64
	for p := path; ; p = parentOf(p) {
		if e := s.acls[p]; e != nil {
			gen = max(gen, e.changed)
		}
		if len(p) <= len(s.root) {
			return gen
		}
	}
}

// StaticACL is a fixed set of rules (from the configuration) that the
// replicated rules are resolved together with. Build it with NewStaticACL;
// the zero value has no rules.
type StaticACL struct {
	rules map[string]map[string]Perm // prefix -> principal -> perms
}

// NewStaticACL checks rules against cell and indexes them. A prefix is a
// node path of the cell (the root included); a trailing "/" is dropped.
// Two rules for one prefix and principal are an error.
func NewStaticACL(cell string, rules []ACLRule) (StaticACL, error) {
	st := StaticACL{rules: map[string]map[string]Perm{}}
	for i, r := range rules {
		prefix, err := NormalizePrefix(cell, r.Prefix)
		if err != nil {
			return StaticACL{}, fmt.Errorf("acl rule %d: %w", i, err)
		}
		if err := ValidatePrincipal(r.Principal, true); err != nil {
			return StaticACL{}, fmt.Errorf("acl rule %d: %w", i, err)
		}
		if r.Perms&^permAll != 0 {
			return StaticACL{}, fmt.Errorf("acl rule %d: unknown permission bits %#x", i, uint8(r.Perms))
		}
		m := st.rules[prefix]
		if m == nil {
			m = map[string]Perm{}
			st.rules[prefix] = m
		}
		if _, dup := m[r.Principal]; dup {
			return StaticACL{}, fmt.Errorf("acl rule %d: a second rule for %s at %s", i, r.Principal, prefix)
		}
		m[r.Principal] = r.Perms
	}
	return st, nil
}

// Rules returns the static rules sorted by prefix, then principal.
func (a StaticACL) Rules() []ACLRule {
	var out []ACLRule
	for prefix, m := range a.rules {
		for who, p := range m {
			out = append(out, ACLRule{Prefix: prefix, Principal: who, Perms: p})
		}
	}
	sortRules(out)
	return out
}

// NormalizePrefix validates an ACL prefix of cell and drops one trailing
// "/" ("/ls/c/teamA/" is "/ls/c/teamA").
func NormalizePrefix(cell, prefix string) (string, error) {
	if len(prefix) > 1 && strings.HasSuffix(prefix, "/") {
		prefix = prefix[:len(prefix)-1]
	}
	if err := ValidatePath(cell, prefix); err != nil {
		return "", err
	}
	return prefix, nil
}

// Permissions resolves what principal may do at path: the rule for it (or,
// failing that, for Everyone) at the longest prefix of path that has one,
// the replicated rules taking precedence over static ones at the same
// prefix. No rule at all is no permission. Global administrators are the
// caller's business (they bypass ACLs).
func (m *Machine) Permissions(principal, path string, static StaticACL) Perm {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.permissions(principal, path, static)
}

func (s *state) permissions(principal, path string, static StaticACL) Perm {
	if len(s.acls) == 0 && len(static.rules) == 0 {
		return 0
	}
	for p := path; ; p = parentOf(p) {
		if perm, ok := s.ruleAt(p, principal, static); ok {
			return perm
		}
		if perm, ok := s.ruleAt(p, Everyone, static); ok {
			return perm
		}
		if len(p) <= len(s.root) {
			return 0
		}
	}
}

func (s *state) ruleAt(prefix, principal string, static StaticACL) (Perm, bool) {
	if e := s.acls[prefix]; e != nil {
		if perm, ok := e.rules[principal]; ok {
			return perm, true
		}
	}
	perm, ok := static.rules[prefix][principal]
	return perm, ok
}

// ACLRules returns the replicated rules at under and below it (every rule
// when under is ""), sorted by prefix, then principal.
func (m *Machine) ACLRules(under string) []ACLRule {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []ACLRule
	for prefix, e := range m.st.acls {
		if under != "" && !isBelow(prefix, under) {
			continue
		}
		for who, p := range e.rules {
			out = append(out, ACLRule{Prefix: prefix, Principal: who, Perms: p, Index: e.changed})
		}
	}
	sortRules(out)
	return out
}

// HasACLRule reports whether a replicated rule for principal exists at
// prefix.
func (m *Machine) HasACLRule(prefix, principal string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e := m.st.acls[prefix]
	if e == nil {
		return false
	}
	_, ok := e.rules[principal]
	return ok
}

// ACLGeneration returns the acl_generation a node at path has (or would
// have): the index of the last ACL change at any prefix of path.
func (m *Machine) ACLGeneration(path string) uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.aclGeneration(path)
}

// isBelow is under (path is p or below it) for a caller whose parameter
// shadows the function's name.
func isBelow(path, p string) bool { return under(path, p) }

func sortRules(r []ACLRule) {
	sort.Slice(r, func(i, j int) bool {
		if r[i].Prefix != r[j].Prefix {
			return r[i].Prefix < r[j].Prefix
		}
		return r[i].Principal < r[j].Principal
	})
}

// Usage is what a principal holds in the cell: live sessions it created and
// queued waits of those sessions.
type Usage struct {
	Sessions int
	Waiters  int
}

// UsageOf counts the live sessions principal created and their queued
// waits (for quotas; it walks every session).
func (m *Machine) UsageOf(principal string) Usage {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var u Usage
	for _, sess := range m.st.sessions {
		if sess.principal == principal {
			u.Sessions++
			u.Waiters += len(sess.waits)
		}
	}
	return u
}
