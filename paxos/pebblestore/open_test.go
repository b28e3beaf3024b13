package pebblestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/lockd/lockd/paxos"
)

// populate creates a store in dir holding a little of everything.
func populate(t *testing.T, fs vfs.FS, dir string) {
	t.Helper()
	s := openStore(t, fs, dir, Options{Bootstrap: true})
	if err := s.Save(&paxos.HardState{Promised: paxos.Ballot{Round: 2, Node: 2}, Commit: 4}, entryRange(1, 6, 2), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(paxos.Snapshot{Slot: 2, Index: 2, Data: []byte("image")}); err != nil {
		t.Fatal(err)
	}
	mustClose(t, s)
}

func TestOpenForeignDirectory(t *testing.T) {
	tests := []struct {
		name string
		id   paxos.Identity
	}{
		{"other cell", paxos.Identity{Cell: "cell-b", Node: testID.Node}},
		{"other node", paxos.Identity{Cell: testID.Cell, Node: 3}},
		{"other cell and node", paxos.Identity{Cell: "cell-b", Node: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			populate(t, vfs.Default, dir)
			before := dirImage(t, dir)

			s, err := Open(dir, tt.id, Options{Logger: testLogger(t)})
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded on a foreign directory")
			}
			if !errors.Is(err, paxos.ErrForeignData) || errors.Is(err, paxos.ErrCorruptData) {
				t.Fatalf("err = %v, want ErrForeignData only", err)
			}
			for _, want := range []string{`"cell-a" node 2`, fmt.Sprintf("%q node %d", tt.id.Cell, tt.id.Node)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			checkDirUnchanged(t, dir, before)

			// The rightful owner still finds everything.
			s = openStore(t, vfs.Default, dir, Options{})
			checkLoad(t, s, paxos.HardState{Promised: paxos.Ballot{Round: 2, Node: 2}, Commit: 4},
				paxos.Snapshot{Slot: 2, Index: 2, Data: []byte("image")}, entryRange(3, 6, 2))
		})
	}
}

func TestOpenCorruptDirectory(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{{
		name: "random files",
		setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "notes.txt"), "not a store")
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "truncated manifest",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			truncateFile(t, dir, "MANIFEST-", func(n int64) int64 { return n / 2 })
		},
	}, {
		name: "empty manifest",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			truncateFile(t, dir, "MANIFEST-", func(int64) int64 { return 0 })
		},
	}, {
		name: "manifest marker without manifest",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			removeFile(t, dir, "MANIFEST-")
		},
	}, {
		name: "pebble store without metadata",
		setup: func(t *testing.T, dir string) {
			rawEdit(t, vfs.Default, dir, func(db *pebble.DB) { rawSet(t, db, []byte("k"), []byte("v")) })
		},
	}, {
		name: "metadata fails its checksum",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			rawEdit(t, vfs.Default, dir, func(db *pebble.DB) {
				rawSet(t, db, keyMeta, flipByte(rawGet(t, db, keyMeta), 3))
			})
		},
	}, {
		name: "metadata does not decode",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			rawEdit(t, vfs.Default, dir, func(db *pebble.DB) {
				rec := sealRecord([]byte{tagMeta, formatVersion, 200, 'x'}, 0)
				rawSet(t, db, keyMeta, rec)
			})
		},
	}, {
		name: "metadata of another format version",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			rawEdit(t, vfs.Default, dir, func(db *pebble.DB) {
				m := Metadata{FormatVersion: formatVersion + 1, Identity: testID, Created: time.Now()}
				rawSet(t, db, keyMeta, appendMeta(nil, m))
			})
		},
	}, {
		name: "hard state missing",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			rawEdit(t, vfs.Default, dir, func(db *pebble.DB) {
				if err := db.Delete(keyHardState, pebble.Sync); err != nil {
					t.Fatal(err)
				}
			})
		},
	}, {
		name: "hard state fails its checksum",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			rawEdit(t, vfs.Default, dir, func(db *pebble.DB) {
				rawSet(t, db, keyHardState, flipByte(rawGet(t, db, keyHardState), 1))
			})
		},
	}, {
		name: "snapshot fails its checksum",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			rawEdit(t, vfs.Default, dir, func(db *pebble.DB) {
				rec := rawGet(t, db, keySnapshot)
				rawSet(t, db, keySnapshot, flipByte(rec, len(rec)-1))
			})
		},
	}, {
		name: "snapshot stored under the hard state key",
		setup: func(t *testing.T, dir string) {
			populate(t, vfs.Default, dir)
			rawEdit(t, vfs.Default, dir, func(db *pebble.DB) {
				rawSet(t, db, keyHardState, rawGet(t, db, keySnapshot))
			})
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			before := dirImage(t, dir)
			for _, bootstrap := range []bool{false, true} {
				s, err := Open(dir, testID, Options{Bootstrap: bootstrap, Logger: testLogger(t)})
				if err == nil {
					_ = s.Close()
					t.Fatal("Open succeeded on a corrupt directory")
				}
				if !errors.Is(err, paxos.ErrCorruptData) || errors.Is(err, paxos.ErrForeignData) {
					t.Fatalf("err = %v, want ErrCorruptData only", err)
				}
				t.Logf("refused: %v", err)
				checkDirUnchanged(t, dir, before)
			}
		})
	}
}

func TestLoadDetectsCorruptEntries(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, db *pebble.DB)
	}{{
		name: "flipped byte in a command",
		edit: func(t *testing.T, db *pebble.DB) {
			k := appendEntryKey(nil, 4)
			rec := rawGet(t, db, k)
			rawSet(t, db, k, flipByte(rec, len(rec)-crcLen-1))
		},
	}, {
		name: "flipped byte in the checksum",
		edit: func(t *testing.T, db *pebble.DB) {
			k := appendEntryKey(nil, 5)
			rec := rawGet(t, db, k)
			rawSet(t, db, k, flipByte(rec, len(rec)-1))
		},
	}, {
		name: "truncated record",
		edit: func(t *testing.T, db *pebble.DB) {
			k := appendEntryKey(nil, 3)
			rawSet(t, db, k, rawGet(t, db, k)[:3])
		},
	}, {
		name: "entry stored under another slot",
		edit: func(t *testing.T, db *pebble.DB) {
			rawSet(t, db, appendEntryKey(nil, 6), rawGet(t, db, appendEntryKey(nil, 5)))
		},
	}, {
		name: "hard state stored as an entry",
		edit: func(t *testing.T, db *pebble.DB) {
			rawSet(t, db, appendEntryKey(nil, 6), rawGet(t, db, keyHardState))
		},
	}, {
		name: "malformed entry key",
		edit: func(t *testing.T, db *pebble.DB) {
			rawSet(t, db, []byte{prefixEntry, 0xff}, appendEntry(nil, entry(7, 1, 1)))
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			populate(t, fs, "/data")
			rawEdit(t, fs, "/data", func(db *pebble.DB) { tt.edit(t, db) })
			s := openStore(t, fs, "/data", Options{})
			_, _, _, err := s.Load()
			if !errors.Is(err, paxos.ErrCorruptData) {
				t.Fatalf("Load err = %v, want ErrCorruptData", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestOpenLockedDirectory(t *testing.T) {
	fs := vfs.NewMem()
	openStore(t, fs, "/data", Options{})
	_, err := Open("/data", testID, Options{FS: fs})
	if err == nil {
		t.Fatal("second Open of a locked directory succeeded")
	}
	if errors.Is(err, paxos.ErrCorruptData) || errors.Is(err, paxos.ErrForeignData) {
		t.Fatalf("a held lock reported as %v", err)
	}
}

func TestOpenInvalidIdentity(t *testing.T) {
	for _, id := range []paxos.Identity{{Cell: "", Node: 1}, {Cell: "c", Node: paxos.None}} {
		fs := vfs.NewMem()
		if _, err := Open("/data", id, Options{FS: fs}); err == nil {
			t.Errorf("Open with identity %+v succeeded", id)
		}
		if ls, _ := fs.List("/"); len(ls) != 0 {
			t.Errorf("Open with identity %+v created %v", id, ls)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// findFile returns the one file in dir whose name starts with prefix.
func findFile(t *testing.T, dir, prefix string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, prefix+"*"))
	if err != nil || len(matches) != 1 {
		t.Fatalf("files %s* in %s: %v %v", prefix, dir, matches, err)
	}
	return matches[0]
}

func truncateFile(t *testing.T, dir, prefix string, size func(int64) int64) {
	t.Helper()
	path := findFile(t, dir, prefix)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size(fi.Size())); err != nil {
		t.Fatal(err)
	}
}

func removeFile(t *testing.T, dir, prefix string) {
	t.Helper()
	if err := os.Remove(findFile(t, dir, prefix)); err != nil {
		t.Fatal(err)
	}
}
