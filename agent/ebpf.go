//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flockerha/flocker/bpf"
	"golang.org/x/sys/unix"
)

// BlockZFS is what the block tier asks ZFS: which block devices a pool
// writes to, and whether a dataset has written anything since its newest
// snapshot (ok is false where the dialect cannot tell).
type BlockZFS interface {
	PoolDevices(ctx context.Context, pool string) ([]uint32, error)
	Written(ctx context.Context, dataset string) (bytes uint64, ok bool, err error)
}

// EBPFOption tunes NewEBPF.
type EBPFOption func(*ebpfOptions)

type ebpfOptions struct {
	log      *slog.Logger
	variant  string
	ringSize int
	lostPoll time.Duration
	zfs      BlockZFS
	mounts   func() (MountTable, error)
	// noFlush leaves the syncfs to the consumer (EBPFNoFlush).
	noFlush bool
}

// EBPFNoFlush leaves the flush to the consumer, which runs syncfs right
// before each snapshot (the agent's master does, through the Watcher):
// changes are then reported as soon as the target is re-armed. Under
// steady writes events follow each other, and a flush per event ran
// syncfs back to back, which slowed ZFS itself (OpenZFS guests: the floor
// under 1,000 writes/s went from about 1 s to 3-4.7 s with such a loop)
// while the snapshot it was for waited for the transfer in flight.
func EBPFNoFlush() EBPFOption { return func(o *ebpfOptions) { o.noFlush = true } }

// EBPFLog sets the logger (default: discard).
func EBPFLog(l *slog.Logger) EBPFOption { return func(o *ebpfOptions) { o.log = l } }

// EBPFVariant forces a variant of the tracepoint tier (bpf.VariantTPBTF or
// bpf.VariantRawSyscalls); by default tp_btf, falling back to raw_syscalls.
func EBPFVariant(v string) EBPFOption { return func(o *ebpfOptions) { o.variant = v } }

// EBPFRingBufferSize sets the ring buffer's size in bytes.
func EBPFRingBufferSize(n int) EBPFOption { return func(o *ebpfOptions) { o.ringSize = n } }

// EBPFLostPoll sets how often the lost counters are read.
func EBPFLostPoll(d time.Duration) EBPFOption { return func(o *ebpfOptions) { o.lostPoll = d } }

// EBPFBlockZFS gives the block tier its ZFS queries (required for it).
func EBPFBlockZFS(z BlockZFS) EBPFOption { return func(o *ebpfOptions) { o.zfs = z } }

// DefaultLostPoll: the lost counters only move when the ring buffer was
// full (the reader stalled), so reading them every 100 ms bounds the delay
// of such a change at a cost of one atomic load per target.
const DefaultLostPoll = 100 * time.Millisecond

// blockQueryTimeout bounds one `written`/vdev query of the block tier
// (a zfs run takes milliseconds on metal, 0.1-0.17 s in the TCG guests).
const blockQueryTimeout = 10 * time.Second

// EBPF is a Notifier backed by one eBPF tier (bpf.Tier). Each kernel event
// is consumed in the order the design needs: clear the target's flag,
// syncfs(mountpoint), then report the Change, so the snapshot taken on it
// includes the change and pages stored through a mapping are re-armed.
type EBPF struct {
	tier string
	bt   *bpf.Tier
	o    ebpfOptions

	mu      sync.Mutex
	byName  map[string]*ebpfTarget
	byID    map[uint32][]*ebpfTarget // the block tier maps a pool's id to its datasets
	pending []Change                 // to deliver, oldest first, one per dataset
	wake    chan struct{}            // pending grew
	closed  bool

	work    chan rawEvent
	changes chan Change
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	events, lost, delivered, unconfirmed atomic.Uint64
	missedSeen                           uint64 // bt.Missed() last read
}

type ebpfTarget struct {
	Target
	id       uint32
	lostSeen uint64
	pool     string // block tier
	// A flush (syncfs, and for the block tier the written query) runs per
	// target beside the others: on ZFS a syncfs can wait seconds for a
	// transaction group. again: an event came during the flush.
	flushing, again bool
	hook            string
	at              time.Time
}

type rawEvent struct {
	id   uint32
	hook string
	at   time.Time
}

// EBPFStats counts what an EBPF notifier saw, for status and metrics.
type EBPFStats struct {
	Events      uint64 `json:"events"`      // ring-buffer events read
	Lost        uint64 `json:"lost"`        // edges that found the ring buffer full, reported through the lost counters
	Delivered   uint64 `json:"delivered"`   // changes delivered
	Unconfirmed uint64 `json:"unconfirmed"` // block tier: pool writes no watched dataset confirmed
}

var _ Notifier = (*EBPF)(nil)

// NewEBPF loads and attaches an eBPF tier (TierFentry, TierKprobe,
// TierTracepoint or TierBlock) and starts its reader. The Notifier it
// returns is an *EBPF. When the tier does not work here the error is a
// *bpf.TierError naming each program the kernel refused and why.
func NewEBPF(tier string, opts ...EBPFOption) (Notifier, error) {
	o := ebpfOptions{lostPoll: DefaultLostPoll, mounts: ReadMounts}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.lostPoll <= 0 {
		return nil, fmt.Errorf("ebpf notifier: lost counter poll interval %v: must be positive", o.lostPoll)
	}
	if tier == TierBlock && o.zfs == nil {
		return nil, errors.New("ebpf notifier: the block tier needs ZFS queries (EBPFBlockZFS)")
	}
	bt, err := bpf.LoadTier(bpf.TierOptions{Tier: tier, Variant: o.variant, RingBufferSize: o.ringSize, Log: o.log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &EBPF{
		tier: tier, bt: bt, o: o,
		byName: map[string]*ebpfTarget{}, byID: map[uint32][]*ebpfTarget{},
		wake: make(chan struct{}, 1), work: make(chan rawEvent, 64), changes: make(chan Change),
		cancel: cancel,
	}
	e.wg.Go(func() { e.read(ctx) })
	e.wg.Go(func() { e.pollLost(ctx) })
	e.wg.Go(func() { e.handle(ctx) })
	e.wg.Go(func() { e.deliver(ctx) })
	o.log.Info("ebpf notifier started", "tier", tier, "variant", bt.Variant())
	return e, nil
}

func (e *EBPF) Tier() string { return e.tier }

// Variant is the tracepoint tier's variant (tp_btf or raw_syscalls).
func (e *EBPF) Variant() string { return e.bt.Variant() }

// Attachments lists the tier's programs and what became of each.
func (e *EBPF) Attachments() []bpf.Attachment { return e.bt.Attachments() }

// Stats returns the counters so far.
func (e *EBPF) Stats() EBPFStats {
	return EBPFStats{Events: e.events.Load(), Lost: e.lost.Load(), Delivered: e.delivered.Load(), Unconfirmed: e.unconfirmed.Load()}
}

func (e *EBPF) Changes() <-chan Change { return e.changes }

// Add starts watching t. The fentry, kprobe and tracepoint tiers watch any
// mounted filesystem; the block tier watches a ZFS dataset through its
// pool's block devices.
func (e *EBPF) Add(ctx context.Context, t Target) error {
	if err := checkMounted(t.Mountpoint); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(t.Mountpoint, &st); err != nil {
		return fmt.Errorf("target %s: %w", t.Mountpoint, err)
	}
	dev := kernelDev(st.Dev)
	mounts, err := e.o.mounts()
	if err != nil {
		return fmt.Errorf("target %s: %w", t.Mountpoint, err)
	}

	if e.tier == TierBlock {
		return e.addBlock(ctx, t, dev, mounts)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.addableLocked(t); err != nil {
		return err
	}
	var paths []string
	for _, m := range mounts {
		if m.KernelDev() == dev {
			paths = append(paths, m.Mountpoint)
		}
	}
	slices.Sort(paths)
	if len(paths) == 0 {
		return fmt.Errorf("target %s: device %d:%d is not in the mount table", t.Mountpoint, dev>>20, dev&(1<<20-1))
	}
	id, err := e.bt.AddTarget(bpf.Target{Devs: []uint32{dev}, Mountpoints: paths})
	if err != nil {
		return fmt.Errorf("%s notifier: target %s: %w", e.tier, t.Mountpoint, err)
	}
	tg := &ebpfTarget{Target: t, id: id, lostSeen: e.bt.Lost(id)}
	e.byName[t.Name] = tg
	e.byID[id] = []*ebpfTarget{tg}
	e.o.log.Debug("watching", "tier", e.tier, "dataset", t.Name, "mountpoint", t.Mountpoint, "id", id, "mounts", paths)
	return nil
}

func (e *EBPF) addableLocked(t Target) error {
	if e.closed {
		return errors.New("ebpf notifier: closed")
	}
	if _, ok := e.byName[t.Name]; ok {
		return fmt.Errorf("%s notifier: %q is already watched", e.tier, t.Name)
	}
	return nil
}

// addBlock watches t's pool's devices, shared by its datasets. The pool's
// vdevs are listed without the lock held (a zpool run), so events keep
// flowing meanwhile.
func (e *EBPF) addBlock(ctx context.Context, t Target, dev uint32, mounts MountTable) error {
	for _, m := range mounts {
		if m.KernelDev() == dev && m.FSType == "fuse.zfs" {
			return fmt.Errorf("block notifier: target %s is on zfs-fuse, which writes its pool through files, not a block device this tier could watch", t.Mountpoint)
		}
	}
	pool, _, _ := strings.Cut(t.Name, "/")
	// joinLocked adds t to its pool's target when the pool is watched.
	joinLocked := func() bool {
		for _, other := range e.byName {
			if other.pool == pool {
				tg := &ebpfTarget{Target: t, id: other.id, lostSeen: other.lostSeen, pool: pool}
				e.byName[t.Name] = tg
				e.byID[tg.id] = append(e.byID[tg.id], tg)
				return true
			}
		}
		return false
	}
	e.mu.Lock()
	err := e.addableLocked(t)
	joined := err == nil && joinLocked()
	e.mu.Unlock()
	if err != nil || joined {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, blockQueryTimeout)
	defer cancel()
	devs, err := e.o.zfs.PoolDevices(qctx, pool)
	if err != nil {
		return fmt.Errorf("block notifier: target %s: %w", t.Name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.addableLocked(t); err != nil || joinLocked() {
		return err // closed, added, or its pool watched meanwhile
	}
	id, err := e.bt.AddTarget(bpf.Target{Devs: devs})
	if err != nil {
		return fmt.Errorf("block notifier: pool %s: %w", pool, err)
	}
	tg := &ebpfTarget{Target: t, id: id, lostSeen: e.bt.Lost(id), pool: pool}
	e.byName[t.Name] = tg
	e.byID[id] = []*ebpfTarget{tg}
	e.o.log.Debug("watching", "tier", e.tier, "dataset", t.Name, "pool", pool, "id", id, "devices", len(devs))
	return nil
}

// Remove stops watching the named target.
func (e *EBPF) Remove(name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	tg, ok := e.byName[name]
	if !ok {
		return fmt.Errorf("%s notifier: target %q is not watched", e.tier, name)
	}
	delete(e.byName, name)
	rest := e.byID[tg.id][:0:0]
	for _, o := range e.byID[tg.id] {
		if o != tg {
			rest = append(rest, o)
		}
	}
	if len(rest) > 0 {
		e.byID[tg.id] = rest
		return nil
	}
	delete(e.byID, tg.id)
	if err := e.bt.RemoveTarget(tg.id); err != nil {
		return fmt.Errorf("%s notifier: %w", e.tier, err)
	}
	return nil
}

// Close stops the goroutines, detaches the programs and closes Changes.
func (e *EBPF) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	err := e.bt.Close() // unblocks the reader
	e.wg.Wait()
	close(e.changes)
	return err
}

// read forwards ring-buffer events until the tier is closed.
func (e *EBPF) read(ctx context.Context) {
	for {
		ev, err := e.bt.ReadEvent()
		if errors.Is(err, bpf.ErrClosed) {
			return
		}
		if err != nil {
			e.o.log.Error("reading eBPF events; the lost counters and the safety net remain", "tier", e.tier, "err", err)
			return
		}
		e.events.Add(1)
		select {
		case e.work <- rawEvent{id: ev.Target, hook: ev.Hook, at: monoToWall(ev.Time)}:
		case <-ctx.Done():
			return
		}
	}
}

// pollLost turns a moved lost counter into an event: a change whose
// ring-buffer event found no room.
func (e *EBPF) pollLost(ctx context.Context) {
	tick := time.NewTicker(e.o.lostPoll)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		type moved struct {
			id   uint32
			hook string
		}
		var found []moved
		// Skipped runs cost a system call per program to read: every
		// tenth poll (1 s by default) is soon enough for so rare an event.
		missed := e.missedSeen
		if n%10 == 0 {
			missed = e.bt.Missed()
		}
		e.mu.Lock()
		if missed != e.missedSeen {
			// A skipped program run may be a lost change to any target.
			e.o.log.Warn("the kernel skipped runs of the notifier's programs; treating every target as changed", "missed", missed-e.missedSeen)
			e.missedSeen = missed
			for id := range e.byID {
				found = append(found, moved{id, "missed"})
			}
		}
		for id, tgs := range e.byID {
			n := e.bt.Lost(id)
			if n == tgs[0].lostSeen {
				continue
			}
			e.lost.Add(n - tgs[0].lostSeen)
			for _, tg := range tgs {
				tg.lostSeen = n
			}
			found = append(found, moved{id, "lost"})
		}
		e.mu.Unlock()
		for _, m := range found {
			select {
			case e.work <- rawEvent{id: m.id, hook: m.hook, at: time.Now()}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// handle re-arms each event's target at once and has it flushed and its
// change queued (flush).
func (e *EBPF) handle(ctx context.Context) {
	for {
		var ev rawEvent
		select {
		case <-ctx.Done():
			return
		case ev = <-e.work:
		}
		e.o.log.Debug("ebpf event", "tier", e.tier, "target", ev.id, "hook", ev.hook, "at", ev.at)
		e.mu.Lock()
		tgs := e.byID[ev.id]
		if len(tgs) == 0 {
			e.mu.Unlock()
			continue // a target removed since
		}
		// 1. Re-arm: a change from now on gives a new event.
		e.bt.Arm(ev.id)
		for _, tg := range tgs {
			if tg.flushing {
				// The running flush goes round once more and reports
				// the first event since it began, not the one it began
				// with (its time is the oldest change not yet reported).
				if !tg.again {
					tg.again, tg.hook, tg.at = true, ev.hook, ev.at
				}
				continue
			}
			tg.flushing, tg.hook, tg.at = true, ev.hook, ev.at
			e.wg.Go(func() { e.flush(ctx, tg) })
		}
		e.mu.Unlock()
	}
}

// flush runs steps 2 and 3 for one target, again while events came in
// meanwhile (each after its re-arm).
func (e *EBPF) flush(ctx context.Context, tg *ebpfTarget) {
	for {
		e.mu.Lock()
		hook, at := tg.hook, tg.at
		e.mu.Unlock()
		report := e.watching(tg) && (e.tier != TierBlock || e.confirm(ctx, tg))
		if report {
			// 2. Flush, so the snapshot holds what the mappings stored
			//    and the pages are write-protected again (unless the
			//    consumer flushes before its snapshot).
			if !e.o.noFlush {
				flushes.flushLogged(e.o.log, tg.Mountpoint, tg.Name, "syncfs failed; reporting the change anyway")
			}
			// 3. Report.
			e.queue(Change{Time: at, Dataset: tg.Name, Tier: e.tier, Hook: hook})
		}
		e.mu.Lock()
		if !tg.again || ctx.Err() != nil {
			tg.flushing = false
			e.mu.Unlock()
			return
		}
		tg.again = false
		e.mu.Unlock()
	}
}

// watching reports whether tg is still watched (not removed since).
func (e *EBPF) watching(tg *ebpfTarget) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byName[tg.Name] == tg
}

// idle reports whether no event waits to be handled and no flush or
// delivery is pending (tests use it to know a notifier is settled).
func (e *EBPF) idle() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.work) > 0 || len(e.pending) > 0 {
		return false
	}
	for _, tg := range e.byName {
		if tg.flushing {
			return false
		}
	}
	return true
}

// confirm asks whether a block-tier dataset wrote since its newest
// snapshot: the pool's writes may be another dataset's or ZFS's own.
func (e *EBPF) confirm(ctx context.Context, tg *ebpfTarget) bool {
	qctx, cancel := context.WithTimeout(ctx, blockQueryTimeout)
	defer cancel()
	n, ok, err := e.o.zfs.Written(qctx, tg.Name)
	if err != nil {
		e.o.log.Warn("reading written failed; reporting the change", "dataset", tg.Name, "err", err)
		return true
	}
	if ok && n == 0 {
		e.unconfirmed.Add(1)
		return false
	}
	return true
}

// queue adds c to the pending changes unless one for its dataset waits
// already (that one's snapshot will include this change too).
func (e *EBPF) queue(c Change) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.pending {
		if p.Dataset == c.Dataset {
			return
		}
	}
	e.pending = append(e.pending, c)
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// deliver hands pending changes to the consumer, oldest first. A change
// leaves pending before it is sent: once the consumer may have it (and may
// have snapshotted), a new event for its dataset must queue a new one.
func (e *EBPF) deliver(ctx context.Context) {
	for {
		e.mu.Lock()
		var c Change
		have := len(e.pending) > 0
		if have {
			c = e.pending[0]
			e.pending = e.pending[1:]
		}
		e.mu.Unlock()
		if !have {
			select {
			case <-ctx.Done():
				return
			case <-e.wake:
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case e.changes <- c:
			e.delivered.Add(1)
		}
	}
}

// kernelDev converts a stat st_dev (glibc encoding) to the kernel's
// major<<20|minor, which BPF programs see as s_dev.
func kernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)
}

// monoToWall converts a CLOCK_MONOTONIC time to wall-clock time.
func monoToWall(mono time.Duration) time.Time {
	var ts unix.Timespec
	now := time.Now()
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return now
	}
	return now.Add(mono - time.Duration(ts.Nano()))
}
