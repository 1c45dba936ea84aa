package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/flockerha/flocker/snapshot"
)

// What the agent needs from ZFS, declared here by its consumers in small
// pieces (the master and the slave each take only theirs), so that tests
// wrap one method to inject a fault. snapshot's ZFS adapter provides all of
// it.

// snapshotLister reads snapshot lists: once at start, then one snapshot at
// a time by name (the lists are kept in memory, never re-listed per cycle).
type snapshotLister interface {
	ListSnapshots(ctx context.Context, dataset string) ([]snapshot.Snapshot, error)
	GetSnapshots(ctx context.Context, names ...string) ([]snapshot.Snapshot, error)
}

// snapshotter creates and prunes snapshots.
type snapshotter interface {
	Snapshot(ctx context.Context, names ...string) error
	DestroySnapshots(ctx context.Context, names ...string) error
}

// holder keeps the replication base from being destroyed.
type holder interface {
	Hold(ctx context.Context, tag string, snapshots ...string) error
	Release(ctx context.Context, tag string, snapshots ...string) error
	Holds(ctx context.Context, dataset string) ([]snapshot.SnapshotHolds, error)
}

// bookmarker keeps the base usable as an incremental source after its
// snapshot is gone (OpenZFS only).
type bookmarker interface {
	CreateBookmark(ctx context.Context, source, bookmark string) error
	ListBookmarks(ctx context.Context, dataset string) ([]snapshot.Bookmark, error)
	DestroyBookmark(ctx context.Context, bookmark string) error
}

// sender writes send streams.
type sender interface {
	Send(ctx context.Context, snap string, w io.Writer, opts snapshot.SendOptions) (int64, error)
	SendResume(ctx context.Context, token string, w io.Writer) (int64, error)
	EstimateSend(ctx context.Context, snap string, opts snapshot.SendOptions) (int64, error)
	// ResumeInfo reads a peer's receive_resume_token: which of our
	// snapshots it continues and how much is left.
	ResumeInfo(ctx context.Context, token string) (snapshot.Resume, error)
}

// receiver applies send streams.
type receiver interface {
	Receive(ctx context.Context, target string, r io.Reader, opts snapshot.ReceiveOptions) (int64, error)
	ResumeToken(ctx context.Context, dataset string) (string, error)
	AbortReceive(ctx context.Context, dataset string) error
}

// properties reads and sets dataset properties (readonly on the replica,
// referenced for a send estimate, mountpoint).
type properties interface {
	GetProperty(ctx context.Context, name, prop string) (snapshot.Property, error)
	SetProperty(ctx context.Context, name, prop, value string) error
	Mountpoint(ctx context.Context, dataset string) (path string, mounted bool, err error)
}

// mounter remounts the replica (see slave.remount).
type mounter interface {
	Mount(ctx context.Context, dataset string) error
	Unmount(ctx context.Context, dataset string) error
}

// roller discards changes made to a replica since its newest snapshot.
type roller interface {
	Rollback(ctx context.Context, snapshot string) error
}

// ZFS is everything the agent's roles need, for wiring; each part above is
// what one consumer uses.
type ZFS interface {
	snapshotLister
	snapshotter
	holder
	bookmarker
	sender
	receiver
	properties
	mounter
	roller
}

// The agent runs on snapshot's adapter.
var _ ZFS = (*snapshot.ZFS)(nil)

// resumeTokenOf returns the token a failed resumable receive printed.
func resumeTokenOf(err error) string {
	var ze *snapshot.ZFSError
	if errors.As(err, &ze) {
		return ze.Token
	}
	return ""
}

// Codes for Ack.Code and status: what went wrong, in words both sides and
// operators share.
const (
	codePoolFull       = "pool_full"
	codeBadStream      = "bad_stream"
	codeModified       = "destination_modified"
	codeMismatch       = "incremental_mismatch"
	codeRefused        = "refused"
	codeExists         = "destination_exists"
	codeSendFailed     = "send_failed"
	codeTransport      = "transport"
	codeConflict       = "conflict"
	codeReceiveFailed  = "receive_failed"
	codeResumeDiscard  = "resume_state_discarded"
	codeShutdown       = "shutdown"
	codeAckTimeout     = "ack_timeout"
	codeSnapshotFailed = "snapshot_failed"
)

// receiveCode classifies a failed receive for the sender.
func receiveCode(err error) string {
	switch {
	case errors.Is(err, snapshot.ErrPoolFull):
		return codePoolFull
	case errors.Is(err, snapshot.ErrBadStream):
		return codeBadStream
	case errors.Is(err, snapshot.ErrDestinationModified):
		return codeModified
	case errors.Is(err, snapshot.ErrIncrementalMismatch):
		return codeMismatch
	case errors.Is(err, snapshot.ErrExists):
		return codeExists
	}
	return codeReceiveFailed
}

// WrittenFromZFS reads the written property for the timer tier, or returns
// nil where the dialect has none (zfs-fuse): the timer then reports every
// tick as a change.
func WrittenFromZFS(z ZFS, d snapshot.Dialect) WrittenFunc {
	if !d.Features.WrittenProperty {
		return nil
	}
	return func(ctx context.Context, dataset string) (uint64, bool, error) {
		p, err := z.GetProperty(ctx, dataset, "written")
		if err != nil {
			return 0, false, err
		}
		n, err := strconv.ParseUint(p.Value, 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("written of %s: %q is not a number", dataset, p.Value)
		}
		return n, true, nil
	}
}
