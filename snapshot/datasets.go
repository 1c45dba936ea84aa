package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v4"
)

// CreateOptions configures CreateDataset.
type CreateOptions struct {
	Parents    bool              // -p: create missing parents
	Properties map[string]string // -o prop=value each
}

// CreateDataset creates a file system.
func (z *ZFS) CreateDataset(ctx context.Context, name string, opts CreateOptions) error {
	const op = "create"
	props, err := propArgs(opts.Properties)
	if err := validate(op, ValidateDataset(name), err); err != nil {
		return err
	}
	args := []string{"create"}
	if opts.Parents {
		args = append(args, "-p")
	}
	args = append(append(args, props...), name)
	if !opts.Parents && z.useGoZFS(goOpCreate) {
		return z.goZFS(ctx, goOpCreate, op, name, args, func() error {
			_, err := gozfs.CreateFilesystem(name, opts.Properties)
			return err
		})
	}
	_, err = z.zfs(ctx, op, name, args...)
	return err
}

// Exists reports whether a dataset, snapshot or bookmark exists.
func (z *ZFS) Exists(ctx context.Context, name string) (bool, error) {
	const op = "exists"
	if err := validate(op, validateAnyName(name)); err != nil {
		return false, err
	}
	var err error
	if !strings.Contains(name, "#") && z.useGoZFS(goOpExists) {
		err = z.goZFS(ctx, goOpExists, op, name, goZFSListArgs(name), func() error {
			_, err := gozfs.GetDataset(name)
			return err
		})
	} else {
		// get works for bookmarks on every dialect that has them; list
		// would need -t bookmark.
		_, err = z.zfs(ctx, op, name, "get", "-H", "-o", "value", "createtxg", name)
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// DestroyOptions configures DestroyDataset.
type DestroyOptions struct {
	// Recursive (-r) also destroys the dataset's snapshots and children.
	// Clones elsewhere (-R) and forced unmounts (-f) are never used: a
	// dependent clone or a busy file system makes the destroy fail.
	Recursive bool
}

// DestroyDataset destroys a file system (snapshots: DestroySnapshots;
// bookmarks: DestroyBookmark). A mounted file system is unmounted without
// force, so one in use is refused with ErrBusy.
func (z *ZFS) DestroyDataset(ctx context.Context, name string, opts DestroyOptions) error {
	const op = "destroy"
	if err := validate(op, ValidateDataset(name)); err != nil {
		return err
	}
	args := []string{"destroy"}
	flags := gozfs.DestroyDefault
	if opts.Recursive {
		args = append(args, "-r")
		flags |= gozfs.DestroyRecursive
	}
	args = append(args, name)
	z.log.Info("destroying dataset", "dataset", name, "recursive", opts.Recursive)
	if z.useGoZFS(goOpDestroyDataset) {
		return z.retryBusy(ctx, func() error {
			return z.goZFS(ctx, goOpDestroyDataset, op, name, args, func() error { return goDataset(name).Destroy(flags) })
		})
	}
	return z.retryBusy(ctx, func() error {
		_, err := z.zfs(ctx, op, name, args...)
		return err
	})
}

// Retrying a busy unmount. zfs-fuse reports a file system busy for a while
// after its last file was closed: measured 0.1 s on an idle machine, several
// seconds on a loaded 2-core one (internal/rig saw the same). A plain
// unmount that is refused changes nothing, so repeating it is safe; a file
// system that stays busy (a process with a file open in it) still fails,
// after busyRetryFor.
const (
	busyRetryFor      = 5 * time.Second
	busyRetryInterval = 100 * time.Millisecond
)

// retryBusy runs a command that unmounts (destroy, unmount), repeating it
// while zfs says the file system is busy, for up to busyRetryFor.
func (z *ZFS) retryBusy(ctx context.Context, run func() error) error {
	deadline := time.Now().Add(busyRetryFor)
	for {
		err := run()
		if err == nil || !errors.Is(err, ErrBusy) || errors.Is(err, ErrHeld) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(busyRetryInterval):
		}
	}
}

// RenameOptions configures Rename.
type RenameOptions struct {
	Parents bool // -p: create missing parents (file systems only)
}

// Rename renames a file system, or a snapshot within its dataset. OpenZFS
// unmounts and remounts a mounted file system itself; zfs-fuse often refuses
// that with ErrBusy (its own unmount not yet released). Rename then does it
// by hand, as the zfs-fuse quirk needs: plain unmount (never forced), rename,
// retried while busy for up to busyRetryFor, and mount again at the new name
// when it was mounted and canmount=on. A file system with files open stays
// busy and is refused, mounted as before.
func (z *ZFS) Rename(ctx context.Context, from, to string, opts RenameOptions) error {
	const op = "rename"
	snapshot := strings.Contains(from, "@")
	var checks []error
	if snapshot {
		checks = append(checks, ValidateSnapshot(from), ValidateSnapshot(to))
		if datasetOf(from) != datasetOf(to) {
			checks = append(checks, fmt.Errorf("snapshot %s can only be renamed within %s, not to %s", from, datasetOf(from), to))
		}
		if opts.Parents {
			checks = append(checks, errors.New("-p (parents) applies to file systems, not snapshots"))
		}
	} else {
		checks = append(checks, ValidateDataset(from), ValidateDataset(to))
	}
	if err := validate(op, checks...); err != nil {
		return err
	}
	args := []string{"rename"}
	if opts.Parents {
		args = append(args, "-p")
	}
	args = append(args, from, to)
	rename := func() error {
		if z.useGoZFS(goOpRename) {
			// go-zfs puts -p after the operands; getopt takes it there.
			goArgs := []string{"rename", from, to}
			if opts.Parents {
				goArgs = append(goArgs, "-p")
			}
			return z.goZFS(ctx, goOpRename, op, from, goArgs, func() error {
				_, err := goDataset(from).Rename(to, opts.Parents, false)
				return err
			})
		}
		_, err := z.zfs(ctx, op, from, args...)
		return err
	}
	err := rename()
	if err == nil || snapshot || !errors.Is(err, ErrBusy) {
		return err
	}
	// Whether it is mounted now (zfs-fuse's failed rename may have left it
	// unmounted) and should be: canmount=on.
	props, perr := z.GetProperties(ctx, from, "mounted", "canmount")
	if perr != nil {
		return errors.Join(err, perr)
	}
	remount := props["canmount"].Value == "on"
	z.log.Info("rename refused as busy; unmounting and retrying", "dataset", from)
	deadline := time.Now().Add(busyRetryFor)
	for errors.Is(err, ErrBusy) && time.Now().Before(deadline) {
		if uerr := z.Unmount(ctx, from); uerr != nil && !errors.Is(uerr, ErrNotMounted) {
			err = errors.Join(err, uerr)
			break
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(busyRetryInterval):
		}
		err = rename()
	}
	name := to
	if err != nil {
		name = from // put it back as it was
	}
	if remount {
		if merr := z.Mount(ctx, name); merr != nil && !errors.Is(merr, ErrMounted) {
			err = errors.Join(err, merr)
		}
	}
	return err
}

// Clone creates a file system from a snapshot.
func (z *ZFS) Clone(ctx context.Context, snapshot, target string, props map[string]string) error {
	const op = "clone"
	p, err := propArgs(props)
	if err := validate(op, ValidateSnapshot(snapshot), ValidateDataset(target), err); err != nil {
		return err
	}
	args := append(append([]string{"clone"}, p...), snapshot, target)
	if z.useGoZFS(goOpClone) {
		// go-zfs always clones with -p, which would create missing
		// parents: the parent is checked first, so that a missing one
		// fails as it does without -p (ErrNotFound). A parent destroyed
		// between the two is recreated.
		if i := strings.LastIndex(target, "/"); i > 0 {
			parent := target[:i]
			err := z.goZFS(ctx, goOpClone, op, parent, goZFSListArgs(parent), func() error {
				_, err := gozfs.GetDataset(parent)
				return err
			})
			if err != nil {
				return err
			}
		}
		return z.goZFS(ctx, goOpClone, op, target, args, func() error {
			_, err := goDataset(snapshot).Clone(target, props)
			return err
		})
	}
	_, err = z.zfs(ctx, op, target, args...)
	return err
}

// Promote makes a clone independent of its origin: the origin's snapshots up
// to the clone point move to the clone, and the former origin becomes the
// clone's clone.
func (z *ZFS) Promote(ctx context.Context, clone string) error {
	const op = "promote"
	if err := validate(op, ValidateDataset(clone)); err != nil {
		return err
	}
	_, err := z.zfs(ctx, op, clone, "promote", clone)
	return err
}

// Mount mounts a file system at its mountpoint property; ErrMounted when it
// is mounted already.
func (z *ZFS) Mount(ctx context.Context, dataset string) error {
	const op = "mount"
	if err := validate(op, ValidateDataset(dataset)); err != nil {
		return err
	}
	if z.useGoZFS(goOpMount) {
		return z.goZFS(ctx, goOpMount, op, dataset, []string{"mount", dataset}, func() error {
			_, err := goDataset(dataset).Mount(false, nil)
			return err
		})
	}
	_, err := z.zfs(ctx, op, dataset, "mount", dataset)
	return err
}

// Unmount unmounts a file system, never forced: on zfs-fuse a forced unmount
// of a file system with a file open wedges the daemon (and with it every
// zfs-fuse mount on the machine), so no force is offered on any dialect. A
// file system in use gives ErrBusy (after busyRetryFor); one not mounted
// ErrNotMounted.
func (z *ZFS) Unmount(ctx context.Context, dataset string) error {
	const op = "unmount"
	if err := validate(op, ValidateDataset(dataset)); err != nil {
		return err
	}
	if z.useGoZFS(goOpUnmount) {
		return z.retryBusy(ctx, func() error {
			return z.goZFS(ctx, goOpUnmount, op, dataset, []string{"umount", dataset}, func() error {
				_, err := goDataset(dataset).Unmount(false)
				return err
			})
		})
	}
	return z.retryBusy(ctx, func() error {
		_, err := z.zfs(ctx, op, dataset, "unmount", dataset)
		return err
	})
}

// Mountpoint returns a file system's mountpoint property ("legacy" and
// "none" as they are) and whether it is mounted.
func (z *ZFS) Mountpoint(ctx context.Context, dataset string) (path string, mounted bool, err error) {
	if z.useGoZFS(goOpMountpoint) {
		const op = "mountpoint"
		if err := validate(op, ValidateDataset(dataset)); err != nil {
			return "", false, err
		}
		// Two commands: go-zfs's dataset has no mounted field.
		var mp, m string
		err := z.goZFS(ctx, goOpMountpoint, op, dataset, goZFSListArgs(dataset), func() error {
			ds, err := gozfs.GetDataset(dataset)
			if err != nil {
				return err
			}
			mp = ds.Mountpoint
			m, err = goDataset(dataset).GetProperty("mounted")
			return err
		})
		if err != nil {
			return "", false, err
		}
		if mp == "" {
			mp = "-" // go-zfs reads zfs's "-" as empty
		}
		return mp, m == "yes", nil
	}
	m, err := z.GetProperties(ctx, dataset, "mountpoint", "mounted")
	if err != nil {
		return "", false, err
	}
	return m["mountpoint"].Value, m["mounted"].Value == "yes", nil
}

// MountedDataset is a ZFS file system mounted in this mount namespace.
type MountedDataset struct {
	Dataset    string
	Mountpoint string
}

// DatasetForPath returns the ZFS file system holding path, from
// /proc/self/mountinfo (no zfs command): the mounted ZFS file system
// (OpenZFS "zfs", zfs-fuse "fuse.zfs") with the longest mountpoint at or
// above path after symlinks are resolved.
func DatasetForPath(path string) (MountedDataset, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return MountedDataset{}, fmt.Errorf("dataset for %s: %w", path, err)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return MountedDataset{}, fmt.Errorf("dataset for %s: %w", path, err)
	}
	defer f.Close()
	mounts, err := parseZFSMounts(f)
	if err != nil {
		return MountedDataset{}, fmt.Errorf("dataset for %s: %w", path, err)
	}
	m, ok := datasetForPath(mounts, resolved)
	if !ok {
		return MountedDataset{}, fmt.Errorf("dataset for %s: %w: no ZFS file system is mounted at or above %s", path, ErrNotFound, resolved)
	}
	return m, nil
}

// parseZFSMounts reads mountinfo lines and keeps the ZFS ones. Fields: ID
// PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER;
// the mountpoint has spaces and other specials escaped as \NNN octal.
func parseZFSMounts(r io.Reader) ([]MountedDataset, error) {
	var mounts []MountedDataset
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			return nil, fmt.Errorf("mountinfo line %q: malformed", sc.Text())
		}
		fstype, source := fields[sep+1], fields[sep+2]
		if fstype != "zfs" && fstype != "fuse.zfs" {
			continue
		}
		mounts = append(mounts, MountedDataset{Dataset: unescapeOctal(source), Mountpoint: unescapeOctal(fields[4])})
	}
	return mounts, sc.Err()
}

// datasetForPath picks the mount with the longest mountpoint containing
// path; the last of equal ones wins (a later mount covers an earlier one).
func datasetForPath(mounts []MountedDataset, path string) (MountedDataset, bool) {
	var best MountedDataset
	found := false
	for _, m := range mounts {
		if !pathWithin(path, m.Mountpoint) {
			continue
		}
		if !found || len(m.Mountpoint) >= len(best.Mountpoint) {
			best, found = m, true
		}
	}
	return best, found
}

func pathWithin(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// unescapeOctal undoes the kernel's \NNN escapes in mountinfo fields.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctalByte(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isOctalByte reports three octal digits that fit in a byte (\000 to \377).
func isOctalByte(s string) bool {
	return len(s) == 3 && '0' <= s[0] && s[0] <= '3' &&
		'0' <= s[1] && s[1] <= '7' && '0' <= s[2] && s[2] <= '7'
}
