//go:build linux

package agent

import (
	"context"
	"fmt"

	"github.com/flockerha/flocker/bpf"
	"golang.org/x/sys/unix"
)

// Feature is one capability with the kernel's own reason when it is missing.
type Feature = bpf.Feature

// FanotifyReport is what the fanotify tier can use for one path's filesystem.
type FanotifyReport struct {
	Path string // the path probed (a dataset's mountpoint, or "/")
	// FSID: statfs reports a non-zero f_fsid. FID-mode groups can only mark
	// whole filesystems (or mounts) that have one; FUSE (zfs-fuse) has none.
	FSID bool
	// Fanotify: fanotify_init (fd mode) and FAN_MARK_FILESYSTEM on Path.
	Fanotify Feature
	// FanotifyFID: the same with FAN_REPORT_FID, which directory events
	// (create, delete, rename, attrib) need.
	FanotifyFID Feature
}

// Events each probe mark asks for: fd mode can only report content changes;
// FID mode adds the directory and metadata events.
const (
	fdModeEvents  = unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE
	fidModeEvents = fdModeEvents | unix.FAN_ATTRIB | unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVE
)

// ProbeFanotify asks the kernel whether fanotify groups can be created and can
// mark path's filesystem, in fd mode and in FID mode. It fails only when path
// cannot be examined at all, or when ctx ends first: a FUSE filesystem whose
// daemon stopped answering blocks statfs and fanotify_mark indefinitely, so
// the work runs aside and is abandoned (the blocked thread ends with the
// process) rather than hanging the caller.
func ProbeFanotify(ctx context.Context, path string) (FanotifyReport, error) {
	type result struct {
		r   FanotifyReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := probeFanotify(path)
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-ctx.Done():
		return FanotifyReport{}, fmt.Errorf("fanotify probe of %s did not finish (is a FUSE daemon behind it answering?): %w", path, ctx.Err())
	}
}

func probeFanotify(path string) (FanotifyReport, error) {
	r := FanotifyReport{Path: path}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return r, fmt.Errorf("fanotify probe: statfs %s: %w", path, err)
	}
	r.FSID = st.Fsid.Val[0] != 0 || st.Fsid.Val[1] != 0
	r.Fanotify = fanotifyMark(path, unix.FAN_CLASS_NOTIF, fdModeEvents)
	r.FanotifyFID = fanotifyMark(path, unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_FID, fidModeEvents)
	return r, nil
}

// fanotifyMark creates a group with the given class and report flags, marks
// path's filesystem, and closes the group again (which drops the mark).
func fanotifyMark(path string, initFlags uint, mask uint64) Feature {
	fd, err := unix.FanotifyInit(initFlags|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return bpf.Missing(fmt.Errorf("fanotify_init: %w", err))
	}
	defer unix.Close(fd)
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, mask, unix.AT_FDCWD, path); err != nil {
		return bpf.Missing(fmt.Errorf("fanotify_mark(FAN_MARK_FILESYSTEM, %s): %w", path, err))
	}
	return bpf.Have()
}
