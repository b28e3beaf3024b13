package pebblestore

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/paxos"
)

// Errors returned by a Store, besides paxos.ErrForeignData and
// paxos.ErrCorruptData.
var (
	// ErrClosed is returned by every method of a closed Store.
	ErrClosed = errors.New("pebblestore: store is closed")
	// ErrFailed is returned by a Save or Compact whose write failed, and by
	// every later Save, Compact and Load: the store cannot tell what
	// reached the disk, so it refuses further use. The replica must close
	// the store and restart.
	ErrFailed = errors.New("pebblestore: store failed a write and must be reopened")
	// ErrBadSnapshot is returned, before anything is written, for a snapshot
	// older than the stored one (that would leave a hole in the log), or
	// for a Compact beyond the durable commit index.
	ErrBadSnapshot = errors.New("pebblestore: snapshot is older than the stored one or beyond the commit index")
)

// pebbleFormat is the pebble format major version new stores are created at
// and existing ones are ratcheted to. It is pinned so that upgrading pebble
// does not silently change the on-disk format.
const pebbleFormat = pebble.FormatValueSeparation

// Options configures Open.
type Options struct {
	// FS is the filesystem the store lives on; nil means the real disk
	// (vfs.Default).
	FS vfs.FS
	// Bootstrap says whether a store created by this Open belongs to a
	// replica of the initial configuration. A replica created without
	// Bootstrap starts with HardState.Recovering set, because its directory
	// may have been wiped: it must not vote until it rejoined. Bootstrap is
	// ignored when the directory already holds a store.
	Bootstrap bool
	// Logger receives pebble's own log lines; nil discards them.
	Logger hclog.Logger

	// tune adjusts the pebble options; tests use it to force flushes.
	tune func(*pebble.Options)
}

// Store is the pebble-backed paxos.Storage. Like the interface it implements,
// it is not safe for concurrent use.
type Store struct {
	dir  string
	db   *pebble.DB
	lock *pebble.Lock
	meta Metadata

	// hs is the durable HardState, and snapSlot the slot of the durable
	// snapshot (0 if none): Save and Compact check snapshots against them.
	hs       paxos.HardState
	snapSlot uint64

	failed error // first write failure; sticky
	// wedged is set when pebble failed while holding its commit locks:
	// closing it could then block forever, so Close leaves it (and the
	// directory lock) to the process exit.
	wedged bool
	closed bool

	// Scratch buffers reused across Saves; pebble copies keys and values
	// into the batch.
	key []byte
	val []byte
}

var _ paxos.Storage = (*Store)(nil)

// Open opens the store in dir for the replica id, creating it when dir does
// not exist or is empty. It refuses, without changing anything in dir, a
// store that belongs to another identity (paxos.ErrForeignData) and a
// directory that is not a readable store of this format (paxos.ErrCorruptData).
func Open(dir string, id paxos.Identity, opts Options) (*Store, error) {
	if id.Cell == "" || id.Node == paxos.None {
		return nil, fmt.Errorf("pebblestore: invalid identity cell %q node %d", id.Cell, id.Node)
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	var s *Store
	ls, err := opts.FS.List(dir)
	switch {
	case errors.Is(err, iofs.ErrNotExist) || err == nil && len(ls) == 0:
		s, err = create(dir, id, opts)
	case err != nil:
		err = fmt.Errorf("listing: %w", err)
	default:
		s, err = openExisting(dir, id, opts, len(ls))
	}
	if err != nil {
		return nil, fmt.Errorf("pebblestore: opening %s: %w", dir, err)
	}
	return s, nil
}

// pebbleOptions returns the options every pebble.Open of the store uses.
func pebbleOptions(opts Options, lock *pebble.Lock) *pebble.Options {
	log := opts.Logger.Named("pebble")
	po := &pebble.Options{
		FS:                 opts.FS,
		Lock:               lock,
		Logger:             pebbleLogger{log},
		FormatMajorVersion: pebbleFormat,
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				log.Error("background error", "error", err)
			},
			DiskSlow: func(info pebble.DiskSlowInfo) {
				log.Warn("disk slow", "path", info.Path, "op", info.OpType.String(), "duration", info.Duration)
			},
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				log.Warn("write stall", "reason", info.Reason)
			},
		},
	}
	if opts.tune != nil {
		opts.tune(po)
	}
	return po
}

// create makes a new store in dir (missing or empty). The metadata and the
// initial HardState are written in one synced batch; a crash before that
// batch leaves a store without metadata, which Open then refuses as corrupt.
func create(dir string, id paxos.Identity, opts Options) (_ *Store, err error) {
	if err := opts.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating directory: %w", err)
	}
	lock, err := pebble.LockDirectory(dir, opts.FS)
	if err != nil {
		return nil, fmt.Errorf("locking: %w", err)
	}
	defer func() {
		if err != nil {
			_ = lock.Close()
		}
	}()
	po := pebbleOptions(opts, lock)
	po.ErrorIfExists = true
	db, err := openPebble(dir, po)
	if err != nil {
		return nil, fmt.Errorf("creating pebble store: %w", err)
	}
	s := &Store{
		dir:  dir,
		db:   db,
		lock: lock,
		meta: Metadata{FormatVersion: formatVersion, Identity: id, Created: time.Now().UTC()},
		hs:   paxos.HardState{Recovering: !opts.Bootstrap},
	}
	b := db.NewBatch()
	s.val = appendMeta(s.val[:0], s.meta)
	_ = b.Set(keyMeta, s.val, nil)
	s.val = appendHardState(s.val[:0], s.hs)
	_ = b.Set(keyHardState, s.val, nil)
	if err := s.commit(b); err != nil {
		if !s.wedged {
			_ = db.Close()
		}
		return nil, fmt.Errorf("writing metadata: %w", err)
	}
	return s, nil
}

// openExisting opens the store in dir, which lists n names. It first opens
// pebble read-only to check the metadata, so that a foreign or corrupt
// directory is refused before pebble writes anything to it.
func openExisting(dir string, id paxos.Identity, opts Options, n int) (_ *Store, err error) {
	desc, err := pebble.Peek(dir, opts.FS)
	if err != nil {
		return nil, corruptf("%w", err)
	}
	if !desc.Exists {
		return nil, corruptf("directory is not empty (%d names) but holds no pebble store", n)
	}
	lock, err := pebble.LockDirectory(dir, opts.FS)
	if err != nil {
		return nil, fmt.Errorf("locking: %w", err)
	}
	defer func() {
		if err != nil {
			_ = lock.Close()
		}
	}()

	po := pebbleOptions(opts, lock)
	po.ErrorIfNotExists = true
	po.ReadOnly = true
	ro, err := openPebble(dir, po)
	if err != nil {
		if errors.Is(err, iofs.ErrPermission) {
			return nil, err
		}
		return nil, corruptf("%w", err)
	}
	s := &Store{dir: dir, lock: lock}
	err = s.readState(ro, id)
	if cerr := ro.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing after the read-only check: %w", cerr)
	}
	if err != nil {
		return nil, err
	}

	po.ReadOnly = false
	if s.db, err = openPebble(dir, po); err != nil {
		return nil, err
	}
	return s, nil
}

// openPebble is pebble.Open, with the panic of pebbleLogger.Fatalf (pebble
// treats a failed MANIFEST write as fatal) returned as an error. Pebble
// releases what it acquired before passing the panic on.
func openPebble(dir string, po *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, panicError(r)
		}
	}()
	return pebble.Open(dir, po)
}

// readState checks the metadata in r against id and loads the durable
// HardState and snapshot slot into s.
func (s *Store) readState(r pebble.Reader, id paxos.Identity) error {
	rec, err := get(r, keyMeta)
	if err != nil {
		return fmt.Errorf("reading metadata: %w", err)
	}
	if rec == nil {
		return corruptf("no metadata record")
	}
	if s.meta, err = decodeMeta(rec); err != nil {
		return err
	}
	if v := s.meta.FormatVersion; v != formatVersion {
		return corruptf("format version %d, this build reads %d", v, formatVersion)
	}
	if got := s.meta.Identity; got != id {
		return fmt.Errorf("%w: it belongs to cell %q node %d, not to cell %q node %d",
			paxos.ErrForeignData, got.Cell, got.Node, id.Cell, id.Node)
	}

	rec, err = get(r, keyHardState)
	if err != nil {
		return fmt.Errorf("reading hard state: %w", err)
	}
	if rec == nil {
		return corruptf("no hard state record")
	}
	if s.hs, err = decodeHardState(rec); err != nil {
		return err
	}

	snap, err := loadSnapshot(r)
	if err != nil {
		return err
	}
	s.snapSlot = snap.Slot
	return nil
}

// get returns a copy of the value of key, nil if there is none. A read
// failure pebble reports as corruption wraps paxos.ErrCorruptData.
func get(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, readError(err)
	}
	out := append(make([]byte, 0, len(v)), v...)
	return out, closer.Close()
}

func readError(err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", paxos.ErrCorruptData, err)
	}
	return err
}

func loadSnapshot(r pebble.Reader) (paxos.Snapshot, error) {
	rec, err := get(r, keySnapshot)
	if err != nil || rec == nil {
		return paxos.Snapshot{}, err
	}
	return decodeSnapshot(rec)
}

// Metadata returns the identity record of the store's directory.
func (s *Store) Metadata() Metadata { return s.meta }

// usable returns why the store cannot be used, or nil.
func (s *Store) usable() error {
	if s.closed {
		return ErrClosed
	}
	if s.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, s.failed)
	}
	return nil
}

// Load returns the durable HardState, the latest snapshot (zero if none) and
// every entry above the snapshot in slot order. Everything returned belongs
// to the caller. A record that fails its checksum or does not decode is
// reported as paxos.ErrCorruptData.
func (s *Store) Load() (paxos.HardState, paxos.Snapshot, []paxos.Entry, error) {
	if err := s.usable(); err != nil {
		return paxos.HardState{}, paxos.Snapshot{}, nil, err
	}
	fail := func(err error) (paxos.HardState, paxos.Snapshot, []paxos.Entry, error) {
		return paxos.HardState{}, paxos.Snapshot{}, nil, fmt.Errorf("pebblestore: loading %s: %w", s.dir, err)
	}
	rec, err := get(s.db, keyHardState)
	if err != nil {
		return fail(err)
	}
	if rec == nil {
		return fail(corruptf("no hard state record"))
	}
	hs, err := decodeHardState(rec)
	if err != nil {
		return fail(err)
	}
	snap, err := loadSnapshot(s.db)
	if err != nil {
		return fail(err)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: entryKeyAbove(snap.Slot),
		UpperBound: keyEntryEnd,
	})
	if err != nil {
		return fail(readError(err))
	}
	var entries []paxos.Entry
	for valid := it.First(); valid; valid = it.Next() {
		slot, ok := slotOfKey(it.Key())
		if !ok {
			err := corruptf("malformed entry key %x", it.Key())
			_ = it.Close()
			return fail(err)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fail(readError(err))
		}
		e, err := decodeEntry(v)
		if err == nil && e.Slot != slot {
			err = corruptf("entry record for slot %d stored under slot %d", e.Slot, slot)
		}
		if err != nil {
			_ = it.Close()
			return fail(fmt.Errorf("slot %d: %w", slot, err))
		}
		entries = append(entries, e)
	}
	if err := it.Close(); err != nil {
		return fail(readError(err))
	}
	return hs, snap, entries, nil
}

// Save durably stores, in one batch committed with pebble.Sync, the
// HardState (when hs is not nil), the entries, and the snapshot (when snap is
// not nil). Entries overwrite any stored for the same slot. With a snapshot,
// every entry at or below snap.Slot, stored or given, is removed. Entries at
// or below the durable snapshot are dropped. A snapshot older than the stored
// one is refused with ErrBadSnapshot. After a write error the store refuses
// every further call with ErrFailed.
func (s *Store) Save(hs *paxos.HardState, entries []paxos.Entry, snap *paxos.Snapshot) error {
	if err := s.usable(); err != nil {
		return err
	}
	floor := s.snapSlot
	if snap != nil {
		if err := s.checkSnapshot(*snap); err != nil {
			return err
		}
		floor = snap.Slot
	}
	b := s.db.NewBatch()
	if hs != nil {
		s.val = appendHardState(s.val[:0], *hs)
		_ = b.Set(keyHardState, s.val, nil)
	}
	if snap != nil {
		s.putSnapshot(b, *snap)
	}
	for i := range entries {
		e := &entries[i]
		if e.Slot <= floor {
			continue
		}
		s.key = appendEntryKey(s.key[:0], e.Slot)
		s.val = appendEntry(s.val[:0], *e)
		_ = b.Set(s.key, s.val, nil)
	}
	if err := s.commit(b); err != nil {
		return fmt.Errorf("%w: saving to %s: %w", ErrFailed, s.dir, err)
	}
	if hs != nil {
		s.hs = *hs
	}
	s.snapSlot = floor
	return nil
}

// Compact durably stores snap as the latest snapshot and removes every entry
// at or below snap.Slot, in one batch committed with pebble.Sync. A snapshot
// older than the stored one, or beyond the durable commit index, is refused
// with ErrBadSnapshot.
func (s *Store) Compact(snap paxos.Snapshot) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.checkSnapshot(snap); err != nil {
		return err
	}
	if snap.Slot > s.hs.Commit {
		return fmt.Errorf("%w: compacting to slot %d beyond commit index %d", ErrBadSnapshot, snap.Slot, s.hs.Commit)
	}
	b := s.db.NewBatch()
	s.putSnapshot(b, snap)
	if err := s.commit(b); err != nil {
		return fmt.Errorf("%w: compacting %s: %w", ErrFailed, s.dir, err)
	}
	s.snapSlot = snap.Slot
	return nil
}

func (s *Store) checkSnapshot(snap paxos.Snapshot) error {
	if snap.Slot == 0 {
		return fmt.Errorf("%w: snapshot at slot 0", ErrBadSnapshot)
	}
	if snap.Slot < s.snapSlot {
		return fmt.Errorf("%w: snapshot at slot %d, stored one at slot %d", ErrBadSnapshot, snap.Slot, s.snapSlot)
	}
	return nil
}

// putSnapshot adds to b the snapshot record and the deletion of every entry
// at or below snap.Slot.
func (s *Store) putSnapshot(b *pebble.Batch, snap paxos.Snapshot) {
	s.val = appendSnapshot(s.val[:0], snap)
	_ = b.Set(keySnapshot, s.val, nil)
	s.key = appendEntryKey(s.key[:0], 0)
	_ = b.DeleteRange(s.key, entryKeyAbove(snap.Slot), nil)
}

// commit commits b with pebble.Sync. Pebble treats a failed WAL write or
// sync as fatal and calls Logger.Fatalf, which panics (see pebbleLogger);
// commit turns that panic into an error. Any failure makes the store refuse
// further use, and the batch is then abandoned rather than returned to
// pebble's pool, since the broken commit pipeline may still reference it.
func (s *Store) commit(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			// pebbleFatal comes from DB.Apply once the commit pipeline
			// returned its error and released its locks; any other panic
			// may have left them held.
			_, fatal := r.(pebbleFatal)
			s.wedged = !fatal
			err = panicError(r)
		}
		if err != nil {
			s.failed = err
			return
		}
		_ = b.Close()
	}()
	return b.Commit(pebble.Sync)
}

func panicError(r any) error {
	if err, ok := r.(error); ok {
		return err
	}
	return fmt.Errorf("pebble panicked: %v", r)
}

// Close releases the store and its directory lock. After a failed write,
// pebble's Close reports the failure again. In the rare case where pebble
// failed while holding its commit locks, Close does not close pebble, and the
// directory stays locked until the process exits.
func (s *Store) Close() error {
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	if s.wedged {
		return fmt.Errorf("pebblestore: closing %s: pebble is wedged after %w", s.dir, s.failed)
	}
	var err error
	if cerr := s.db.Close(); cerr != nil {
		err = fmt.Errorf("pebblestore: closing %s: %w", s.dir, cerr)
	}
	if lerr := s.lock.Close(); lerr != nil && err == nil {
		err = fmt.Errorf("pebblestore: unlocking %s: %w", s.dir, lerr)
	}
	return err
}

// pebbleLogger routes pebble's log lines to hclog. Pebble calls Fatalf when it
// cannot go on (a failed WAL write or sync, a failed MANIFEST write) and
// expects it not to return; it panics with a pebbleFatal, which Store.commit
// recovers when the failure is its own write. From a pebble background
// goroutine the panic ends the process, as pebble's default logger would.
type pebbleLogger struct{ log hclog.Logger }

// pebbleFatal is the panic value of pebbleLogger.Fatalf.
type pebbleFatal struct{ msg string }

func (f pebbleFatal) Error() string { return "pebble fatal error: " + f.msg }

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.IsDebug() {
		l.log.Debug("pebble", "msg", fmt.Sprintf(format, args...))
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble", "msg", fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("pebble fatal error", "msg", msg)
	panic(pebbleFatal{msg})
}
