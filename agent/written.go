package agent

import (
	"context"
	"errors"

	"github.com/flockerha/flocker/snapshot"
)

// ZFSWritten returns the timer's WrittenFunc for a ZFS adapter: the written
// property where the dialect has it; where it has none (zfs-fuse) it answers
// "cannot tell" without running anything.
func ZFSWritten(z *snapshot.ZFS) WrittenFunc {
	return func(ctx context.Context, dataset string) (uint64, bool, error) {
		n, err := z.Written(ctx, dataset)
		if errors.Is(err, snapshot.ErrUnsupported) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		return n, true, nil
	}
}
