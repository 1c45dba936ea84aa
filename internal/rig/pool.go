package rig

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Pool sizes. zfs-fuse refuses vdevs under 64 MiB; the file is sparse, so the
// default costs only what is written.
const (
	DefaultPoolSize = 1 << 30
	MinPoolSize     = 64 << 20
)

// vdevFile is the name of the sparse vdev file in a pool's directory.
const vdevFile = "vdev.img"

// PoolOptions configures CreatePool.
type PoolOptions struct {
	Size   int64  // bytes of the sparse vdev file; default DefaultPoolSize
	Dir    string // parent of the pool's own directory; default os.TempDir()
	RunDir string // owner records; default DefaultRunDir
	// BusyWait is how long Close retries a pool that is busy (files open
	// in it) before it gives up and reports the holders. Default 30 s.
	BusyWait time.Duration
	Logger   *slog.Logger
}

// Pool is a zfs-fuse pool on a sparse file, with everything under Dir.
type Pool struct {
	Name       string // flkrig-<pid>-<n>-<random>
	Dir        string // rig-owned: the vdev file and the mountpoints
	Vdev       string // the sparse file
	Mountpoint string // of the root dataset; children mount below it

	log      *slog.Logger
	owner    *owner
	busyWait time.Duration

	closeOnce sync.Once
	closeErr  error
}

// Dataset is a dataset the rig created in a Pool.
type Dataset struct {
	Name       string // pool/child
	Mountpoint string
}

// CreatePool sweeps what dead rig owners left behind, then creates a pool
// with a unique name on a sparse file in a new directory under opts.Dir. Its
// mountpoints are under that directory, never /<pool>. The pool has
// cachefile=none so that a restarted daemon does not bring back test pools.
func CreatePool(ctx context.Context, opts PoolOptions) (_ *Pool, err error) {
	log := loggerOr(opts.Logger)
	size := opts.Size
	if size == 0 {
		size = DefaultPoolSize
	}
	if size < MinPoolSize {
		return nil, fmt.Errorf("pool size %d: zfs-fuse needs at least %d bytes", size, MinPoolSize)
	}
	if err := Sweep(ctx, SweepOptions{RunDir: opts.RunDir, Logger: log}); err != nil {
		log.Warn("sweep left resources behind", "err", err)
	}
	id := newID()
	dir, err := os.MkdirTemp(opts.Dir, "flocker-rig-"+id+"-")
	if err != nil {
		return nil, fmt.Errorf("creating pool directory: %w", err)
	}
	p := &Pool{
		Name:       namePrefix + id,
		Dir:        dir,
		Vdev:       filepath.Join(dir, vdevFile),
		Mountpoint: filepath.Join(dir, "mnt"),
		log:        log,
		busyWait:   opts.BusyWait,
	}
	if p.busyWait == 0 {
		p.busyWait = closeDestroyWait
	}
	p.owner, err = claim(runDirOr(opts.RunDir), id, record{Pool: p.Name, PoolDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	f, err := os.OpenFile(p.Vdev, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating vdev file: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("sizing vdev file: %w", err)
	}
	if _, err := run(ctx, "zpool", "create", "-o", "cachefile=none", "-m", p.Mountpoint, p.Name, p.Vdev); err != nil {
		return nil, fmt.Errorf("creating pool: %w", err)
	}
	log.Info("created pool", "pool", p.Name, "mountpoint", p.Mountpoint)
	return p, nil
}

// CreateDataset creates POOL/name (name may be nested, like "app/db"; its
// parent must exist) with the given properties and returns where it mounted.
func (p *Pool) CreateDataset(ctx context.Context, name string, props map[string]string) (Dataset, error) {
	if err := checkChildName(name); err != nil {
		return Dataset{}, err
	}
	full := p.Name + "/" + name
	args := []string{"create"}
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-o", k+"="+props[k])
	}
	if _, err := run(ctx, "zfs", append(args, full)...); err != nil {
		return Dataset{}, fmt.Errorf("creating dataset: %w", err)
	}
	out, err := run(ctx, "zfs", "get", "-H", "-o", "value", "mountpoint", full)
	if err != nil {
		return Dataset{}, fmt.Errorf("reading mountpoint: %w", err)
	}
	return Dataset{Name: full, Mountpoint: strings.TrimSpace(out)}, nil
}

// checkChildName accepts a relative dataset path such as app or app/db.
func checkChildName(name string) error {
	bad := name == "" || strings.ContainsAny(name, "@# \t\n")
	for _, part := range strings.Split(name, "/") {
		bad = bad || part == "" || part == "." || part == ".."
	}
	if bad {
		return fmt.Errorf("dataset name %q: want a relative path like app or app/db", name)
	}
	return nil
}

// Close destroys the pool and removes its directory. A busy pool is retried
// for a while (processes killed just before may still hold files); when it
// stays busy the error names the processes holding files under Dir, and the
// directory and the owner record stay so that a later Sweep can finish.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Pool) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := destroyPool(ctx, p.Name, p.busyWait, p.log)
	if err != nil {
		if h := holders(p.Dir, p.Vdev); len(h) > 0 {
			err = fmt.Errorf("%w (files held by %s)", err, strings.Join(h, ", "))
		}
		return errors.Join(err, p.owner.release(false))
	}
	if err := removePoolDir(p.Dir); err != nil {
		return errors.Join(err, p.owner.release(false))
	}
	p.log.Info("destroyed pool", "pool", p.Name)
	return p.owner.release(true)
}

// removePoolDir removes a pool directory once its pool is gone. It refuses
// while anything is still mounted below it: RemoveAll would delete the
// contents of the mounted file system.
func removePoolDir(dir string) error {
	if dir == "" {
		return nil
	}
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("not removing %s: still mounted: %s", dir, strings.Join(mounts, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing pool directory: %w", err)
	}
	return nil
}

// mountsUnder lists mount points at or below dir in this mount namespace.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			found = append(found, mp)
		}
	}
	return found, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// holders names the processes whose cwd, root or open files are under dir,
// except for the file skip (the vdev, which the daemon always holds). It only
// reads /proc links, never stats the files (a stat on a hung FUSE mount would
// hang).
func holders(dir, skip string) []string {
	if dir == "" {
		return nil
	}
	var out []string
	for _, pid := range allPIDs() {
		if holds(pid, dir, skip) {
			out = append(out, fmt.Sprintf("pid %d (%s)", pid, processName(pid)))
		}
	}
	return out
}

func holds(pid int, dir, skip string) bool {
	under := func(link string) bool {
		t, err := os.Readlink(link)
		return err == nil && t != skip && (t == dir || strings.HasPrefix(t, dir+"/"))
	}
	base := fmt.Sprintf("/proc/%d/", pid)
	if under(base+"cwd") || under(base+"root") {
		return true
	}
	fds, err := os.ReadDir(base + "fd")
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if under(base + "fd/" + fd.Name()) {
			return true
		}
	}
	return false
}
