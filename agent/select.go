//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ModeAuto picks, per target, the best tier that loads and attaches.
const ModeAuto = "auto"

// Timing defaults.
const (
	// DefaultSafetyNet is the interval of the timer that runs beside every
	// event tier. It bounds how long a change no hook saw (a blind spot:
	// mapped stores under fanotify, a write path no eBPF hook covers) waits
	// for a snapshot. Each tick costs a syncfs and one `zfs get written` per
	// dataset (milliseconds; 0.1-0.17 s in the TCG guests) and a snapshot
	// only where `written` says something is unsnapshotted: with a working
	// event tier that is nothing. zfs-fuse cannot say, so there it is one
	// snapshot a minute per dataset, which retention prunes.
	DefaultSafetyNet = time.Minute
	// DefaultTimerInterval is the interval of the timer when it is the
	// chosen tier: then it is the whole of the replication delay, so it is
	// short; on zfs-fuse (no `written`) it means a snapshot every 10 s.
	DefaultTimerInterval = 10 * time.Second
	// attachTimeout bounds one tier's Add when a remount re-targets a
	// dataset (a FUSE daemon that hangs blocks marking).
	attachTimeout = 30 * time.Second
)

// Hooks the watcher itself names in Changes.
const (
	HookSafetyNet = "safety-net" // the safety-net timer's tick found a change
	HookRemount   = "remount"    // the dataset was mounted anew: anything may have changed
)

// FactoryConfig is what a tier's constructor may use.
type FactoryConfig struct {
	TimerInterval time.Duration
	Written       WrittenFunc // nil: report every interval
	Block         BlockZFS    // the block tier's ZFS queries; nil: no ZFS here
	// ConsumerFlushes: the event tiers report without a syncfs; the
	// consumer flushes right before each snapshot (FlushBeforeSnapshot).
	ConsumerFlushes bool
	Log             *slog.Logger
}

// Factory builds one tier's notifier ("loads" it); Add on it attaches.
type Factory func(FactoryConfig) (Notifier, error)

// DefaultFactories returns the constructors of every tier.
func DefaultFactories() map[string]Factory {
	ebpf := func(tier string) Factory {
		return func(c FactoryConfig) (Notifier, error) {
			opts := []EBPFOption{EBPFLog(c.Log)}
			if c.ConsumerFlushes {
				opts = append(opts, EBPFNoFlush())
			}
			if tier == TierBlock {
				if c.Block == nil {
					return nil, errors.New("the block tier needs ZFS, and none was given")
				}
				opts = append(opts, EBPFBlockZFS(c.Block))
			}
			return NewEBPF(tier, opts...)
		}
	}
	return map[string]Factory{
		TierFentry:     ebpf(TierFentry),
		TierKprobe:     ebpf(TierKprobe),
		TierTracepoint: ebpf(TierTracepoint),
		TierBlock:      ebpf(TierBlock),
		TierFanotify: func(c FactoryConfig) (Notifier, error) {
			f, err := NewFanotify(c.Log)
			if err == nil {
				f.noFlush = c.ConsumerFlushes
			}
			return f, err
		},
		TierTimer: func(c FactoryConfig) (Notifier, error) { return NewTimer(c.TimerInterval, c.Written, c.Log) },
	}
}

// WatcherOptions configures NewWatcher. Zero values take the defaults.
type WatcherOptions struct {
	Mode          string             // ModeAuto (default) or one tier name
	Factories     map[string]Factory // default DefaultFactories()
	SafetyNet     time.Duration      // default DefaultSafetyNet
	TimerInterval time.Duration      // default DefaultTimerInterval
	Written       WrittenFunc        // for both timers; nil: cannot tell
	Block         BlockZFS           // for the block tier; nil: it refuses
	// ConsumerFlushes: the caller runs FlushBeforeSnapshot before each
	// snapshot, so the event tiers report changes without a syncfs of
	// their own (one flush per snapshot instead of one per event).
	ConsumerFlushes bool
	Log             *slog.Logger
}

// Watcher watches many targets, each with the best tier that works for it,
// and merges their changes into one stream. It notices when a target's
// filesystem is unmounted or mounted anew (a remount, or the dataset
// destroyed and created again) and re-targets it. It is itself a Notifier,
// so the agent takes it where it takes one tier.
type Watcher struct {
	opts WatcherOptions
	log  *slog.Logger

	mu        sync.Mutex
	notifiers map[string]Notifier
	loadErrs  map[string]error
	safety    Notifier // the safety-net timer, once an event tier is used
	targets   map[string]*watched
	byWD      map[int32]*watched // inotify watch descriptor -> target
	closed    bool

	out       chan Change
	done      chan struct{} // closed by Close: forwarders stop sending
	fwd       sync.WaitGroup
	mountsFD  int // /proc/self/mountinfo, polled for mount table changes
	inotifyFD int // IN_UNMOUNT of each target's root
	wake      [2]int
	mountsWG  sync.WaitGroup
}

// watched is one target and what the watcher holds for it.
type watched struct {
	status TargetStatus
	// wd watches the root of the mounted filesystem: the kernel reports
	// IN_UNMOUNT on it when that filesystem goes away. The device number
	// alone cannot tell a remount: anonymous devices (tmpfs, FUSE, ZFS) are
	// reused at once, so an unmount and a mount between two looks at the
	// mount table can give the new filesystem the old number.
	wd   int32
	gone bool // IN_UNMOUNT or IN_IGNORED seen for wd
	// added is when Watch read the mount table for it: a recheck whose
	// own read began earlier knows nothing of it.
	added time.Time
}

// NewWatcher starts a watcher with no targets. It fails on a mode that is
// not a tier, and when the mount table cannot be watched.
func NewWatcher(opts WatcherOptions) (*Watcher, error) {
	if opts.Mode == "" {
		opts.Mode = ModeAuto
	}
	if opts.Mode != ModeAuto && !slices.Contains(Tiers, opts.Mode) {
		return nil, fmt.Errorf("notify mode %q: want %s or one of %s", opts.Mode, ModeAuto, strings.Join(Tiers, ", "))
	}
	if opts.Factories == nil {
		opts.Factories = DefaultFactories()
	}
	if opts.SafetyNet == 0 {
		opts.SafetyNet = DefaultSafetyNet
	}
	if opts.TimerInterval == 0 {
		opts.TimerInterval = DefaultTimerInterval
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		opts: opts, log: opts.Log,
		notifiers: map[string]Notifier{}, loadErrs: map[string]error{},
		targets: map[string]*watched{}, byWD: map[int32]*watched{},
		out: make(chan Change, 16), done: make(chan struct{}),
	}
	var err error
	if w.mountsFD, err = unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("opening the mount table: %w", err)
	}
	if w.inotifyFD, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
		unix.Close(w.mountsFD)
		return nil, fmt.Errorf("inotify for unmounts: %w", err)
	}
	if err := unix.Pipe2(w.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(w.mountsFD)
		unix.Close(w.inotifyFD)
		return nil, fmt.Errorf("watcher wake pipe: %w", err)
	}
	w.mountsWG.Add(1)
	go w.watchMounts()
	return w, nil
}

var _ Notifier = (*Watcher)(nil)

// Changes is the merged stream of every tier's changes; Close closes it.
func (w *Watcher) Changes() <-chan Change { return w.out }

// Tier is the mode: auto, or the one tier forced. Each target's own tier
// is in its status.
func (w *Watcher) Tier() string { return w.opts.Mode }

// Add is Watch for callers that take any Notifier.
func (w *Watcher) Add(ctx context.Context, t Target) error {
	_, err := w.Watch(ctx, t)
	return err
}

// Watch watches t with the best tier that loads and attaches (only the
// forced tier when the mode is not auto), plus the safety-net timer beside
// an event tier. The returned status lists why every better tier was
// refused.
func (w *Watcher) Watch(ctx context.Context, t Target) (TargetStatus, error) {
	mp, err := filepath.Abs(t.Mountpoint)
	if err != nil {
		return TargetStatus{}, fmt.Errorf("target %s: %w", t.Mountpoint, err)
	}
	t.Mountpoint = filepath.Clean(mp)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return TargetStatus{}, errors.New("watcher closed")
	}
	if _, dup := w.targets[t.Name]; dup {
		return TargetStatus{}, fmt.Errorf("target %q is already watched", t.Name)
	}
	added := time.Now()
	mounts, err := ReadMounts()
	if err != nil {
		return TargetStatus{}, err
	}
	m, ok := mounts[t.Mountpoint]
	if !ok {
		return TargetStatus{}, fmt.Errorf("target %s: not a mounted filesystem", t.Mountpoint)
	}
	wt := &watched{status: TargetStatus{Target: t, Dev: m.Dev}, wd: -1, added: added}
	if err := w.attach(ctx, wt); err != nil {
		return TargetStatus{}, err
	}
	w.targets[t.Name] = wt
	return wt.status, nil
}

// attach watches wt's filesystem root for its unmount, then runs the
// selection and records the outcome in wt. Called with w.mu held.
func (w *Watcher) attach(ctx context.Context, wt *watched) error {
	st := &wt.status
	wd, err := unix.InotifyAddWatch(w.inotifyFD, st.Target.Mountpoint, unix.IN_ONLYDIR|unix.IN_DELETE_SELF)
	if err != nil {
		return fmt.Errorf("target %s: watching for its unmount: %w", st.Target.Mountpoint, err)
	}
	wt.wd, wt.gone = int32(wd), false
	w.byWD[wt.wd] = wt
	candidates := Tiers
	if w.opts.Mode != ModeAuto {
		candidates = []string{w.opts.Mode}
	}
	st.Tier, st.Refused, st.SafetyNet = "", nil, 0
	for _, tier := range candidates {
		n, err := w.load(tier)
		if err == nil {
			err = n.Add(ctx, st.Target)
			if err != nil {
				err = fmt.Errorf("attach: %w", err)
			}
		}
		if err != nil {
			st.Refused = append(st.Refused, Refusal{Tier: tier, Reason: err.Error()})
			w.log.Info("notifier tier refused", "dataset", st.Target.Name, "tier", tier, "reason", err)
			continue
		}
		st.Tier = tier
		break
	}
	if st.Tier == "" {
		w.unwatchRoot(wt)
		var why []string
		for _, r := range st.Refused {
			why = append(why, r.Tier+": "+r.Reason)
		}
		if w.opts.Mode != ModeAuto {
			return fmt.Errorf("notify mode %s cannot watch %s: %s", w.opts.Mode, st.Target.Mountpoint, strings.Join(why, "; "))
		}
		return fmt.Errorf("no notifier tier can watch %s: %s", st.Target.Mountpoint, strings.Join(why, "; "))
	}
	if st.Tier != TierTimer {
		if err := w.addSafetyNet(ctx, st.Target); err != nil {
			// The event tier works; a missing net is worth a warning only.
			w.log.Warn("safety-net timer not running", "dataset", st.Target.Name, "err", err)
		} else {
			st.SafetyNet = w.opts.SafetyNet
		}
	}
	w.log.Info("watching", "dataset", st.Target.Name, "mountpoint", st.Target.Mountpoint, "tier", st.Tier,
		"safety_net", st.SafetyNet, "refused", len(st.Refused))
	return nil
}

// load returns the tier's notifier, building it on first use. A tier that
// failed to load is not tried again. Called with w.mu held.
func (w *Watcher) load(tier string) (Notifier, error) {
	if n := w.notifiers[tier]; n != nil {
		return n, nil
	}
	if err := w.loadErrs[tier]; err != nil {
		return nil, err
	}
	f := w.opts.Factories[tier]
	var n Notifier
	err := fmt.Errorf("load: no %s notifier in this build", tier)
	if f != nil {
		if n, err = f(w.config(w.opts.TimerInterval)); err != nil {
			err = fmt.Errorf("load: %w", err)
		}
	}
	if err != nil {
		w.loadErrs[tier] = err
		return nil, err
	}
	w.notifiers[tier] = n
	w.forward(n, "")
	return n, nil
}

func (w *Watcher) config(interval time.Duration) FactoryConfig {
	return FactoryConfig{TimerInterval: interval, Written: w.opts.Written, Block: w.opts.Block,
		ConsumerFlushes: w.opts.ConsumerFlushes, Log: w.log}
}

// FlushBeforeSnapshot runs syncfs on the named target's filesystem, as
// mounted now, when the watcher was built with ConsumerFlushes and an event
// tier watches it: pages stored through mappings reach ZFS before the
// snapshot and are write-protected again, so the next store is an event.
// The timer tier flushes before each report itself (its change check needs
// it), so a target it watches is not flushed twice. Bounded as the
// notifiers' flushes are; a failure is logged and the snapshot goes on.
func (w *Watcher) FlushBeforeSnapshot(name string) {
	if !w.opts.ConsumerFlushes {
		return
	}
	w.mu.Lock()
	wt, ok := w.targets[name]
	var mp string
	if ok && !wt.gone && wt.status.Tier != TierTimer {
		mp = wt.status.Target.Mountpoint
	}
	w.mu.Unlock()
	if mp == "" {
		return
	}
	flushes.flushLogged(w.log, mp, name, "syncfs before the snapshot failed; taking it anyway")
}

// addSafetyNet adds t to the slow timer, starting it on first use.
func (w *Watcher) addSafetyNet(ctx context.Context, t Target) error {
	if w.safety == nil {
		n, err := NewTimer(w.opts.SafetyNet, w.opts.Written, w.log)
		if err != nil {
			return err
		}
		w.safety = n
		w.forward(n, HookSafetyNet)
	}
	return w.safety.Add(ctx, t)
}

// forward copies n's changes into the merged stream until n closes them;
// hook, when set, replaces each change's hook.
func (w *Watcher) forward(n Notifier, hook string) {
	w.fwd.Add(1)
	go func() {
		defer w.fwd.Done()
		for c := range n.Changes() {
			if hook != "" {
				c.Hook = hook
			}
			select {
			case w.out <- c:
			case <-w.done:
				// Closing: keep draining so n's Close is not blocked.
			}
		}
	}()
}

// Remove stops watching the named target.
func (w *Watcher) Remove(name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt := w.targets[name]
	if wt == nil {
		return fmt.Errorf("target %q is not watched", name)
	}
	delete(w.targets, name)
	return w.detach(wt)
}

// detach removes wt's target from its tier and the safety net. Called with
// w.mu held.
func (w *Watcher) detach(wt *watched) error {
	w.unwatchRoot(wt)
	st := &wt.status
	var errs []error
	if n := w.notifiers[st.Tier]; n != nil {
		errs = append(errs, n.Remove(st.Target.Name))
	}
	if st.SafetyNet > 0 && w.safety != nil {
		errs = append(errs, w.safety.Remove(st.Target.Name))
	}
	st.Tier, st.SafetyNet = "", 0
	return errors.Join(errs...)
}

// unwatchRoot drops wt's inotify watch (already gone after an unmount).
func (w *Watcher) unwatchRoot(wt *watched) {
	if wt.wd < 0 {
		return
	}
	delete(w.byWD, wt.wd)
	if !wt.gone {
		unix.InotifyRmWatch(w.inotifyFD, uint32(wt.wd))
	}
	wt.wd = -1
}

// TargetStatus returns the named target's status.
func (w *Watcher) TargetStatus(name string) (TargetStatus, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt := w.targets[name]
	if wt == nil {
		return TargetStatus{}, false
	}
	s := wt.status
	s.Refused = slices.Clone(s.Refused)
	return s, true
}

// EBPFStats sums the counters of the eBPF tiers loaded so far (for metrics:
// a non-zero Lost means the ring buffer filled at some point).
func (w *Watcher) EBPFStats() EBPFStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sum EBPFStats
	for _, n := range w.notifiers {
		if e, ok := n.(*EBPF); ok {
			s := e.Stats()
			sum.Events += s.Events
			sum.Lost += s.Lost
			sum.Delivered += s.Delivered
			sum.Unconfirmed += s.Unconfirmed
		}
	}
	return sum
}

// Status returns every target's status, sorted by name.
func (w *Watcher) Status() []TargetStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]TargetStatus, 0, len(w.targets))
	for _, wt := range w.targets {
		s := wt.status
		s.Refused = slices.Clone(s.Refused)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b TargetStatus) int { return strings.Compare(a.Target.Name, b.Target.Name) })
	return out
}

// Close stops every notifier and closes Changes. It is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.done)
	unix.Write(w.wake[1], []byte{0})
	w.mu.Unlock()
	w.mountsWG.Wait() // the mount watcher takes w.mu: wait outside it

	w.mu.Lock()
	var errs []error
	for tier, n := range w.notifiers {
		if err := n.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing %s: %w", tier, err))
		}
	}
	if w.safety != nil {
		errs = append(errs, w.safety.Close())
	}
	w.mu.Unlock()
	w.fwd.Wait()
	close(w.out)
	unix.Close(w.mountsFD)
	unix.Close(w.inotifyFD)
	unix.Close(w.wake[0])
	unix.Close(w.wake[1])
	return errors.Join(errs...)
}

// watchMounts waits for the kernel to flag a change of the mount table
// (POLLPRI on mountinfo) or the unmount of a target (IN_UNMOUNT), and
// re-checks every target.
func (w *Watcher) watchMounts() {
	defer w.mountsWG.Done()
	fds := []unix.PollFd{
		{Fd: int32(w.mountsFD), Events: unix.POLLPRI},
		{Fd: int32(w.inotifyFD), Events: unix.POLLIN},
		{Fd: int32(w.wake[0]), Events: unix.POLLIN},
	}
	for {
		for i := range fds {
			fds[i].Revents = 0
		}
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			w.log.Error("watching the mount table failed; remounts will go unnoticed", "err", err)
			return
		}
		if fds[2].Revents != 0 {
			return
		}
		if fds[0].Revents != 0 || fds[1].Revents != 0 {
			w.recheck()
		}
	}
}

// unmounted reads the queued inotify events and marks the targets whose
// filesystem went away. Called with w.mu held.
func (w *Watcher) unmounted() {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(w.inotifyFD, buf)
		if n <= 0 || err != nil {
			return
		}
		for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
			if wt := w.byWD[ev.Wd]; wt != nil && ev.Mask&(unix.IN_UNMOUNT|unix.IN_IGNORED|unix.IN_DELETE_SELF) != 0 {
				wt.gone = true
			}
			b = b[unix.SizeofInotifyEvent+int(ev.Len):]
		}
	}
}

// recheck compares every target with the mount table: a target whose
// filesystem went away is detached; one mounted again is attached anew and
// reported as changed, since anything (a rollback, a receive) may have
// happened while it was not watched.
func (w *Watcher) recheck() {
	read := time.Now()
	mounts, err := ReadMounts()
	if err != nil {
		w.log.Error("re-reading the mount table", "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.unmounted()
	for _, wt := range w.targets {
		if wt.added.After(read) {
			// Watched after this table was read (a test mounting beside
			// a recheck saw its fresh target "unmounted", then "mounted
			// anew"): the next recheck judges it.
			continue
		}
		st := &wt.status
		m, mounted := mounts[st.Target.Mountpoint]
		if mounted && m.Dev == st.Dev && st.Tier != "" && !wt.gone {
			continue
		}
		if st.Tier != "" {
			if err := w.detach(wt); err != nil {
				w.log.Warn("detaching a target whose filesystem changed", "dataset", st.Target.Name, "err", err)
			}
		}
		if !mounted {
			if st.Dev != 0 {
				w.log.Warn("target unmounted; not watched until it is mounted again", "dataset", st.Target.Name, "mountpoint", st.Target.Mountpoint)
			}
			st.Dev = 0
			continue
		}
		w.log.Info("target mounted anew; re-attaching", "dataset", st.Target.Name, "old_dev", st.Dev, "dev", m.Dev)
		st.Dev = m.Dev
		ctx, cancel := context.WithTimeout(context.Background(), attachTimeout)
		err := w.attach(ctx, wt)
		cancel()
		if err != nil {
			w.log.Error("re-attaching failed; the target is not watched", "dataset", st.Target.Name, "err", err)
			continue
		}
		// Sent aside: the consumer may be calling Status, which takes w.mu.
		c := Change{Time: time.Now(), Dataset: st.Target.Name, Tier: st.Tier, Hook: HookRemount}
		w.fwd.Add(1)
		go func() {
			defer w.fwd.Done()
			select {
			case w.out <- c:
			case <-w.done:
			}
		}()
	}
}
