package lockd_test

import (
	"go/build"
	"os/exec"
	"strings"
	"testing"
)

const selfImport = "github.com/lockd/lockd/clients/go"

// allowedDep reports whether the SDK may depend on package p: the standard
// library and clients/go itself, nothing else (no other package of this
// repository, no third-party module).
func allowedDep(p string, standard bool) bool {
	return standard || p == selfImport || strings.HasPrefix(p, selfImport+"/")
}

// TestImportsNoServerPackage keeps the SDK free of the server.
func TestImportsNoServerPackage(t *testing.T) {
	// Direct imports, from the source.
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkg.Imports {
		first, _, _ := strings.Cut(p, "/")
		if !allowedDep(p, !strings.Contains(first, ".")) {
			t.Errorf("clients/go imports %s; it may import only the standard library and clients/go/...", p)
		}
	}
	// Every dependency, from the go command, where it is at hand.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Logf("no go command on PATH: checked direct imports only")
		return
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p, std, _ := strings.Cut(line, " ")
		if !allowedDep(p, std == "true") {
			t.Errorf("clients/go depends on %s; it may depend only on the standard library and clients/go/...", p)
		}
	}
}
