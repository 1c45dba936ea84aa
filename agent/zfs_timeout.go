package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flockerha/flocker/snapshot"
)

// DefaultZFSTimeout bounds one zfs command that is not a stream. A hung
// command (a wedged pool, a stuck daemon) must not stop a dataset's loop
// for good: it is killed, the operation fails like any other, is logged
// and retried. Two minutes is far above what a snapshot, hold or listing
// takes even on a loaded zfs-fuse host.
const DefaultZFSTimeout = 2 * time.Minute

// ErrZFSTimeout is a zfs command that did not finish within its bound.
var ErrZFSTimeout = errors.New("zfs command timed out")

// timedZFS gives each zfs command that is not a stream a deadline. Sends
// and receives are left alone: they last as long as the data, and the
// transport bounds them (flow control, ack timeout, connection loss).
type timedZFS struct {
	ZFS
	limit time.Duration
}

func withTimeout(z ZFS, limit time.Duration) ZFS {
	if limit <= 0 {
		limit = DefaultZFSTimeout
	}
	return timedZFS{ZFS: z, limit: limit}
}

// bound runs op with the deadline and names the timeout in its error (the
// parent's own end stays a plain cancellation).
func bound[T any](parent context.Context, limit time.Duration, op string, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(parent, limit)
	defer cancel()
	v, err := f(ctx)
	if err != nil && parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %s gave no answer within %v: %w", ErrZFSTimeout, op, limit, err)
	}
	return v, err
}

func bound0(parent context.Context, limit time.Duration, op string, f func(context.Context) error) error {
	_, err := bound(parent, limit, op, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

func (t timedZFS) ListSnapshots(ctx context.Context, dataset string) ([]snapshot.Snapshot, error) {
	return bound(ctx, t.limit, "list", func(ctx context.Context) ([]snapshot.Snapshot, error) { return t.ZFS.ListSnapshots(ctx, dataset) })
}

func (t timedZFS) GetSnapshots(ctx context.Context, names ...string) ([]snapshot.Snapshot, error) {
	return bound(ctx, t.limit, "list", func(ctx context.Context) ([]snapshot.Snapshot, error) { return t.ZFS.GetSnapshots(ctx, names...) })
}

func (t timedZFS) Snapshot(ctx context.Context, names ...string) error {
	return bound0(ctx, t.limit, "snapshot", func(ctx context.Context) error { return t.ZFS.Snapshot(ctx, names...) })
}

func (t timedZFS) DestroySnapshots(ctx context.Context, names ...string) error {
	return bound0(ctx, t.limit, "destroy", func(ctx context.Context) error { return t.ZFS.DestroySnapshots(ctx, names...) })
}

func (t timedZFS) Hold(ctx context.Context, tag string, snapshots ...string) error {
	return bound0(ctx, t.limit, "hold", func(ctx context.Context) error { return t.ZFS.Hold(ctx, tag, snapshots...) })
}

func (t timedZFS) Release(ctx context.Context, tag string, snapshots ...string) error {
	return bound0(ctx, t.limit, "release", func(ctx context.Context) error { return t.ZFS.Release(ctx, tag, snapshots...) })
}

func (t timedZFS) Holds(ctx context.Context, dataset string) ([]snapshot.SnapshotHolds, error) {
	return bound(ctx, t.limit, "holds", func(ctx context.Context) ([]snapshot.SnapshotHolds, error) { return t.ZFS.Holds(ctx, dataset) })
}

func (t timedZFS) CreateBookmark(ctx context.Context, source, bookmark string) error {
	return bound0(ctx, t.limit, "bookmark", func(ctx context.Context) error { return t.ZFS.CreateBookmark(ctx, source, bookmark) })
}

func (t timedZFS) ListBookmarks(ctx context.Context, dataset string) ([]snapshot.Bookmark, error) {
	return bound(ctx, t.limit, "list", func(ctx context.Context) ([]snapshot.Bookmark, error) { return t.ZFS.ListBookmarks(ctx, dataset) })
}

func (t timedZFS) DestroyBookmark(ctx context.Context, bookmark string) error {
	return bound0(ctx, t.limit, "destroy", func(ctx context.Context) error { return t.ZFS.DestroyBookmark(ctx, bookmark) })
}

func (t timedZFS) EstimateSend(ctx context.Context, snap string, opts snapshot.SendOptions) (int64, error) {
	return bound(ctx, t.limit, "send -nP", func(ctx context.Context) (int64, error) { return t.ZFS.EstimateSend(ctx, snap, opts) })
}

func (t timedZFS) ResumeToken(ctx context.Context, dataset string) (string, error) {
	return bound(ctx, t.limit, "get receive_resume_token", func(ctx context.Context) (string, error) { return t.ZFS.ResumeToken(ctx, dataset) })
}

func (t timedZFS) AbortReceive(ctx context.Context, dataset string) error {
	return bound0(ctx, t.limit, "receive -A", func(ctx context.Context) error { return t.ZFS.AbortReceive(ctx, dataset) })
}

func (t timedZFS) GetProperty(ctx context.Context, name, prop string) (snapshot.Property, error) {
	return bound(ctx, t.limit, "get", func(ctx context.Context) (snapshot.Property, error) { return t.ZFS.GetProperty(ctx, name, prop) })
}

func (t timedZFS) SetProperty(ctx context.Context, name, prop, value string) error {
	return bound0(ctx, t.limit, "set", func(ctx context.Context) error { return t.ZFS.SetProperty(ctx, name, prop, value) })
}

func (t timedZFS) Mountpoint(ctx context.Context, dataset string) (string, bool, error) {
	type mp struct {
		path    string
		mounted bool
	}
	v, err := bound(ctx, t.limit, "get mountpoint", func(ctx context.Context) (mp, error) {
		p, m, err := t.ZFS.Mountpoint(ctx, dataset)
		return mp{p, m}, err
	})
	return v.path, v.mounted, err
}

func (t timedZFS) Mount(ctx context.Context, dataset string) error {
	return bound0(ctx, t.limit, "mount", func(ctx context.Context) error { return t.ZFS.Mount(ctx, dataset) })
}

func (t timedZFS) Unmount(ctx context.Context, dataset string) error {
	return bound0(ctx, t.limit, "unmount", func(ctx context.Context) error { return t.ZFS.Unmount(ctx, dataset) })
}

func (t timedZFS) Rollback(ctx context.Context, snap string) error {
	return bound0(ctx, t.limit, "rollback", func(ctx context.Context) error { return t.ZFS.Rollback(ctx, snap) })
}
