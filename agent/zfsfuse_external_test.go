//go:build linux

package agent_test

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

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/snapshot"
)

// testLog routes the code's logs into the test's output.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var poolSeq atomic.Int32

// fusePool is a zfs-fuse pool for one test (until internal/rig lands).
type fusePool struct {
	name, mountpoint string
	cli              *snapshot.CLI
	destroyed        bool
}

// newFusePool creates a pool with a name unique on this machine on a sparse
// file, and destroys it at cleanup with plain `zpool destroy`, retried: never
// -f, which wedges zfs-fuse when a file is open (COMMON.md HAZARD). Cleanups
// registered later (notifiers holding files) run before it.
func newFusePool(t *testing.T) *fusePool {
	t.Helper()
	testutil.RequireRoot(t)
	cli := snapshot.NewCLI("", "", testLog(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := cli.Zpool(ctx, "list")
	testutil.RequireNoError(t, "zfs-fuse answering", err)
	dir := t.TempDir()
	p := &fusePool{name: fmt.Sprintf("flknotify-%d-%d", os.Getpid(), poolSeq.Add(1)), mountpoint: filepath.Join(dir, "mnt"), cli: cli}
	img := filepath.Join(dir, "pool.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Zpool(ctx, "create", "-m", p.mountpoint, p.name, img); err != nil {
		t.Fatalf("creating pool: %v", err)
	}
	t.Cleanup(func() {
		if !p.destroyed {
			if err := p.destroy(time.Minute); err != nil {
				t.Error(err)
			}
		}
	})
	return p
}

// destroy runs plain `zpool destroy` until it succeeds or wait passes.
func (p *fusePool) destroy(wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		if _, err = p.cli.Zpool(ctx, "destroy", p.name); err == nil {
			p.destroyed = true
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("destroying pool %s: %w", p.name, err)
}

// dataset creates POOL/name and returns it as a target.
func (p *fusePool) dataset(t *testing.T, name string, props ...string) agent.Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := p.name + "/" + name
	args := []string{"create"}
	for _, kv := range props {
		args = append(args, "-o", kv)
	}
	if _, err := p.cli.ZFS(ctx, append(args, full)...); err != nil {
		t.Fatalf("creating dataset: %v", err)
	}
	return agent.Target{Name: full, Mountpoint: filepath.Join(p.mountpoint, name)}
}
