//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/flockerha/flocker/snapshot"
	"golang.org/x/sys/unix"
)

// ZFSBlockQueries answers the block tier's questions: the pool's vdevs
// from the zpool tool, `written` through the ZFS adapter.
type ZFSBlockQueries struct {
	CLI *snapshot.CLI
	ZFS *snapshot.ZFS
}

var _ BlockZFS = ZFSBlockQueries{}

// NewZFSBlockQueries detects the ZFS dialect cli runs and returns the
// block tier's queries over it.
func NewZFSBlockQueries(ctx context.Context, cli *snapshot.CLI, log *slog.Logger) (ZFSBlockQueries, error) {
	z, err := snapshot.New(ctx, cli, log)
	if err != nil {
		return ZFSBlockQueries{}, fmt.Errorf("block tier: %w", err)
	}
	return ZFSBlockQueries{CLI: cli, ZFS: z}, nil
}

// PoolDevices returns the block devices of every leaf vdev of pool (data,
// log, cache and spare), from `zpool list -vHP`. A leaf that is not a block
// device (a file vdev) is an error: its writes reach a filesystem, whose
// device also carries everything else written there.
func (z ZFSBlockQueries) PoolDevices(ctx context.Context, pool string) ([]uint32, error) {
	out, err := z.CLI.Zpool(ctx, "list", "-v", "-H", "-P", pool)
	if err != nil {
		return nil, fmt.Errorf("listing the vdevs of pool %s: %w", pool, err)
	}
	paths := vdevPaths(string(out))
	if len(paths) == 0 {
		return nil, fmt.Errorf("pool %s: zpool list shows no vdev path", pool)
	}
	var devs []uint32
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return nil, fmt.Errorf("pool %s: vdev %s: %w", pool, p, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return nil, fmt.Errorf("pool %s: vdev %s is not a block device (a file vdev writes through a filesystem): the block tier cannot watch it", pool, p)
		}
		devs = append(devs, kernelDev(st.Rdev))
	}
	return devs, nil
}

// vdevPaths picks the leaf vdev paths out of `zpool list -vHP` output: the
// first field of a line, when it is an absolute path.
func vdevPaths(out string) []string {
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		for _, f := range strings.Split(line, "\t") {
			if f == "" {
				continue
			}
			if strings.HasPrefix(f, "/") {
				paths = append(paths, f)
			}
			break
		}
	}
	return paths
}

// Written reads a dataset's `written` property: bytes written since its
// newest snapshot. ok is false where ZFS has no such property (zfs-fuse).
func (z ZFSBlockQueries) Written(ctx context.Context, dataset string) (uint64, bool, error) {
	n, err := z.ZFS.Written(ctx, dataset)
	if errors.Is(err, snapshot.ErrUnsupported) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return n, true, nil
}
