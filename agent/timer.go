package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// WrittenFunc reports how many bytes a dataset has written since its newest
// snapshot. ok is false where the ZFS dialect has no `written` property
// (zfs-fuse): the caller must then assume it changed.
type WrittenFunc func(ctx context.Context, dataset string) (bytes uint64, ok bool, err error)

// Timer is the tier of last resort: it reports every target as changed at a
// fixed interval, skipping targets whose `written` property says nothing was
// written. It is also the slow safety net beside every eBPF tier.
//
// It sees every kind of change, but only at its interval, and later still
// where it skips: OpenZFS updates `written` when the transaction group
// syncs (zfs_txg_timeout, 5 s by default), so a change made just before a
// tick shows at a later one. Without `written` (zfs-fuse) it cannot tell a
// change from none and reports every interval. A tick that comes before the
// consumer's snapshot of the last report finished reports that change again:
// an extra, empty snapshot, never a lost change.
type Timer struct {
	interval time.Duration
	written  WrittenFunc
	log      *slog.Logger

	mu      sync.Mutex
	targets map[string]Target
	changes chan Change
	cancel  context.CancelFunc
	done    chan struct{}
	closed  bool
}

var _ Notifier = (*Timer)(nil)

// NewTimer starts a timer notifier. written may be nil (always report).
func NewTimer(interval time.Duration, written WrittenFunc, log *slog.Logger) (*Timer, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("timer interval %v: must be positive", interval)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Timer{
		interval: interval,
		written:  written,
		log:      log,
		targets:  map[string]Target{},
		changes:  make(chan Change, 16),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go t.loop(ctx)
	return t, nil
}

func (t *Timer) Tier() string { return TierTimer }

func (t *Timer) Add(_ context.Context, tg Target) error {
	if err := checkMounted(tg.Mountpoint); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.targets[tg.Name] = tg
	return nil
}

func (t *Timer) Remove(name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.targets[name]; !ok {
		return fmt.Errorf("timer: target %q is not watched", name)
	}
	delete(t.targets, name)
	return nil
}

func (t *Timer) Changes() <-chan Change { return t.changes }

func (t *Timer) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	<-t.done
	return nil
}

func (t *Timer) loop(ctx context.Context) {
	defer close(t.done)
	defer close(t.changes)
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.mu.Lock()
		targets := make([]Target, 0, len(t.targets))
		for _, tg := range t.targets {
			targets = append(targets, tg)
		}
		t.mu.Unlock()
		for _, tg := range targets {
			// The change's time is when the sample began: a consumer
			// that snapshotted after it knows this report is covered.
			sampled := time.Now()
			// Flush first: stores through a shared mapping reach ZFS only
			// on writeback, and `written` counts only what reached it.
			flushes.flushLogged(t.log, tg.Mountpoint, tg.Name, "syncfs failed; the change check may miss mapped stores")
			if !t.changed(ctx, tg) {
				continue
			}
			select {
			case t.changes <- Change{Time: sampled, Dataset: tg.Name, Tier: TierTimer, Hook: "interval"}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// changed asks ZFS whether anything was written; when it cannot tell, the
// answer is yes, since a needless snapshot costs little and a missed one loses data.
func (t *Timer) changed(ctx context.Context, tg Target) bool {
	if t.written == nil {
		return true
	}
	n, ok, err := t.written(ctx, tg.Name)
	if err != nil {
		warnUnlessStopping(ctx, t.log, "reading written property failed; assuming changed", "dataset", tg.Name, "err", err)
		return true
	}
	return !ok || n > 0
}

// syncfsWait bounds one flush as the notifiers wait for it. A syncfs on a
// FUSE file system waits for its daemon: one that never answered stopped a
// notifier (and so every later snapshot of its dataset) for good in a CI run.
const syncfsWait = 10 * time.Second

// errFlushPending is a file system whose earlier syncfs has not returned.
var errFlushPending = errors.New("an earlier syncfs of it has not returned")

// flusher runs syncfs with a bound and at most one call per path in flight:
// a call stuck in the kernel cannot be cancelled, only left behind.
type flusher struct {
	flush   func(path string) error
	mu      sync.Mutex
	pending map[string]bool
}

// flushes is shared by the notifiers: a stuck file system is stuck for all.
var flushes = &flusher{flush: syncfs, pending: map[string]bool{}}

// syncfs flushes path's file system, waiting at most wait; past that the
// caller goes on without the flush (logged by the caller) and later calls
// for the same path fail at once until the stuck one returns.
func (f *flusher) syncfs(path string, wait time.Duration) error {
	f.mu.Lock()
	if f.pending[path] {
		f.mu.Unlock()
		return fmt.Errorf("syncfs %s: %w", path, errFlushPending)
	}
	f.pending[path] = true
	flush := f.flush
	f.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		err := flush(path)
		f.mu.Lock()
		delete(f.pending, path)
		f.mu.Unlock()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		return fmt.Errorf("syncfs %s: no answer within %v", path, wait)
	}
}

// flushLogged is syncfs with the notifiers' logging: a failure or the
// timeout is a warning (msg says what follows from it); while that call
// stays stuck, the calls that find it pending log at debug level only.
func (f *flusher) flushLogged(log *slog.Logger, path, dataset, msg string) {
	err := f.syncfs(path, syncfsWait)
	switch {
	case err == nil:
	case errors.Is(err, errFlushPending):
		log.Debug(msg, "dataset", dataset, "err", err)
	default:
		log.Warn(msg, "dataset", dataset, "err", err)
	}
}

// syncfs flushes the filesystem holding path: dirty mmap pages reach ZFS
// before the snapshot and are write-protected again, so the next store re-arms.
func syncfs(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s for syncfs: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", path, err)
	}
	return nil
}

// checkMounted fails unless path is a directory that is the root of a mount.
func checkMounted(path string) error {
	var st, parent unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("target %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("target %s: not a directory", path)
	}
	if err := unix.Stat(path+"/..", &parent); err != nil {
		return fmt.Errorf("target %s: %w", path, err)
	}
	if st.Dev == parent.Dev && st.Ino != parent.Ino {
		return fmt.Errorf("target %s: not a mounted filesystem (it is a directory inside another mount)", path)
	}
	return nil
}
