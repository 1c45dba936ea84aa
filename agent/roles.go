package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/snapshot"
)

// runner holds one dataset's loop: a master, a slave, or none (a master
// that started fenced and has not served yet). Failover swaps the loop at
// run time; the other goroutines find the current one through it.
type runner struct {
	ds  config.Dataset
	cfg datasetConfig // epoch is filled in when a loop is made

	mu     sync.Mutex
	m      *master
	s      *slave
	cancel context.CancelFunc
	done   chan struct{}
	last   *board // the board of the last loop, for status while none runs
	div    *stashPlan
	stash  string // the stash being made (kept for a retry)
	// readonly: SetReadonly succeeded and SetWritable has not run since;
	// a demotion right after a handoff then costs no zfs command (which
	// would compete with the peer's takeover where both share a daemon).
	readonly bool
}

// loops returns the current loop (at most one is non-nil).
func (r *runner) loops() (*master, *slave) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m, r.s
}

// inbox is the current loop's event channel, nil when none runs.
func (r *runner) inbox() chan any {
	m, s := r.loops()
	switch {
	case m != nil:
		return m.events
	case s != nil:
		return s.events
	}
	return nil
}

func (r *runner) board() *board {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.m != nil:
		return r.m.board
	case r.s != nil:
		return r.s.board
	}
	return r.last
}

// stop ends the current loop and waits for it: a master's send in flight
// is cut, a slave's receive aborted (zfs discards or keeps its partial
// state cleanly). The notifier stops watching a master's dataset.
func (a *Agent) stopLoop(r *runner) {
	r.mu.Lock()
	m, s, cancel, done := r.m, r.s, r.cancel, r.done
	r.m, r.s, r.cancel, r.done = nil, nil, nil, nil
	switch {
	case m != nil:
		r.last = m.board
	case s != nil:
		r.last = s.board
	}
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	if m != nil && a.opts.Notifier != nil {
		if err := a.opts.Notifier.Remove(r.ds.ZFS); err != nil {
			a.log.Warn("notifier: removing target failed", "dataset", r.ds.Name, "err", err)
		}
	}
	a.log.Info("dataset loop stopped", "dataset", r.ds.Name, "was", map[bool]string{true: "master", false: "slave"}[m != nil])
}

// startMaster makes the dataset's loop a master: the dataset must be
// mounted (the notifier watches its mountpoint).
func (a *Agent) startMaster(ctx context.Context, r *runner) error {
	if m, _ := r.loops(); m != nil {
		return nil
	}
	if a.opts.Notifier == nil {
		return fmt.Errorf("dataset %s: no notifier: this node cannot serve as master", r.ds.Name)
	}
	a.stopLoop(r)
	_, epoch := a.roleEpoch()
	dc := r.cfg
	dc.epoch = epoch
	m := newMaster(dc, a.opts.ZFS, a.tier, &a.ids, a.sends, a.log)
	if err := m.init(ctx, time.Now()); err != nil {
		return err
	}
	mp, mounted, err := a.opts.ZFS.Mountpoint(ctx, r.ds.ZFS)
	if err != nil {
		return fmt.Errorf("dataset %s: %w", r.ds.Name, err)
	}
	if !mounted {
		return fmt.Errorf("dataset %s: %s is not mounted: the master serves it from its mountpoint", r.ds.Name, r.ds.ZFS)
	}
	if err := a.opts.Notifier.Add(ctx, Target{Name: r.ds.ZFS, Mountpoint: mp}); err != nil {
		return fmt.Errorf("dataset %s: watching %s with the %s tier: %w", r.ds.Name, mp, a.opts.Notifier.Tier(), err)
	}
	if f, ok := a.opts.Notifier.(snapshotFlusher); ok {
		ds := r.ds.ZFS
		m.flush = func() { f.FlushBeforeSnapshot(ds) } // before m runs: no race
	}
	if ts, ok := a.opts.Notifier.(targetStatuser); ok {
		if st, ok := ts.TargetStatus(r.ds.ZFS); ok {
			m.tier = notifierStatus(st) // before m runs: no race
			m.st.Notifier = m.tier
		}
	}
	a.log.Info("dataset notifier", "dataset", r.ds.Name, "zfs", r.ds.ZFS, "tier", m.tier.Tier,
		"safety_net", m.tier.SafetyNet.String(), "refused", m.tier.Refused)
	a.run(r, m, nil)
	return nil
}

// startSlave makes the dataset's loop a slave (its init sets the replica
// readonly).
func (a *Agent) startSlave(ctx context.Context, r *runner) error {
	if _, s := r.loops(); s != nil {
		return nil
	}
	a.stopLoop(r)
	_, epoch := a.roleEpoch()
	dc := r.cfg
	dc.epoch = epoch
	s := newSlave(dc, a.opts.ZFS, a.log)
	if err := s.init(ctx); err != nil {
		return err
	}
	a.run(r, nil, s)
	return nil
}

// run starts a loop and tells it about the live connection.
func (a *Agent) run(r *runner, m *master, s *slave) {
	ctx, cancel := context.WithCancel(a.runCtx)
	done := make(chan struct{})
	r.mu.Lock()
	r.m, r.s, r.cancel, r.done = m, s, cancel, done
	r.mu.Unlock()
	var events chan any
	a.wg.Go(func() {
		defer close(done)
		if m != nil {
			m.run(ctx)
		} else {
			s.run(ctx)
		}
	})
	if m != nil {
		events = m.events
	} else {
		events = s.events
	}
	a.mu.Lock()
	c := a.peerC
	role, epoch, known := a.peerRole, a.peerEpoch, a.peerHeard
	a.mu.Unlock()
	if c != nil && c.Err() == nil {
		post(ctx, events, evConnUp{c})
		if known {
			post(ctx, events, evPeerRole{role: role, epoch: epoch})
		}
	}
	a.log.Info("dataset loop started", "dataset", r.ds.Name, "as", map[bool]string{true: "master", false: "slave"}[m != nil])
}

// reconcile makes each dataset's loop match the node's role: a slave runs
// slave loops; a master that serves (or hands off) runs master loops; a
// fenced master runs none: it takes no snapshot and sends nothing until it
// knows whether the peer took over (a snapshot taken then would only
// diverge from the peer's), and serving again starts a new master loop,
// which reads the snapshots afresh and learns the peer's from its list.
func (a *Agent) reconcile(ctx context.Context, master, serving bool) error {
	var errs []error
	for _, r := range a.order {
		var err error
		switch {
		case !master:
			err = a.startSlave(ctx, r)
		case serving:
			err = a.startMaster(ctx, r)
		default:
			if m, _ := r.loops(); m != nil {
				a.stopLoop(r)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// The Executor's Replicas: each idempotent.

// AbortReceive stops the slave loop (a receive in flight is aborted) and
// discards a partial receive's resume state.
func (a *Agent) AbortReceive(ctx context.Context, dataset string) error {
	r := a.runners[dataset]
	if r == nil {
		return fmt.Errorf("unknown dataset %q", dataset)
	}
	if _, s := r.loops(); s != nil {
		a.stopLoop(r)
	}
	if !a.opts.Dialect.Features.ResumableReceive {
		return nil
	}
	tok, err := a.opts.ZFS.ResumeToken(ctx, r.ds.ZFS)
	if err != nil || tok == "" {
		if errors.Is(err, snapshot.ErrNotFound) {
			return nil
		}
		return err
	}
	if err := a.opts.ZFS.AbortReceive(ctx, r.ds.ZFS); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
		return err
	}
	a.log.Info("partial receive discarded for the takeover", "dataset", dataset)
	return nil
}

// SetWritable makes the replica read-write and mounted.
func (a *Agent) SetWritable(ctx context.Context, dataset string) error {
	r := a.runners[dataset]
	if r == nil {
		return fmt.Errorf("unknown dataset %q", dataset)
	}
	// Set without reading first: setting off what is off is harmless, and
	// a takeover (a handoff's downtime) is one zfs command shorter.
	a.setReadonlyKnown(r, false)
	if err := a.opts.ZFS.SetProperty(ctx, r.ds.ZFS, "readonly", "off"); err != nil {
		return err
	}
	if still, err := a.readonly(ctx, r.ds.ZFS); err != nil {
		return err
	} else if still {
		// zfs-fuse keeps a replica's read-only mount until it is
		// mounted again; nothing uses the replica before the takeover
		// starts the service, so the unmount is not refused.
		if err := a.opts.ZFS.Unmount(ctx, r.ds.ZFS); err != nil && !errors.Is(err, snapshot.ErrNotMounted) {
			return fmt.Errorf("remounting read-write: %w", err)
		}
	}
	a.log.Info("dataset set writable", "dataset", dataset)
	if _, mounted, err := a.opts.ZFS.Mountpoint(ctx, r.ds.ZFS); err != nil {
		return err
	} else if !mounted {
		if err := a.opts.ZFS.Mount(ctx, r.ds.ZFS); err != nil && !errors.Is(err, snapshot.ErrMounted) {
			return err
		}
	}
	return nil
}

// SetReadonly makes the dataset readonly.
func (a *Agent) SetReadonly(ctx context.Context, dataset string) error {
	r := a.runners[dataset]
	if r == nil {
		return fmt.Errorf("unknown dataset %q", dataset)
	}
	r.mu.Lock()
	done := r.readonly
	r.mu.Unlock()
	if done {
		return nil
	}
	if m, _ := r.loops(); m != nil && a.fo != nil && a.fo.fencing() {
		// A fenced master stops its loop now rather than after its
		// effects: the head is then kept by snapshotHead below, never by a
		// loop racing it, and nothing is sent after the fence.
		a.stopLoop(r)
	}
	if m, _ := r.loops(); m != nil {
		// A master loop runs: the dataset exists and is writable, so it is
		// set without reading it first (a handoff's downtime is one zfs
		// command shorter), and the loop snapshots what was written.
		if err := a.opts.ZFS.SetProperty(ctx, r.ds.ZFS, "readonly", "on"); err != nil {
			return err
		}
		a.setReadonlyKnown(r, true)
		a.log.Info("dataset set readonly", "dataset", dataset)
		return nil
	}
	ro, err := a.readonly(ctx, r.ds.ZFS)
	if errors.Is(err, snapshot.ErrNotFound) {
		return nil // no replica yet: nothing to protect
	}
	if err != nil {
		return err
	}
	if ro {
		a.setReadonlyKnown(r, true)
		return nil
	}
	// No master loop snapshots what was written (a master that restarted
	// and is demoted, or fenced): keep it in a snapshot, so that the
	// divergence planner sees it and it is stashed, not rolled back.
	if err := a.snapshotHead(ctx, r); err != nil {
		return err
	}
	if err := a.opts.ZFS.SetProperty(ctx, r.ds.ZFS, "readonly", "on"); err != nil {
		return err
	}
	a.setReadonlyKnown(r, true)
	a.log.Info("dataset set readonly", "dataset", dataset)
	return nil
}

func (a *Agent) setReadonlyKnown(r *runner, ro bool) {
	r.mu.Lock()
	r.readonly = ro
	r.mu.Unlock()
}

// headReader tells whether a dataset changed since its newest snapshot
// (snapshot.ZFS; unknown on zfs-fuse).
type headReader interface {
	Head(ctx context.Context, dataset string) (snapshot.HeadState, error)
}

// snapshotHead snapshots a writable dataset unless its head is known
// clean. The name carries the epoch of its newest snapshot: the epoch in
// which these writes were made.
func (a *Agent) snapshotHead(ctx context.Context, r *runner) error {
	if h, ok := a.raw.(headReader); ok {
		if st, err := h.Head(ctx, r.ds.ZFS); err == nil && st == snapshot.HeadClean {
			return nil
		}
	}
	snaps, err := a.opts.ZFS.ListSnapshots(ctx, r.ds.ZFS)
	if err != nil {
		return err
	}
	sortByTXG(snaps)
	epoch, ok := newestEpoch(snaps)
	if !ok {
		_, epoch = a.roleEpoch()
	}
	name := r.ds.ZFS + "@" + snapshot.FlockerName{Epoch: epoch, Seq: nextSeq(snaps, epoch)}.String()
	if err := a.opts.ZFS.Snapshot(ctx, name); err != nil && !errors.Is(err, snapshot.ErrExists) {
		return fmt.Errorf("keeping the writes before readonly: %w", err)
	}
	a.log.Info("writes since the last snapshot kept before going readonly", "dataset", r.ds.Name, "snapshot", name)
	return nil
}

// readonly reads the property as the dialect means it (see slave.readonlyOn).
func (a *Agent) readonly(ctx context.Context, zfs string) (bool, error) {
	p, err := a.opts.ZFS.GetProperty(ctx, zfs, "readonly")
	if err != nil {
		return false, err
	}
	if a.opts.Dialect.Name == snapshot.DialectZFSFuse && p.Source == "temporary" {
		return true, nil
	}
	return p.Value == "on", nil
}
