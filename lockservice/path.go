package lockservice

import (
	"fmt"
	"strings"
)

// Path bounds (API.md, "Conventions").
const (
	// MaxPathBytes bounds a whole node path.
	MaxPathBytes = 1024
	// MaxSegmentBytes bounds one path segment (and the cell name).
	MaxSegmentBytes = 255
	// PathPrefix starts every node path; the cell name follows it.
	PathPrefix = "/ls/"
)

// ValidatePath checks that path is a node path of cell: "/ls/<cell>" (the
// root directory of the cell) or "/ls/<cell>/seg/...", every segment made of
// [A-Za-z0-9._-], none empty, "." or "..", at most MaxSegmentBytes per
// segment and MaxPathBytes in all. Errors wrap ErrInvalidArgument.
func ValidatePath(cell, path string) error {
	if err := validSegment(cell); err != nil {
		return errorf(ErrInvalidArgument, "cell name: %v", err)
	}
	if len(path) > MaxPathBytes {
		return errorf(ErrInvalidArgument, "path is %d bytes, over %d", len(path), MaxPathBytes)
	}
	root := PathPrefix + cell
	if !strings.HasPrefix(path, root) {
		return errorf(ErrInvalidArgument, "path %q does not start with %q", path, root)
	}
	rest := path[len(root):]
	if rest == "" {
		return nil
	}
	if rest[0] != '/' {
		return errorf(ErrInvalidArgument, "path %q does not start with %q", path, root+"/")
	}
	rest = rest[1:]
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if err := validSegment(seg); err != nil {
			return errorf(ErrInvalidArgument, "path %q: %v", path, err)
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// validSegment checks one path segment.
func validSegment(seg string) error {
	switch {
	case seg == "":
		return fmt.Errorf("empty segment")
	case seg == "." || seg == "..":
		return fmt.Errorf("segment %q not allowed", seg)
	case len(seg) > MaxSegmentBytes:
		return fmt.Errorf("segment of %d bytes, over %d", len(seg), MaxSegmentBytes)
	}
	for i := 0; i < len(seg); i++ {
		if !segmentByte(seg[i]) {
			return fmt.Errorf("segment %q has byte %q outside [A-Za-z0-9._-]", seg, seg[i])
		}
	}
	return nil
}

func segmentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// cellOf returns the cell named by an absolute node path, or "".
func cellOf(path string) string {
	if !strings.HasPrefix(path, PathPrefix) {
		return ""
	}
	cell, _, _ := strings.Cut(path[len(PathPrefix):], "/")
	return cell
}

// parentOf returns the parent path of a valid non-root path.
func parentOf(path string) string {
	return path[:strings.LastIndexByte(path, '/')]
}

// baseOf returns the last segment of a valid path.
func baseOf(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// ancestors returns the proper ancestors of a valid path strictly below root,
// top-down, excluding root itself. For root/a/b/c it returns root/a, root/a/b.
func ancestors(root, path string) []string {
	var out []string
	for i := len(root) + 1; i < len(path); i++ {
		if path[i] == '/' {
			out = append(out, path[:i])
		}
	}
	return out
}

// under reports whether path is p or lies below it.
func under(path, p string) bool {
	return path == p || len(path) > len(p) && path[len(p)] == '/' && strings.HasPrefix(path, p)
}
