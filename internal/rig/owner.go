package rig

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRunDir holds the rig's lock and owner files. It is on tmpfs, so a
// reboot (which also ends every namespace and the zfs-fuse daemon) clears it.
const DefaultRunDir = "/run/flocker-rig"

// namePrefix starts every pool and namespace name the rig creates, so an
// operator can tell them apart from anything else on the machine.
const namePrefix = "flkrig-"

var idSeq atomic.Uint64

// newID returns <pid>-<n>-<random>: the pid tells an operator which process
// made it, the counter keeps one process's names apart, and the random part
// keeps two processes apart even when pids are reused (pid namespaces, reboots).
func newID() string {
	var b [3]byte
	rand.Read(b[:]) // documented never to return an error
	return fmt.Sprintf("%d-%d-%s", os.Getpid(), idSeq.Add(1), hex.EncodeToString(b[:]))
}

func runDirOr(dir string) string {
	if dir == "" {
		return DefaultRunDir
	}
	return dir
}

// record lists what one rig object created, so that a later Sweep can remove
// it when its owner died without Close.
type record struct {
	Pool       string   `json:"pool,omitempty"`
	PoolDir    string   `json:"pool_dir,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// owner is a held owner file: its flock says "alive" to every Sweep.
type owner struct {
	f    *os.File
	path string
}

func ownersDir(runDir string) string { return filepath.Join(runDir, "owners") }

// claim writes rec to RunDir/owners/<id>.json before the resources exist and
// keeps the file locked until release. The file is written under a name Sweep
// ignores and renamed once locked, so Sweep never sees an unlocked, half
// written record of a live owner.
func claim(runDir, id string, rec record) (*owner, error) {
	dir := ownersDir(runDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating owner directory: %w", err)
	}
	tmp := filepath.Join(dir, "."+id+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating owner file: %w", err)
	}
	fail := func(err error) (*owner, error) {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(fmt.Errorf("locking owner file %s: %w", tmp, err))
	}
	if err := json.NewEncoder(f).Encode(rec); err != nil {
		return fail(fmt.Errorf("writing owner file %s: %w", tmp, err))
	}
	path := filepath.Join(dir, id+".json")
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("publishing owner file: %w", err))
	}
	return &owner{f: f, path: path}, nil
}

// release drops the lock. When everything was cleaned up the record goes too;
// otherwise it stays for a later Sweep to retry.
func (o *owner) release(cleaned bool) error {
	if o == nil {
		return nil
	}
	var errs []error
	if cleaned {
		if err := os.Remove(o.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing owner file: %w", err))
		}
	}
	if err := o.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing owner file: %w", err))
	}
	return errors.Join(errs...)
}

// SweepOptions configures Sweep.
type SweepOptions struct {
	RunDir string // default DefaultRunDir
	// BusyWait is how long a busy pool is retried. Default 10 s.
	BusyWait time.Duration
	Logger   *slog.Logger // default: discard
}

// staleTmpAge is how old an unpublished owner file must be before Sweep
// removes it: claim publishes within microseconds, so a minute means its
// writer died between create and rename.
const staleTmpAge = time.Minute

// Sweep removes pools, pool directories and namespaces recorded by rig owners
// that are gone (their owner file is no longer locked), killing processes left
// in those namespaces. Resources of live owners, in this process or another,
// are never touched. It returns what it could not remove; the record of such a
// resource stays for the next Sweep.
func Sweep(ctx context.Context, opts SweepOptions) error {
	runDir := runDirOr(opts.RunDir)
	log := loggerOr(opts.Logger)
	wait := opts.BusyWait
	if wait == 0 {
		wait = sweepDestroyWait
	}
	dir := ownersDir(runDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep: reading %s: %w", dir, err)
	}
	var (
		stale []*staleRecord
		errs  []error
	)
	defer func() {
		for _, r := range stale {
			r.f.Close()
		}
	}()
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".json"):
			r, err := lockStale(path)
			if err != nil {
				errs = append(errs, err)
			} else if r != nil {
				stale = append(stale, r)
			}
		case strings.HasSuffix(e.Name(), ".tmp"):
			removeStaleTmp(path, e)
		}
	}
	// Namespaces first: the processes killed there may hold files open in
	// a pool of another record.
	for _, r := range stale {
		log.Info("sweeping resources of a rig owner that is gone", "record", r.path,
			"pool", r.rec.Pool, "namespaces", r.rec.Namespaces)
		for _, name := range r.rec.Namespaces {
			if err := removeNamespaceByName(name); err != nil {
				r.errs = append(r.errs, err)
			}
		}
	}
	for _, r := range stale {
		if r.rec.Pool == "" {
			continue
		}
		if err := destroyPool(ctx, r.rec.Pool, wait, log); err != nil {
			if h := holders(r.rec.PoolDir, filepath.Join(r.rec.PoolDir, vdevFile)); len(h) > 0 {
				err = fmt.Errorf("%w (files held by %s)", err, strings.Join(h, ", "))
			}
			r.errs = append(r.errs, err)
		} else if err := removePoolDir(r.rec.PoolDir); err != nil {
			r.errs = append(r.errs, err)
		}
	}
	for _, r := range stale {
		if len(r.errs) > 0 {
			errs = append(errs, fmt.Errorf("sweep %s: %w", r.path, errors.Join(r.errs...)))
			continue
		}
		if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("sweep: %w", err))
		}
	}
	return errors.Join(errs...)
}

// staleRecord is the record of an owner that is gone, locked by this Sweep.
type staleRecord struct {
	path string
	f    *os.File
	rec  record
	errs []error
}

// lockStale returns the record at path locked, or nil when its owner is alive
// (or closed it meanwhile).
func lockStale(path string) (*staleRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("sweep: locking %s: %w", path, err)
	}
	r := &staleRecord{path: path, f: f}
	if err := json.NewDecoder(f).Decode(&r.rec); err != nil {
		f.Close()
		// A published record is always complete; one that does not parse
		// was not written by this package: leave it for an operator.
		return nil, fmt.Errorf("sweep: reading %s: %w", path, err)
	}
	return r, nil
}

// removeStaleTmp removes an unpublished owner file whose writer died.
func removeStaleTmp(path string, e os.DirEntry) {
	info, err := e.Info()
	if err != nil || time.Since(info.ModTime()) < staleTmpAge {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		os.Remove(path)
	}
}

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
