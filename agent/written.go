package agent

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/flockerha/flocker/snapshot"
)

// ZFSWritten returns the timer's WrittenFunc for a ZFS of the given
// features: `zfs get -Hp -o value written DATASET` where the dialect has the
// property; where it has none (zfs-fuse) it answers "cannot tell" without
// running anything.
func ZFSWritten(cli *snapshot.CLI, f snapshot.Features) WrittenFunc {
	if !f.WrittenProperty {
		return func(context.Context, string) (uint64, bool, error) { return 0, false, nil }
	}
	return func(ctx context.Context, dataset string) (uint64, bool, error) {
		out, err := cli.ZFS(ctx, "get", "-Hp", "-o", "value", "written", dataset)
		if err != nil {
			return 0, false, fmt.Errorf("reading written of %s: %w", dataset, err)
		}
		v := strings.TrimSpace(string(out))
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("written of %s: %q is not a byte count", dataset, v)
		}
		return n, true, nil
	}
}
