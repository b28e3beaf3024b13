package lockservice

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidatePath(t *testing.T) {
	long := strings.Repeat("a", MaxSegmentBytes)
	tests := []struct {
		path string
		ok   bool
	}{
		{"/ls/test", true},
		{"/ls/test/a", true},
		{"/ls/test/a/b-c_d.e/F9", true},
		{"/ls/test/" + long, true},
		{"/ls/test/" + long + "a", false},
		{"/ls/test/...", true},
		{"/ls/test/.a", true},
		{"/ls/test/", false},
		{"/ls/test/a/", false},
		{"/ls/test//a", false},
		{"/ls/test/./a", false},
		{"/ls/test/a/..", false},
		{"/ls/test/a b", false},
		{"/ls/test/a%2f", false},
		{"/ls/test/é", false},
		{"/ls/tests/a", false},
		{"/ls/tes", false},
		{"/ls/other/a", false},
		{"ls/test/a", false},
		{"/LS/test/a", false},
		{"", false},
		{"/", false},
		{"/ls/test/a\x00", false},
	}
	for _, tt := range tests {
		err := ValidatePath(testCell, tt.path)
		if (err == nil) != tt.ok {
			t.Errorf("ValidatePath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
		}
		if err != nil && Code(err) != "invalid_argument" {
			t.Errorf("ValidatePath(%q) code %q", tt.path, Code(err))
		}
	}
	// Total length bound: 1024 ok, 1025 not.
	base := "/ls/test"
	var b strings.Builder
	b.WriteString(base)
	for b.Len() < MaxPathBytes-200 {
		b.WriteString("/" + strings.Repeat("x", 99))
	}
	p := b.String()
	p += "/" + strings.Repeat("y", MaxPathBytes-len(p)-1)
	if len(p) != MaxPathBytes || ValidatePath(testCell, p) != nil {
		t.Fatalf("path of %d bytes: %v", len(p), ValidatePath(testCell, p))
	}
	if ValidatePath(testCell, p+"z") == nil {
		t.Fatal("path over the limit accepted")
	}
	for _, cell := range []string{"", ".", "..", "a/b", "a b"} {
		if ValidatePath(cell, "/ls/"+cell+"/x") == nil {
			t.Errorf("bad cell %q accepted", cell)
		}
	}
}

func TestPathHelpers(t *testing.T) {
	if got := ancestors("/ls/c", "/ls/c/a/b/c"); strings.Join(got, ",") != "/ls/c/a,/ls/c/a/b" {
		t.Fatal(got)
	}
	if parentOf("/ls/c/a/b") != "/ls/c/a" || baseOf("/ls/c/a/b") != "b" || cellOf("/ls/c/a") != "c" {
		t.Fatal("helpers")
	}
	if !under("/ls/c/a/b", "/ls/c/a") || under("/ls/c/ab", "/ls/c/a") || !under("/ls/c/a", "/ls/c/a") {
		t.Fatal("under")
	}
}

var naivePath = regexp.MustCompile(`^/ls/test(/[A-Za-z0-9._-]{1,255})*$`)

func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"/ls/test", "/ls/test/a", "/ls/test/a/b", "/ls/test/..", "/ls/test//",
		"/ls/test/a.b/_c-", "/ls/other/a", "/ls/testx", "", "/ls/test/\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		err := ValidatePath(testCell, path)
		want := naivePath.MatchString(path) && len(path) <= MaxPathBytes
		if want {
			for _, seg := range strings.Split(path, "/")[3:] {
				if seg == "." || seg == ".." {
					want = false
				}
			}
		}
		if (err == nil) != want {
			t.Fatalf("ValidatePath(%q) = %v, naive says ok=%v", path, err, want)
		}
		if err == nil && path != "/ls/test" {
			if validNodePath(testCell, path) != nil || !strings.HasPrefix(path, "/ls/test/") {
				t.Fatalf("%q", path)
			}
			if ValidatePath(testCell, parentOf(path)) != nil {
				t.Fatalf("parent of valid %q is invalid", path)
			}
		}
	})
}
