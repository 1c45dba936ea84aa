//go:build linux

package agent_test

import (
	"log/slog"
	"testing"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/snapshot"
)

// testLog routes the code's logs into the test's output.
func testLog(t testing.TB) *slog.Logger { return rigtest.Logger(t) }

// fusePool is a zfs-fuse pool of the test rig, with a zfs runner.
type fusePool struct {
	*rig.Pool
	cli *snapshot.CLI
}

// newFusePool creates a pool (destroyed at cleanup with plain `zpool
// destroy`, retried: the HAZARD rule). Cleanups registered later, such as
// closing notifiers that hold files, run before it.
func newFusePool(t *testing.T) *fusePool {
	t.Helper()
	p := rigtest.Pool(t, rig.PoolOptions{Size: 256 << 20})
	return &fusePool{Pool: p, cli: snapshot.NewCLI("", "", testLog(t))}
}

// dataset creates POOL/name and returns it as a target.
func (p *fusePool) dataset(t *testing.T, name string) agent.Target {
	t.Helper()
	d := rigtest.Dataset(t, p.Pool, name, nil)
	return agent.Target{Name: d.Name, Mountpoint: d.Mountpoint}
}
