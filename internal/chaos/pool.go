package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// FillerName is the dataset FillPool creates in a pool.
const FillerName = "chaos-filler"

// FillPool makes pool full without writing data: a dataset whose
// reservation takes all the space left but slack bytes, so ZFS refuses
// every other write in the pool (ENOSPC) as it would in a pool filled by
// data. The returned function destroys the filler.
func FillPool(ctx context.Context, pool string, slack int64) (undo func() error, err error) {
	ds := pool + "/" + FillerName
	for try := 0; try < 5; try++ {
		out, err := zfsOut(ctx, "get", "-Hp", "-o", "value", "available", pool)
		if err != nil {
			return nil, err
		}
		avail, err := strconv.ParseInt(out, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("available of %s: %q: %w", pool, out, err)
		}
		// Writes in flight shrink the space between the two commands:
		// leave more room on each retry.
		reserve := avail - slack - int64(try)*(1<<20)
		if reserve <= 0 {
			return nil, fmt.Errorf("pool %s has only %d bytes available", pool, avail)
		}
		// Never mounted: a mounted zfs-fuse dataset can be busy for a
		// while after anything looked at it, and then refuses destroy.
		if _, err = zfsOut(ctx, "create", "-o", "canmount=off", "-o", "reservation="+strconv.FormatInt(reserve, 10), ds); err == nil {
			return func() error { return destroy(context.WithoutCancel(ctx), ds) }, nil
		}
		if !strings.Contains(err.Error(), "out of space") && !strings.Contains(err.Error(), "size is greater than available space") {
			return nil, err
		}
	}
	return nil, fmt.Errorf("filling %s: space kept moving", pool)
}

// destroy destroys ds, retrying a busy one for a while (plain destroy,
// never forced: see internal/rig on zfs-fuse).
func destroy(ctx context.Context, ds string) error {
	var err error
	for try := 0; try < 30; try++ {
		if _, err = zfsOut(ctx, "destroy", ds); err == nil || !strings.Contains(err.Error(), "busy") {
			return err
		}
		time.Sleep(time.Second)
	}
	return err
}

func zfsOut(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "zfs", args...)
	cmd.WaitDelay = 5 * time.Second // a forked mount helper may hold the pipes
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("zfs %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}
