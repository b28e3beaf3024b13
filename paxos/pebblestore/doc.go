// Package pebblestore is the durable paxos.Storage of a lockd replica, on
// cockroachdb/pebble.
//
// # Durability
//
// Every Save and Compact is one pebble.Batch committed with pebble.Sync: when
// it returns nil, everything it was given is on stable storage, and a crash
// keeps all of it or (had it not returned) none of it. There is no option to
// turn syncing off. A failed write is not retried in place: pebble cannot say
// what reached the disk, so that call and every later Save, Compact and Load
// fail with ErrFailed, and the replica must Close, restart, reopen and Load.
// Pebble treats a failed WAL or MANIFEST write as fatal and calls its
// logger's Fatalf; the store's logger panics there, and the store turns the
// panic into the ErrFailed error when the write is its own. When it happens
// on a pebble background goroutine (a flush or compaction), the process
// panics, as it would exit with pebble's default logger.
//
// Save and Compact refuse a snapshot older than the stored one, and Compact
// one beyond the durable commit index, with ErrBadSnapshot before writing
// anything: either would lose entries the snapshot does not cover.
//
// # Data directory identity
//
// Open on a missing or empty directory creates a store and writes, in one
// synced batch, a metadata record (format version, cell, replica id, creation
// time) and the initial HardState. Without Options.Bootstrap that HardState
// has Recovering set: a replica whose disk was wiped has forgotten its
// promises and must not vote until it rejoined.
//
// Open on a directory that is not empty never resets, repairs or deletes
// anything, and changes nothing before the metadata is checked (pebble is
// first opened read-only). It fails with:
//   - paxos.ErrForeignData when the metadata names another cell or replica id
//     (both identities are in the message);
//   - paxos.ErrCorruptData when the directory holds files but no pebble store,
//     pebble cannot open the store (e.g. a truncated MANIFEST), the metadata or
//     HardState record is missing, the metadata, HardState or snapshot record
//     fails its checksum or does not decode, or the format version is not the
//     one this build writes.
//
// A crash while a store is being created, before its metadata is synced,
// leaves a directory that Open refuses as corrupt; since nothing was ever
// acknowledged from it, the operator may remove it.
//
// # Layout
//
// Keys are one byte naming a space, then, for entries, the slot as a
// big-endian uint64, so that pebble iterates entries in slot order:
//
//	"m"                metadata
//	"h"                HardState
//	"s"                latest snapshot
//	"e" + slot (8 B)   log entry
//
// Each value is a record: a tag byte naming its space, the fields as uvarints
// and length-prefixed bytes, then a CRC32-C of tag and fields (4 bytes,
// little-endian). An entry record holds its slot, ballot round and node, and
// its commands: their count, then each one's length and bytes, so a no-op (no
// commands) and a single empty command stay distinct. Entry.Chosen is not
// stored. Load reports a record that fails its checksum or does not decode,
// or an entry whose slot disagrees with its key, as paxos.ErrCorruptData.
//
// Storing a snapshot deletes the entries at or below its slot with a range
// deletion in the same batch. Slots start at 1: Save drops entries at or
// below the latest snapshot (slot 0 included).
//
// # Use
//
//	st, err := pebblestore.Open(dir, paxos.Identity{Cell: "main", Node: 2},
//		pebblestore.Options{Logger: logger.Named("storage")})
//	if err != nil {
//		return err // ErrForeignData and ErrCorruptData need an operator
//	}
//	defer st.Close()
//	hs, snap, entries, err := st.Load()
package pebblestore
