//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/internal/changes"
	"github.com/flockerha/flocker/internal/testutil"
	"golang.org/x/sys/unix"
)

// Host matrix timings: fanotify events are queued inside the system call, so
// a report normally follows within milliseconds; the deadline allows for a
// loaded 2-core machine and the quiet window for a slow reader.
const (
	hostDeadline = 20 * time.Second
	hostQuiet    = 500 * time.Millisecond
)

// What fanotify cannot see, in every mode: asserted by the matrices.
var fanotifyMissedAlways = map[string]string{
	"aio-write":        "Linux AIO completion raises no fanotify event (closing the file does)",
	"mmap-store":       "stores through a shared mapping raise no fanotify event, nor does their writeback",
	"mmap-store-msync": "msync writes back without a fanotify event",
}

// fanotifyFIDMissed: a filesystem mark in FID mode (filesystems with an fsid).
var fanotifyFIDMissed = fanotifyMissedAlways

// fanotifyFDMissed: fd mode (FUSE, which has no fsid) adds every event that
// carries no path (fd mode needs one to open the event's descriptor) and
// every event that only FID mode offers.
var fanotifyFDMissed = func() map[string]string {
	m := maps.Clone(fanotifyMissedAlways)
	for _, op := range []string{"truncate", "ftruncate", "open-trunc"} {
		m[op] = "truncation's MODIFY carries no path, and fd mode drops such events"
	}
	m["creat"] = "CREATE needs FID mode; the new file shows only when closed (CLOSE_WRITE)"
	for _, op := range []string{"unlink", "rename-inside", "rename-across-dirs", "rename-out-of", "mkdir", "rmdir", "link", "symlink", "mknod"} {
		m[op] = "directory events need FID mode"
	}
	for _, op := range []string{"chmod", "chown", "utimensat"} {
		m[op] = "ATTRIB needs FID mode"
	}
	return m
}()

// zfsFuseUnsupported: what zfs-fuse refuses (for the watched dataset and
// for its sibling, where the elsewhere operations run).
var zfsFuseUnsupported = map[string]string{
	"fallocate": "zfs-fuse has no fallocate", "elsewhere/fallocate": "zfs-fuse has no fallocate",
	"setxattr": "zfs-fuse has no xattrs", "elsewhere/setxattr": "zfs-fuse has no xattrs",
	"removexattr": "zfs-fuse has no xattrs", "elsewhere/removexattr": "zfs-fuse has no xattrs",
	"getxattr": "zfs-fuse has no xattrs",
}

func newFanotify(t *testing.T, tg agent.Target) *agent.Fanotify {
	t.Helper()
	n, err := agent.NewFanotify(testLog(t))
	testutil.RequireNoError(t, "fanotify", err)
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("closing fanotify: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Add(ctx, tg); err != nil {
		t.Fatalf("fanotify Add(%s): %v", tg.Mountpoint, err)
	}
	return n
}

func TestFanotifyMatrixTmpfs(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	tg := agent.Target{Name: "tmpfs", Mountpoint: changes.Tmpfs(t)}
	env := &changes.Env{Dir: tg.Mountpoint, Other: changes.Tmpfs(t), Aside: t.TempDir()}
	n := newFanotify(t, tg)
	if mark, _ := n.Mark(tg.Name); mark != agent.MarkFilesystemFID {
		t.Fatalf("tmpfs has an fsid: want %q, got %q", agent.MarkFilesystemFID, mark)
	}
	changes.RunMatrix(t, n, tg, changes.All(env), changes.Expectations{
		Tier: agent.TierFanotify, Deadline: hostDeadline, Quiet: hostQuiet, Missed: fanotifyFIDMissed,
	})
}

func TestFanotifyMatrixZFSFuse(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	p := newFusePool(t)
	tg := p.dataset(t, "watched")
	other := p.dataset(t, "sibling")
	env := &changes.Env{Dir: tg.Mountpoint, Other: other.Mountpoint, Aside: t.TempDir()}
	n := newFanotify(t, tg)
	mark, why := n.Mark(tg.Name)
	if mark != agent.MarkFilesystemFD {
		t.Fatalf("zfs-fuse has no fsid: want %q, got %q", agent.MarkFilesystemFD, mark)
	}
	t.Logf("mark: %s (refused: %s)", mark, why)
	changes.RunMatrix(t, n, tg, changes.All(env), changes.Expectations{
		Tier: agent.TierFanotify, Deadline: hostDeadline, Quiet: hostQuiet,
		Missed: fanotifyFDMissed, Unsupported: zfsFuseUnsupported,
	})
}

// fd mode marks the filesystem, not the mount: a write through a bind mount
// of the dataset (as a container volume makes) is reported, which a mount
// mark on the dataset's own mountpoint would miss.
func TestFanotifyFDModeSeesBindMounts(t *testing.T) {
	testutil.RequireRoot(t)
	p := newFusePool(t)
	tg := p.dataset(t, "watched")
	bind := filepath.Join(t.TempDir(), "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(tg.Mountpoint, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { changes.Unmount(t, bind) }) // before the pool's destroy
	n := newFanotify(t, tg)
	if mark, _ := n.Mark(tg.Name); mark != agent.MarkFilesystemFD {
		t.Fatalf("mark %q, want %q", mark, agent.MarkFilesystemFD)
	}
	if err := os.WriteFile(filepath.Join(bind, "via-bind"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-n.Changes():
		if c.Dataset != tg.Name || c.Tier != agent.TierFanotify {
			t.Fatalf("unexpected change %+v", c)
		}
		t.Logf("write through the bind mount reported by %s", c.Hook)
	case <-time.After(hostDeadline):
		t.Fatal("a write through a bind mount of the dataset was not reported")
	}
}

// The HAZARD rule: an open file on a zfs-fuse dataset keeps its pool from
// being destroyed. After a burst of writes has been reported, this process
// holds no descriptor under the dataset, and the pool can be destroyed while
// the notifier still watches it (a mark does not hold the filesystem).
func TestFanotifyHoldsNoFilesOnTheDataset(t *testing.T) {
	testutil.RequireRoot(t)
	p := newFusePool(t)
	tg := p.dataset(t, "watched")
	n := newFanotify(t, tg)
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(tg.Mountpoint, fmt.Sprint("f", i%5)), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-n.Changes():
	case <-time.After(hostDeadline):
		t.Fatal("no change reported for 50 writes")
	}
	time.Sleep(hostQuiet) // let the reader drain the burst
	links, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, tg.Mountpoint) {
			t.Errorf("descriptor %s is open on %s", l, target)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("pool could not be destroyed while watched: %v", err)
	}
}
