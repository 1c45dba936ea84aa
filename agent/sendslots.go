package agent

import "context"

// maxConcurrentSends bounds the zfs sends (and so the peer's receives) one
// agent runs at once, across its datasets. Fifty datasets starting their
// first syncs together deadlocked the shared zfs-fuse daemon twice on the
// development machine; a few streams already fill the link.
const maxConcurrentSends = 4

// sendSlots is a counting semaphore of transfer slots.
type sendSlots chan struct{}

// acquire takes a slot, calling waiting once when none is free, and
// returns the release. A nil sendSlots has no limit.
func (s sendSlots) acquire(ctx context.Context, waiting func()) (func(), error) {
	if s == nil {
		return func() {}, nil
	}
	select {
	case s <- struct{}{}:
	default:
		if waiting != nil {
			waiting()
		}
		select {
		case s <- struct{}{}:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	return func() { <-s }, nil
}
