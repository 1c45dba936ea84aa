//go:build linux

package agent

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/flockerha/flocker/snapshot"
	"golang.org/x/sys/unix"
)

// CLIBlockZFS answers the block tier's questions with the zfs and zpool
// tools.
type CLIBlockZFS struct {
	CLI *snapshot.CLI
}

var _ BlockZFS = CLIBlockZFS{}

// PoolDevices returns the block devices of every leaf vdev of pool (data,
// log, cache and spare), from `zpool list -vHP`. A leaf that is not a block
// device (a file vdev) is an error: its writes reach a filesystem, whose
// device also carries everything else written there.
func (z CLIBlockZFS) PoolDevices(ctx context.Context, pool string) ([]uint32, error) {
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
func (z CLIBlockZFS) Written(ctx context.Context, dataset string) (uint64, bool, error) {
	out, err := z.CLI.ZFS(ctx, "get", "-Hp", "-o", "value", "written", dataset)
	if err != nil {
		if ce, ok := err.(*snapshot.CmdError); ok && strings.Contains(ce.Stderr, "invalid property") {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("reading written of %s: %w", dataset, err)
	}
	v := strings.TrimSpace(string(out))
	if v == "-" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("written of %s: %q is not a number", dataset, v)
	}
	return n, true, nil
}
