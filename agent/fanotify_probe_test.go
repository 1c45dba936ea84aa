//go:build linux

package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
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

// zfs-fuse is FUSE: statfs reports no fsid, so FID-mode fanotify cannot mark
// its filesystems; the kernel's refusal must be the reason.
func TestProbeMountpointZFSFuse(t *testing.T) {
	// The rig restarts a wedged daemon (CLI or FUSE side) before the pool.
	mnt := rigtest.Pool(t, rig.PoolOptions{Size: 128 << 20}).Mountpoint

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
