// Package rigtest wraps package rig for tests: each helper checks that the
// test may run (root, tools installed) through testutil, so outside CI a
// missing piece skips with the reason and with CI=true it fails; it registers
// Close with t.Cleanup, which runs on failure too, and sends rig logs to t.Log.
//
// Order matters for cleanup (t.Cleanup is last in, first out): create pools
// before the network whose processes use them, so those processes are killed
// before their pool is destroyed.
package rigtest

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/testutil"
)

// Logger returns a logger that writes to t.Log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		_, err := exec.LookPath(tool)
		testutil.RequireNoError(t, tool+" (run make setup)", err)
	}
}

// ZFS holds the zfs-fuse daemon for the test, starting it when needed.
func ZFS(t testing.TB) *rig.ZFS {
	t.Helper()
	testutil.RequireRoot(t)
	requireTools(t, "zfs-fuse", "zpool", "zfs")
	z, err := rig.EnsureZFS(context.Background(), rig.ZFSOptions{Logger: Logger(t), Watchdog: true})
	if err != nil {
		t.Fatalf("zfs-fuse: %v", err)
	}
	t.Cleanup(func() {
		if err := z.Close(); err != nil {
			t.Errorf("releasing zfs-fuse: %v", err)
		}
	})
	return z
}

// Pool creates a pool for the test (holding the daemon while it exists) and
// destroys it at cleanup.
func Pool(t testing.TB, opts rig.PoolOptions) *rig.Pool {
	t.Helper()
	ZFS(t)
	if opts.Logger == nil {
		opts.Logger = Logger(t)
	}
	p, err := rig.CreatePool(context.Background(), opts)
	if err != nil {
		t.Fatalf("creating pool: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("destroying pool %s: %v", p.Name, err)
		}
	})
	return p
}

// Dataset creates POOL/name for the test; the pool's cleanup removes it.
func Dataset(t testing.TB, p *rig.Pool, name string, props map[string]string) rig.Dataset {
	t.Helper()
	d, err := p.CreateDataset(context.Background(), name, props)
	if err != nil {
		t.Fatalf("creating dataset: %v", err)
	}
	return d
}

// Network builds hosts A, B and C for the test and removes them at cleanup.
func Network(t testing.TB, opts rig.NetworkOptions) *rig.Network {
	t.Helper()
	testutil.RequireRoot(t)
	requireTools(t, "nsenter")
	if opts.Logger == nil {
		opts.Logger = Logger(t)
	}
	n, err := rig.NewNetwork(context.Background(), opts)
	if err != nil {
		t.Fatalf("building network: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("removing network %s: %v", n.ID, err)
		}
	})
	return n
}

// KernelFS mounts tracefs and bpffs when missing (they stay mounted).
func KernelFS(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	if err := rig.EnsureKernelFS(); err != nil {
		t.Fatalf("mounting tracefs/bpffs: %v", err)
	}
}
