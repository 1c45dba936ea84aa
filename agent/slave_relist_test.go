package agent

import (
	"context"
	"testing"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/snapshot"
)

// A receive that failed but landed (the connection dropped after zfs had
// read the whole stream) leaves a snapshot the slave's list lacks; relist
// after the failure must show it, or the master plans every retry from the
// old base. Real zfs-fuse pool; the snapshot is taken directly, as the
// landed receive would have left it.
func TestSlaveRelistAfterFailedReceive(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	pool := rigtest.Pool(t, rig.PoolOptions{})
	ds := rigtest.Dataset(t, pool, "replica", nil)
	cli := snapshot.NewCLI("", "", rigtest.Logger(t))
	d, err := cli.Detect(ctx)
	testutil.RequireNoError(t, "detecting zfs", err)
	z := snapshot.NewWithDialect(cli, d, rigtest.Logger(t))
	for _, snap := range []string{"flocker-0-1", "flocker-0-4"} {
		testutil.RequireNoError(t, "snapshot "+snap, z.Snapshot(ctx, ds.Name+"@"+snap))
	}
	s := newSlave(datasetConfig{name: "replica", zfs: ds.Name}, z, testLog(t))
	old, err := z.GetSnapshots(ctx, ds.Name+"@flocker-0-1")
	testutil.RequireNoError(t, "reading flocker-0-1", err)
	s.local, s.exists = old, true // what the slave knew before the failed receive

	if !s.relist(ctx) {
		t.Error("relist reported no change though flocker-0-4 is new")
	}
	if top := newest(s.local); top == nil || top.ShortName() != "flocker-0-4" || len(s.local) != 2 {
		t.Fatalf("after relist: %d snapshots, newest %v; want 2, newest flocker-0-4", len(s.local), top)
	}

	// A replica that does not exist yet keeps its (empty) list.
	missing := newSlave(datasetConfig{name: "gone", zfs: pool.Name + "/gone"}, z, testLog(t))
	if missing.relist(ctx) {
		t.Error("relist of a missing replica reported a change")
	}
	if len(missing.local) != 0 || missing.exists {
		t.Fatalf("missing replica: %d snapshots, exists %v", len(missing.local), missing.exists)
	}
}
