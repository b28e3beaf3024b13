package lockd

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"
)

// Node kinds.
const (
	KindFile = "file"
	KindDir  = "dir"
)

// Node is a file or directory of the cell's namespace.
type Node struct {
	Path              string
	Kind              string // KindFile or KindDir
	Contents          []byte
	EphemeralOwner    string // the owning session of an ephemeral file, else ""
	Instance          uint64 // new each time a node is created at this path
	ContentGeneration uint64 // 1 when a file is created, +1 per write
	LockGeneration    uint64
	ACLGeneration     uint64
	CreateIndex       uint64
	ModifyIndex       uint64
	Children          []string // sorted names, with WithChildren on a directory
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.Kind == KindDir }

func nodeFrom(r wireNodeResp) (*Node, error) {
	w := r.Node
	n := &Node{Path: w.Path, Kind: w.Kind, EphemeralOwner: w.EphemeralOwner, Instance: w.Instance,
		ContentGeneration: w.ContentGeneration, LockGeneration: w.LockGeneration, ACLGeneration: w.ACLGeneration,
		CreateIndex: w.CreateIndex, ModifyIndex: w.ModifyIndex, Children: w.Children}
	if n.Children == nil {
		n.Children = r.Children
	}
	switch {
	case w.Contents != nil:
		n.Contents = []byte(*w.Contents)
	case w.ContentsB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*w.ContentsB64)
		if err != nil {
			return nil, fmt.Errorf("lockd: node %s: contents_b64: %w", w.Path, err)
		}
		n.Contents = b
	}
	return n, nil
}

// textOrB64 returns contents as text when they are valid UTF-8, else as
// standard base64 (JSON strings cannot carry other bytes).
func textOrB64(b []byte) (text, b64 *string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

// Get reads the node at path (GET /v1/nodes/{path}): linearizable, unless
// Stale. A missing node is ErrNotFound.
func (c *Client) Get(ctx context.Context, path string, opts ...GetOption) (*Node, error) {
	var cfg getConfig
	for _, o := range opts {
		o(&cfg)
	}
	u, err := nodeURL("/v1/nodes", path)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if cfg.stale {
		q.Set("stale", "true")
	}
	if cfg.children {
		q.Set("children", "true")
	}
	var w wireNodeResp
	if _, err := c.do(ctx, call{method: http.MethodGet, path: u, query: q, retry: retryUnknown}, &w); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return nodeFrom(w)
}

// Children returns the sorted names of the children of the directory at
// path.
func (c *Client) Children(ctx context.Context, path string) ([]string, error) {
	n, err := c.Get(ctx, path, WithChildren())
	if err != nil {
		return nil, err
	}
	return n.Children, nil
}

// Put writes contents into the file at path, creating it (and missing
// parent directories) if needed (PUT /v1/nodes/{path}), and returns the node
// after the write. See CreateOnly, IfContentGeneration, Ephemeral and AsDir.
//
// Put is retried only on failures that prove it was not applied. After an
// unknown outcome it returns an error matching ErrUnavailable: the write may
// have happened; read the node, or write again with IfContentGeneration.
// With Ephemeral(s), a session that has ended fails locally with its error.
func (c *Client) Put(ctx context.Context, path string, contents []byte, opts ...PutOption) (*Node, error) {
	var cfg putConfig
	for _, o := range opts {
		o(&cfg)
	}
	u, err := nodeURL("/v1/nodes", path)
	if err != nil {
		return nil, err
	}
	req := wirePut{Dir: cfg.dir, CreateOnly: cfg.createOnly, IfContentGeneration: cfg.ifGen}
	if !cfg.dir {
		req.Contents, req.ContentsB64 = textOrB64(contents)
	}
	if cfg.ephemeral != nil {
		if err := cfg.ephemeral.check(); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		req.Ephemeral, req.Session = true, cfg.ephemeral.ID()
	}
	var w wireNodeResp
	if _, err := c.do(ctx, call{method: http.MethodPut, path: u, body: req, retry: retryUnapplied}, &w); err != nil {
		if cfg.ephemeral != nil {
			cfg.ephemeral.observe(err)
		}
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return nodeFrom(w)
}

// Delete deletes the node at path (DELETE /v1/nodes/{path}). A non-empty
// directory, or a node with lock holders or waiters, is
// ErrPreconditionFailed; with IfInstance, so is another instance. Like Put,
// it is not retried after an unknown outcome (then a repeat could answer
// ErrNotFound for its own success).
func (c *Client) Delete(ctx context.Context, path string, opts ...DeleteOption) error {
	var cfg deleteConfig
	for _, o := range opts {
		o(&cfg)
	}
	u, err := nodeURL("/v1/nodes", path)
	if err != nil {
		return err
	}
	q := url.Values{}
	if cfg.ifInstance != nil {
		q.Set("if_instance", strconv.FormatUint(*cfg.ifInstance, 10))
	}
	if _, err := c.do(ctx, call{method: http.MethodDelete, path: u, query: q, retry: retryUnapplied}, nil); err != nil {
		return fmt.Errorf("deleting %s: %w", path, err)
	}
	return nil
}
