package pebblestore

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/paxos"
)

// BenchmarkSave measures one synced Save (hard state plus a batch of
// entries, one 128-byte command each) on the real disk under b.TempDir.
func BenchmarkSave(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			s, err := Open(b.TempDir(), testID, Options{FS: vfs.Default, Bootstrap: true, Logger: hclog.NewNullLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			cmd := make([]byte, 128)
			entries := make([]paxos.Entry, n)
			for i := range entries {
				entries[i].Value = paxos.Value{cmd}
			}
			hs := paxos.HardState{Promised: paxos.Ballot{Round: 1, Node: testID.Node}}
			slot := uint64(0)
			b.SetBytes(int64(n * len(cmd)))
			b.ReportAllocs()
			for b.Loop() {
				for i := range entries {
					slot++
					entries[i].Slot = slot
					entries[i].Ballot = hs.Promised
				}
				hs.Commit = slot
				if err := s.Save(&hs, entries, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
