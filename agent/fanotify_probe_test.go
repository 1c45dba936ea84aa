//go:build linux

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/snapshot"
	"golang.org/x/sys/unix"
)

// testLog routes the code's debug logs into the test's output.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var poolSeq atomic.Int32

// zfsFusePool creates a pool on a sparse file, mounted under a temporary
// directory, with a name unique on this machine, and destroys it afterwards.
func zfsFusePool(t *testing.T, cli *snapshot.CLI) (name, mountpoint string) {
	t.Helper()
	dir := t.TempDir()
	name = fmt.Sprintf("flkprobe-%d-%d", os.Getpid(), poolSeq.Add(1))
	img := filepath.Join(dir, "pool.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	mountpoint = filepath.Join(dir, "mnt")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.Zpool(ctx, "create", "-m", mountpoint, name, img); err != nil {
		t.Fatalf("creating pool: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Never `destroy -f` on zfs-fuse: forcing the unmount while any file
		// is open leaves the daemon looping forever in its unmount callback,
		// and every mount it serves hangs. A plain destroy refuses a busy pool.
		var err error
		for ctx.Err() == nil {
			if _, err = cli.Zpool(ctx, "destroy", name); err == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Errorf("destroying pool %s: %v", name, err)
	})
	return name, mountpoint
}

// zfsFuseMountsAnswer checks that the zfs-fuse daemon serves its existing
// mounts: its CLI socket can answer while its FUSE side hangs, and then every
// statfs on its mounts blocks (and a pool made now could not be destroyed).
func zfsFuseMountsAnswer() error {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || (f[2] != "fuse.zfs" && f[1] != "/zfs-kstat") {
			continue
		}
		done := make(chan error, 1)
		go func() { // abandoned if it blocks; the thread ends with the test binary
			var st unix.Statfs_t
			done <- unix.Statfs(f[1], &st)
		}()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("statfs %s: %w", f[1], err)
			}
		case <-time.After(2 * time.Second):
			return fmt.Errorf("statfs %s blocked for 2s: the daemon is not serving its mounts", f[1])
		}
	}
	return nil
}

// zfs-fuse is FUSE: statfs reports no fsid, so FID-mode fanotify cannot mark
// its filesystems; the kernel's refusal must be the reason.
func TestProbeMountpointZFSFuse(t *testing.T) {
	testutil.RequireRoot(t)
	cli := snapshot.NewCLI("", "", testLog(t))
	_, err := cli.Zpool(context.Background(), "list")
	testutil.RequireNoError(t, "zfs tools answering (zfs-fuse daemon running?)", err)
	testutil.RequireNoError(t, "zfs-fuse answering FUSE requests", zfsFuseMountsAnswer())
	_, mnt := zfsFusePool(t, cli)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := ProbeFanotify(ctx, mnt)
	if err != nil {
		t.Fatal(err)
	}
	if r.FSID {
		t.Errorf("%s: zfs-fuse reported an fsid", mnt)
	}
	if r.FanotifyFID.Available || !strings.Contains(r.FanotifyFID.Reason, "fanotify_mark(FAN_MARK_FILESYSTEM, "+mnt+")") {
		t.Errorf("fanotify_fid %+v: want the kernel's refusal to mark a filesystem without fsid", r.FanotifyFID)
	}
	t.Logf("fd-mode fanotify on zfs-fuse: %+v", r.Fanotify)
}

func TestProbeFanotifyMissingPath(t *testing.T) {
	_, err := ProbeFanotify(context.Background(), "/nonexistent/flocker-probe")
	if err == nil || !strings.Contains(err.Error(), "statfs /nonexistent/flocker-probe") {
		t.Fatalf("want an error naming the path, got %v", err)
	}
}
