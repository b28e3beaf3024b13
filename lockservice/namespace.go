package lockservice

import (
	"bytes"
	"sort"
)

// state is everything Apply depends on, and so everything a snapshot holds
// (the deadline heap and the waiter index are derived from the locks and
// rebuilt on Restore).
type state struct {
	cell      string
	root      string
	applied   uint64
	now       int64
	instances uint64 // last instance number given to a node
	lockGens  uint64 // last lock generation given to an exclusive hold
	leader    string
	nodes     map[string]*node
	sessions  map[string]*session
	ended     endedLog
	locks     map[string]*lockState
	acls      map[string]*aclEntry // ACL rules by prefix (acl.go)

	// Derived.
	waiters   map[uint64]*waiter
	deadlines deadlineHeap
}

func newState(cell string) *state {
	root := PathPrefix + cell
	return &state{
		cell:     cell,
		root:     root,
		nodes:    map[string]*node{root: {path: root, dir: true, contentGen: 1, children: map[string]struct{}{}}},
		sessions: map[string]*session{},
		ended:    endedLog{m: map[string]bool{}},
		locks:    map[string]*lockState{},
		acls:     map[string]*aclEntry{},
		waiters:  map[uint64]*waiter{},
	}
}

// node is a file or a directory of the namespace.
type node struct {
	path        string
	dir         bool
	contents    []byte
	owner       string // session owning an ephemeral node; "" if permanent
	instance    uint64
	contentGen  uint64
	lockGen     uint64
	createIndex uint64
	modifyIndex uint64
	children    map[string]struct{} // names, for directories
}

// Node is the public view of a node (API.md "Node"; the API layer adds the
// text form of the contents).
type Node struct {
	Path string `json:"path"`
	// Kind is "file" or "dir".
	Kind     string `json:"kind"`
	Contents []byte `json:"contents_b64"`
	// EphemeralOwner is the owning session of an ephemeral node, else "".
	EphemeralOwner string `json:"ephemeral_owner"`
	// Instance is new (from a cell-wide counter) every time the path is
	// created; a deleted and re-created node has another instance.
	Instance uint64 `json:"instance"`
	// ContentGeneration is 1 at creation and rises by 1 with every write of
	// the contents (directories stay at 1).
	ContentGeneration uint64 `json:"content_generation"`
	// LockGeneration is the generation of the last exclusive hold of the
	// lock; a new node starts at the cell-wide generation counter, so the
	// lock generation of a path never goes down, even across re-creation.
	LockGeneration uint64 `json:"lock_generation"`
	// ACLGeneration is the log index of the last change of an ACL rule at
	// any prefix of the path (0 if none ever was): it changes whenever the
	// rules that may govern the node change, and never goes back.
	ACLGeneration uint64 `json:"acl_generation"`
	// CreateIndex is the index that created the node; ModifyIndex the last
	// index that wrote its contents (or created it).
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
	// Children are the names of a directory's children, sorted.
	Children []string `json:"children,omitempty"`
}

// nodeView is the public view of n, with its ACL generation.
func (s *state) nodeView(n *node, withChildren bool) Node {
	v := n.view(withChildren)
	v.ACLGeneration = s.aclGeneration(n.path)
	return v
}

func (n *node) view(withChildren bool) Node {
	v := Node{
		Path: n.path, Kind: "file", Contents: bytes.Clone(n.contents), EphemeralOwner: n.owner,
		Instance: n.instance, ContentGeneration: n.contentGen, LockGeneration: n.lockGen,
		CreateIndex: n.createIndex, ModifyIndex: n.modifyIndex,
	}
	if v.Contents == nil {
		v.Contents = []byte{}
	}
	if n.dir {
		v.Kind = "dir"
		if withChildren {
			v.Children = make([]string, 0, len(n.children))
			for c := range n.children {
				v.Children = append(v.Children, c)
			}
			sort.Strings(v.Children)
		}
	}
	return v
}

// GetNode returns the node at path with its children (sorted) when it is a
// directory. ErrInvalidArgument for a bad path, ErrNotFound if absent.
func (m *Machine) GetNode(path string) (Node, error) {
	if err := ValidatePath(m.cell, path); err != nil {
		return Node{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := m.st.nodes[path]
	if n == nil {
		return Node{}, errorf(ErrNotFound, "no node %s", path)
	}
	return m.st.nodeView(n, true), nil
}

// checkCreatable reports whether path can be created (with missing parents):
// every existing ancestor must be a directory.
func (s *state) checkCreatable(path string) error {
	for _, a := range ancestors(s.root, path) {
		n := s.nodes[a]
		if n == nil {
			return nil
		}
		if !n.dir {
			return errorf(ErrPreconditionFailed, "%s is a file, not a directory", a)
		}
	}
	return nil
}

// createNode creates path, and its missing ancestors as permanent
// directories. checkCreatable(path) must have passed and path must be absent.
func (s *state) createNode(tx *applyTx, path string, dir bool, contents []byte, owner string) *node {
	for _, a := range ancestors(s.root, path) {
		if s.nodes[a] == nil {
			s.createOne(tx, a, true, nil, "")
		}
	}
	return s.createOne(tx, path, dir, contents, owner)
}

func (s *state) createOne(tx *applyTx, path string, dir bool, contents []byte, owner string) *node {
	s.instances++
	n := &node{
		path: path, dir: dir, contents: nilIfEmpty(bytes.Clone(contents)), owner: owner,
		instance: s.instances, contentGen: 1, createIndex: tx.index, modifyIndex: tx.index,
	}
	if dir {
		n.children = map[string]struct{}{}
	}
	// The lock generation starts at the cell-wide counter (or the lock's, if
	// the lock outlived an earlier node): never below any generation this
	// path had before.
	n.lockGen = s.lockGens
	if l := s.locks[path]; l != nil {
		n.lockGen = l.gen
	}
	s.nodes[path] = n
	parent := parentOf(path)
	s.nodes[parent].children[baseOf(path)] = struct{}{}
	if owner != "" {
		s.sessions[owner].ephemerals[path] = struct{}{}
	}
	tx.emit(EventNodeCreated, path, owner, n.contentGen)
	tx.emitChild(EventChildAdded, parent, baseOf(path))
	return n
}

// writeContents replaces a file's contents: content generation +1.
func (s *state) writeContents(tx *applyTx, n *node, contents []byte) {
	n.contents = nilIfEmpty(bytes.Clone(contents))
	n.contentGen++
	n.modifyIndex = tx.index
	tx.emit(EventContentsChanged, n.path, "", n.contentGen)
}

// removeNode deletes a node that has no children.
func (s *state) removeNode(tx *applyTx, n *node) {
	delete(s.nodes, n.path)
	parent := parentOf(n.path)
	delete(s.nodes[parent].children, baseOf(n.path))
	if n.owner != "" {
		if sess := s.sessions[n.owner]; sess != nil {
			delete(sess.ephemerals, n.path)
		}
	}
	tx.emit(EventNodeDeleted, n.path, n.owner, n.contentGen)
	tx.emitChild(EventChildRemoved, parent, baseOf(n.path))
}

// putNode applies KindPutNode.
func (s *state) putNode(tx *applyTx, c *Command) Result {
	var contents []byte
	if c.Contents != nil {
		contents = *c.Contents
	}
	if c.Ephemeral {
		if _, err := s.liveSession(c.Session); err != nil {
			return Result{Err: err}
		}
	}
	n := s.nodes[c.Path]
	if n != nil {
		switch {
		case c.CreateOnly:
			return Result{Err: errorf(ErrAlreadyExists, "%s exists", c.Path)}
		case c.Dir && n.dir:
			v := s.nodeView(n, false)
			return Result{Node: &v}
		case c.Dir:
			return Result{Err: errorf(ErrPreconditionFailed, "%s is a file", c.Path)}
		case n.dir:
			return Result{Err: errorf(ErrPreconditionFailed, "%s is a directory", c.Path)}
		case c.IfContentGeneration != nil && *c.IfContentGeneration != n.contentGen:
			return Result{Err: errorf(ErrPreconditionFailed, "%s has content generation %d, not %d", c.Path, n.contentGen, *c.IfContentGeneration)}
		case c.Ephemeral && n.owner != c.Session:
			return Result{Err: errorf(ErrPreconditionFailed, "%s exists and is not an ephemeral node of session %s", c.Path, c.Session)}
		}
		s.writeContents(tx, n, contents)
		v := s.nodeView(n, false)
		return Result{Node: &v}
	}
	if c.IfContentGeneration != nil {
		return Result{Err: errorf(ErrNotFound, "no node %s", c.Path)}
	}
	if err := s.checkCreatable(c.Path); err != nil {
		return Result{Err: err}
	}
	owner := ""
	if c.Ephemeral {
		owner = c.Session
	}
	n = s.createNode(tx, c.Path, c.Dir, contents, owner)
	v := s.nodeView(n, false)
	return Result{Node: &v, Created: true}
}

// deleteNodeCmd applies KindDeleteNode. A node with lock holders or waiters
// cannot be deleted (a lock is lost only by release or session end).
func (s *state) deleteNodeCmd(tx *applyTx, c *Command) Result {
	n := s.nodes[c.Path]
	if n == nil {
		return Result{Err: errorf(ErrNotFound, "no node %s", c.Path)}
	}
	if c.IfInstance != nil && *c.IfInstance != n.instance {
		return Result{Err: errorf(ErrPreconditionFailed, "%s has instance %d, not %d", c.Path, n.instance, *c.IfInstance)}
	}
	if n.dir && len(n.children) > 0 {
		return Result{Err: errorf(ErrPreconditionFailed, "directory %s is not empty", c.Path)}
	}
	if l := s.locks[c.Path]; l != nil && (len(l.holders) > 0 || len(l.waiters) > 0) {
		return Result{Err: errorf(ErrPreconditionFailed, "%s is locked or awaited", c.Path)}
	}
	s.removeNode(tx, n)
	return Result{}
}
