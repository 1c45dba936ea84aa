package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

// hangingZFS stands in for a zfs whose snapshot command never returns
// until killed (its context ends); a real hang is tested end to end in
// test/faults with a zfs stand-in binary.
type hangingZFS struct {
	ZFS   // nil: only Snapshot is called
	calls int
}

func (h *hangingZFS) Snapshot(ctx context.Context, names ...string) error {
	h.calls++
	<-ctx.Done()
	return ctx.Err()
}

func TestTimedZFSBoundsAHungCommand(t *testing.T) {
	h := &hangingZFS{}
	z := withTimeout(h, 50*time.Millisecond)
	err := z.Snapshot(context.Background(), "tank/a@s")
	if !errors.Is(err, ErrZFSTimeout) || !errors.Is(err, context.DeadlineExceeded) || h.calls != 1 {
		t.Fatalf("hung snapshot: %v (calls %d), want ErrZFSTimeout", err, h.calls)
	}
	// The caller's own cancellation is not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := z.Snapshot(ctx, "tank/a@s"); errors.Is(err, ErrZFSTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled snapshot: %v", err)
	}
	if withTimeout(h, 0).(timedZFS).limit != DefaultZFSTimeout {
		t.Fatal("no default bound")
	}
}
