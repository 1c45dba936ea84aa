package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/failover"
	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport"
)

// The Agent is the operator's Controller (served by the admin API) and the
// failover Executor's Handover and Stasher.
var (
	_ Controller        = (*Agent)(nil)
	_ failover.Replicas = (*Agent)(nil)
	_ failover.Handover = (*Agent)(nil)
	_ failover.Stasher  = (*Agent)(nil)
)

// Handoff timing.
const (
	// syncWithin bounds one snapshot's replication in a handoff. For the
	// final one the service is stopped meanwhile, so a handoff that cannot
	// replicate in time is aborted and the master serves again; the
	// pre-sync before it keeps what is left small.
	syncWithin = 30 * time.Second
	// handoffWithin bounds how long Handoff waits for the peer to serve.
	handoffWithin = time.Minute
	// catchUpWithin bounds the wait for a peer one snapshot behind.
	catchUpWithin = 10 * time.Second
	// catchUpPoll spaces the handoff requests while the peer catches up:
	// its heartbeat (every 100 ms by default) brings the news.
	catchUpPoll = 10 * time.Millisecond
	// servedPoll spaces the reads of the peer's state (and the service
	// probes) while it takes over.
	servedPoll = 5 * time.Millisecond
	// handoffProbeTimeout bounds one probe of the service on the floating
	// address while the peer takes over: a connection sent before the
	// peer's announcement waits for nobody, so it is cut short and tried
	// again.
	handoffProbeTimeout = 50 * time.Millisecond
)

// Promote makes this node master. Without force it refuses while the peer
// is alive and master.
func (a *Agent) Promote(ctx context.Context, force bool) (RoleResult, error) {
	d, err := a.fo.request(ctx, failover.Promote{}, force, "promote")
	if err != nil {
		return RoleResult{}, err
	}
	return a.roleResult(d, config.RoleMaster)
}

// Demote makes this node slave.
func (a *Agent) Demote(ctx context.Context) (RoleResult, error) {
	d, err := a.fo.request(ctx, failover.Demote{}, false, "demote")
	if err != nil {
		return RoleResult{}, err
	}
	return a.roleResult(d, config.RoleSlave)
}

func (a *Agent) roleResult(d failover.Decision, want config.Role) (RoleResult, error) {
	role, epoch := a.roleEpoch()
	res := RoleResult{Role: string(role), Epoch: epoch}
	switch {
	case d.State.Role != want:
		return res, fmt.Errorf("%w: %s", ErrRefused, d.Note)
	case role != want:
		return res, fmt.Errorf("%s, but persisting the role failed (retried): %s", d.Note, a.fo.status().Pending)
	case a.fo.status().Pending != "":
		return res, fmt.Errorf("%s, but effects failed and are retried: %s", d.Note, a.fo.status().Pending)
	}
	return res, nil
}

// Handoff is a planned switchover. While this master still serves, every
// dataset's pending changes are replicated (the pre-sync), so that what
// remains for the downtime is small: then this master drops its addresses,
// stops its services, sets its datasets readonly, replicates a final
// snapshot and offers the next epoch to the peer, which promotes itself;
// this node demotes when it hears that. It returns when the peer serves
// (its heartbeat says master at the new epoch and healthy).
func (a *Agent) Handoff(ctx context.Context) (HandoffResult, error) {
	ctx, cancel := context.WithTimeout(ctx, handoffWithin)
	defer cancel()
	_, epoch := a.roleEpoch()
	if a.peerCanTakeOver() {
		if err := a.presync(ctx); err != nil {
			return HandoffResult{}, fmt.Errorf("%w: %v", ErrRefused, err)
		}
	}
	begin := time.Now()
	var start time.Time
	for {
		start = time.Now()
		d, err := a.fo.request(ctx, failover.Handoff{}, false, "handoff")
		if err != nil {
			return HandoffResult{}, err
		}
		if d.State.Mode == failover.ModeHandingOff {
			break
		}
		// A master that snapshots often is a snapshot ahead most of the
		// time, and a slave reports what it received with its next
		// heartbeat: the peer catching up is worth a short wait.
		if !catchingUp(d) || time.Since(begin) > catchUpWithin {
			return HandoffResult{}, fmt.Errorf("%w: %s", ErrRefused, d.Note)
		}
		select {
		case <-ctx.Done():
			return HandoffResult{}, ctx.Err()
		case <-time.After(catchUpPoll):
		}
	}
	a.log.Info("handoff: service given up here", "pending", a.fo.status().Pending)
	// With a service probe configured the downtime is measured as a
	// client sees it: until the service answers on the floating address
	// again, which this node no longer holds. Without one it ends when the
	// peer's heartbeat says it serves.
	probe := a.fo.probes.Service
	var answered time.Time
	t := time.NewTicker(servedPoll)
	defer t.Stop()
	for {
		if probe.IsValid() && answered.IsZero() {
			pctx, pcancel := context.WithTimeout(ctx, handoffProbeTimeout)
			if failover.ProbeTCP(pctx, probe) == failover.Answered {
				answered = time.Now()
			}
			pcancel()
		}
		st := a.fo.status()
		took := st.PeerRole == string(config.RoleMaster) && st.PeerEpoch > epoch
		if took && (st.PeerHealthy || !answered.IsZero()) {
			res := HandoffResult{NewMaster: a.cfg.Peer.Name, Epoch: st.PeerEpoch, Downtime: st.PeerServingAt.Sub(start)}
			how := "peer heartbeat"
			if !answered.IsZero() {
				res.Downtime, how = answered.Sub(start), "service probe"
			}
			a.log.Info("handoff: peer serves", "peer", res.NewMaster, "epoch", res.Epoch, "downtime", res.Downtime.Round(time.Millisecond), "measured_by", how)
			return res, nil
		}
		if st.Mode == string(failover.ModeServing) {
			return HandoffResult{}, fmt.Errorf("handoff aborted: %s", st.Note)
		}
		select {
		case <-ctx.Done():
			return HandoffResult{}, fmt.Errorf("waiting for %s to serve: %w", a.cfg.Peer.Name, ctx.Err())
		case <-t.C:
		}
	}
}

// peerCanTakeOver: this node serves and the peer is alive and slave. Else
// the role machine refuses a handoff at once, with the reason, and a
// pre-sync would only wait for a peer that cannot receive.
func (a *Agent) peerCanTakeOver() bool {
	st := a.fo.status()
	return st.Mode == string(failover.ModeServing) && st.PeerLiveness == failover.Alive.String() && st.PeerRole == string(config.RoleSlave)
}

// catchingUp: the role machine refused a handover only because the peer
// has not reported the newest snapshot (or its replica) yet.
func catchingUp(d failover.Decision) bool {
	return strings.Contains(d.Note, "is not current") || strings.Contains(d.Note, "is not healthy")
}

// healthHandover starts an attempt to hand over because dataset's check
// failed check_failures times in a row, unless one runs: the supervisor
// calls it at every such failed check, so a peer that comes back, or
// catches up, later still gets the service.
func (s *supervisor) healthHandover(ctx context.Context, dataset string) {
	if !s.handingOver.CompareAndSwap(false, true) {
		return
	}
	s.wg.Go(func() {
		defer s.handingOver.Store(false)
		s.a.healthHandover(ctx, dataset)
	})
}

// failing reports that dataset's last check failed.
func (s *supervisor) failing(dataset string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.healthy[dataset]
}

// healthHandover is one attempt, run off the supervisor's loop. It asks
// the role machine, which hands over only to a peer that is alive, slave,
// healthy and current. A peer still catching up gets a short wait, and,
// like a planned handoff, a pre-sync: what is pending is replicated while
// this node still serves, so the peer becomes current and the final sync
// is small. It gives up when the check passes again or this node stops
// serving.
func (a *Agent) healthHandover(ctx context.Context, dataset string) {
	begin := time.Now()
	synced := false
	for a.fo.failing(dataset) {
		d, err := a.fo.request(ctx, failover.HealthFailed{Dataset: dataset}, false, "")
		if err != nil || d.State.Mode != failover.ModeServing || !catchingUp(d) || time.Since(begin) > catchUpWithin {
			return
		}
		if !synced && a.peerCanTakeOver() {
			synced = true
			sctx, cancel := context.WithTimeout(ctx, catchUpWithin)
			err := a.presync(sctx)
			cancel()
			if err != nil {
				a.log.Warn("health handover: replicating first failed", "dataset", dataset, "err", err)
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(catchUpPoll):
		}
	}
}

// presync replicates every dataset's changes up to now while this master
// still serves (a handoff's first phase). A node without master loops
// (not serving) has nothing to replicate: the role machine refuses its
// handoff with the reason.
func (a *Agent) presync(ctx context.Context) error {
	errs := make(chan error, len(a.order))
	n := 0
	begin := time.Now()
	for _, r := range a.order {
		if m, _ := r.loops(); m == nil {
			continue
		}
		n++
		go func() { errs <- a.syncPeer(ctx, r.ds.Name, false) }()
	}
	var all []error
	for range n {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		return fmt.Errorf("replicating before the handoff: %w", err)
	}
	if n > 0 {
		a.log.Info("handoff: pending changes replicated while serving", "datasets", n, "took", time.Since(begin).Round(time.Millisecond))
	}
	return nil
}

// SyncPeer takes a final snapshot of the dataset and waits until the peer
// holds it (failover.Handover). The dataset is readonly by now.
func (a *Agent) SyncPeer(ctx context.Context, dataset string) error {
	return a.syncPeer(ctx, dataset, true)
}

// syncPeer has the dataset's master loop take a snapshot now and waits
// until the peer holds it; final freezes the loop after it.
func (a *Agent) syncPeer(ctx context.Context, dataset string, final bool) error {
	r := a.runners[dataset]
	if r == nil {
		return fmt.Errorf("unknown dataset %q", dataset)
	}
	m, _ := r.loops()
	if m == nil {
		return fmt.Errorf("dataset %s: no master loop runs to replicate from", dataset)
	}
	ctx, cancel := context.WithTimeout(ctx, syncWithin)
	defer cancel()
	reply := make(chan error, 1)
	if !post(ctx, m.events, evSync{final: final, reply: reply}) {
		return fmt.Errorf("dataset %s: snapshot for the peer: %w", dataset, ctx.Err())
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("dataset %s: the peer did not receive the snapshot within %v", dataset, syncWithin)
	}
}

// OfferHandoff offers the peer the epoch (failover.Handover).
func (a *Agent) OfferHandoff(ctx context.Context, epoch uint64) error {
	c := a.sess.Conn()
	if c == nil {
		return errors.New("offering the handoff: no connection to the peer")
	}
	if err := sendMsg(ctx, c, &transport.Handoff{Epoch: epoch}); err != nil {
		return fmt.Errorf("offering the handoff: %w", err)
	}
	a.fo.offered()
	return nil
}

// The stash: a divergent copy kept as its own dataset.

// stashParent is where the stashes of a pool live.
func stashParent(zfs string) string {
	pool, _, _ := strings.Cut(zfs, "/")
	return pool + "/flocker-stash"
}

// stashName is <pool>/flocker-stash/<dataset>-<epoch>-<time>.
func stashName(zfs, name string, epoch uint64, at time.Time) string {
	return fmt.Sprintf("%s/%s-%d-%s", stashParent(zfs), name, epoch, at.UTC().Format("20060102T150405Z"))
}

// freeStashName is stashName at the first second from at that no dataset
// has: two divergences of one dataset at one epoch may be stashed within a
// second (seen under load), and a rename onto the first stash fails.
func freeStashName(ctx context.Context, z stashZFS, zfs, name string, epoch uint64, at time.Time) (string, error) {
	for i := range 60 {
		n := stashName(zfs, name, epoch, at.Add(time.Duration(i)*time.Second))
		taken, err := z.Exists(ctx, n)
		if err != nil {
			return "", err
		}
		if !taken {
			return n, nil
		}
	}
	return "", fmt.Errorf("dataset %s: no free stash name within a minute of %s", name, at.UTC().Format(time.RFC3339))
}

// stashZFS is what stashing needs beyond the loops' parts.
type stashZFS interface {
	Exists(ctx context.Context, name string) (bool, error)
	CreateDataset(ctx context.Context, name string, opts snapshot.CreateOptions) error
	Rename(ctx context.Context, from, to string, opts snapshot.RenameOptions) error
	Clone(ctx context.Context, snapshot, target string, props map[string]string) error
	Promote(ctx context.Context, clone string) error
	DestroyDataset(ctx context.Context, name string, opts snapshot.DestroyOptions) error
	GetProperty(ctx context.Context, name, prop string) (snapshot.Property, error)
	SetProperty(ctx context.Context, name, prop, value string) error
	InheritProperty(ctx context.Context, name, prop string) error
	Mountpoint(ctx context.Context, dataset string) (path string, mounted bool, err error)
	Mount(ctx context.Context, dataset string) error
}

// childLister lists the file systems directly under a parent.
type childLister interface {
	ListChildren(ctx context.Context, parent string) ([]string, error)
}

// CLIChildren lists children with `zfs list` through the CLI wrapper.
type CLIChildren struct{ CLI *snapshot.CLI }

// ListChildren implements childLister; a missing parent has none.
func (c CLIChildren) ListChildren(ctx context.Context, parent string) ([]string, error) {
	out, err := c.CLI.ZFS(ctx, "list", "-H", "-o", "name", "-t", "filesystem", "-r", "-d", "1", parent)
	if err != nil {
		if errors.Is(err, snapshot.ErrNotFound) || strings.Contains(err.Error(), "does not exist") {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && l != parent {
			names = append(names, l)
		}
	}
	return names, nil
}

// Stash keeps the dataset's history after the divergence base as its own
// dataset and puts a copy of the base in its place, so that replication
// from the peer continues incrementally from the base (failover.Stasher).
// Nothing is destroyed: the dataset is renamed to the stash, the base is
// cloned back under the dataset's name, and `zfs promote` gives the clone
// the snapshots up to the base. Repeating it after a success finds the
// dataset's newest snapshot to be the base and does nothing.
func (a *Agent) Stash(ctx context.Context, dataset string) error {
	r := a.runners[dataset]
	if r == nil {
		return fmt.Errorf("unknown dataset %q", dataset)
	}
	z, ok := a.raw.(stashZFS)
	if !ok {
		return errors.New("stash: the ZFS adapter cannot rename, clone or promote")
	}
	// The adapter is used unwrapped here: bound the whole stash instead.
	ctx, cancel := context.WithTimeout(ctx, DefaultZFSTimeout)
	defer cancel()
	r.mu.Lock()
	res, name := r.div, r.stash
	r.mu.Unlock()
	if res == nil || res.RollbackTo == "" {
		return fmt.Errorf("dataset %s: no divergence to stash", dataset)
	}
	base := res.RollbackTo // our name for the base
	a.stopLoop(r)
	ds := r.ds.ZFS
	exists, err := z.Exists(ctx, ds)
	if err != nil {
		return err
	}
	if exists {
		snaps, err := a.opts.ZFS.ListSnapshots(ctx, ds)
		if err != nil {
			return err
		}
		sortByTXG(snaps)
		if top := newest(snaps); top != nil && top.Name == base {
			return nil // done already
		}
		if name == "" {
			if name, err = freeStashName(ctx, z, ds, dataset, res.LoserEpoch, time.Now()); err != nil {
				return err
			}
			r.mu.Lock()
			r.stash = name
			r.mu.Unlock()
		}
		parent := stashParent(ds)
		if ok, err := z.Exists(ctx, parent); err != nil {
			return err
		} else if !ok {
			if err := z.CreateDataset(ctx, parent, snapshot.CreateOptions{}); err != nil && !errors.Is(err, snapshot.ErrExists) {
				return fmt.Errorf("creating %s: %w", parent, err)
			}
		}
		if err := z.Rename(ctx, ds, name, snapshot.RenameOptions{}); err != nil {
			return fmt.Errorf("stashing %s as %s: %w", ds, name, err)
		}
		a.log.Warn("divergent history stashed", "dataset", dataset, "stash", name, "base", base)
	}
	if name == "" {
		return fmt.Errorf("dataset %s: %s is gone and no stash is known", dataset, ds)
	}
	mp, err := moveStashMount(ctx, z, name)
	if err != nil {
		return fmt.Errorf("stash %s: %w", name, err)
	}
	props := map[string]string{"readonly": "on"}
	if mp != "" {
		props["mountpoint"] = mp
	}
	_, short, _ := strings.Cut(base, "@")
	if err := z.Clone(ctx, name+"@"+short, ds, props); err != nil && !errors.Is(err, snapshot.ErrExists) {
		return fmt.Errorf("cloning the base %s back to %s: %w", short, ds, err)
	}
	if err := z.Promote(ctx, ds); err != nil {
		return fmt.Errorf("promoting %s: %w", ds, err)
	}
	r.mu.Lock()
	r.div, r.stash = nil, ""
	r.mu.Unlock()
	a.fo.noteStash()
	a.log.Info("dataset reset to the divergence base; replication resumes from it", "dataset", dataset, "base", short, "stash", name)
	return nil
}

// stashMountProp keeps, on a stash, the local mountpoint its dataset had.
const stashMountProp = "flocker:mountpoint"

// moveStashMount gives a stash its own mountpoint and returns the local
// mountpoint the dataset had ("" when it inherited its mountpoint). A
// dataset renamed to the stash keeps a local mountpoint, so the stash would
// sit on the original's path while the base cloned back in its place got
// the mountpoint it inherits: the service would find the stash. The stash
// takes the path it inherits under <pool>/flocker-stash instead, and the
// clone the original path. The value is recorded on the stash first, so a
// retry after a failure in between still knows it.
func moveStashMount(ctx context.Context, z stashZFS, stash string) (string, error) {
	p, err := z.GetProperty(ctx, stash, "mountpoint")
	if err != nil {
		return "", err
	}
	if p.Source == "local" {
		if err := z.SetProperty(ctx, stash, stashMountProp, p.Value); err != nil {
			return "", fmt.Errorf("recording its mountpoint: %w", err)
		}
		if err := z.InheritProperty(ctx, stash, "mountpoint"); err != nil {
			return "", fmt.Errorf("moving it off %s: %w", p.Value, err)
		}
		// zfs-fuse unmounts it and leaves it so.
		if _, mounted, err := z.Mountpoint(ctx, stash); err != nil {
			return "", err
		} else if !mounted {
			if err := z.Mount(ctx, stash); err != nil && !errors.Is(err, snapshot.ErrMounted) {
				return "", fmt.Errorf("mounting it at its own mountpoint: %w", err)
			}
		}
		return p.Value, nil
	}
	kept, err := z.GetProperty(ctx, stash, stashMountProp)
	if err != nil {
		return "", err
	}
	if kept.Source == "local" && kept.IsSet() {
		return kept.Value, nil
	}
	return "", nil
}

// Stashes lists the stashes of every protected dataset's pool.
func (a *Agent) Stashes(ctx context.Context) ([]Stash, error) {
	if a.opts.Children == nil {
		return nil, errors.New("stashes: no dataset lister configured")
	}
	var out []Stash
	seen := map[string]bool{}
	for _, r := range a.order {
		parent := stashParent(r.ds.ZFS)
		if seen[parent] {
			continue
		}
		seen[parent] = true
		names, err := a.opts.Children.ListChildren(ctx, parent)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", parent, err)
		}
		for _, n := range names {
			out = append(out, a.describeStash(ctx, n))
		}
	}
	slices.SortFunc(out, func(x, y Stash) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// describeStash parses the name and reads the size.
func (a *Agent) describeStash(ctx context.Context, name string) Stash {
	s := parseStash(name)
	if p, err := a.opts.ZFS.GetProperty(ctx, name, "referenced"); err == nil {
		s.Bytes, _ = p.Uint()
	}
	return s
}

// parseStash reads <pool>/flocker-stash/<dataset>-<epoch>-<time>.
func parseStash(name string) Stash {
	s := Stash{Name: name}
	leaf := name[strings.LastIndexByte(name, '/')+1:]
	parts := strings.Split(leaf, "-")
	if n := len(parts); n >= 3 {
		if at, err := time.Parse("20060102T150405Z", parts[n-1]); err == nil {
			s.Created = at
		}
		if e, err := strconv.ParseUint(parts[n-2], 10, 64); err == nil {
			s.Epoch = e
		}
		s.Dataset = strings.Join(parts[:n-2], "-")
	}
	return s
}

// RemoveStash destroys one stash, named as Stashes lists it.
func (a *Agent) RemoveStash(ctx context.Context, name string) error {
	list, err := a.Stashes(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(list, func(s Stash) bool { return s.Name == name }) {
		return fmt.Errorf("%w: no stash %q (flocker stash list shows them)", ErrNotFound, name)
	}
	z, ok := a.raw.(stashZFS)
	if !ok {
		return errors.New("stash: the ZFS adapter cannot destroy datasets")
	}
	if err := z.DestroyDataset(ctx, name, snapshot.DestroyOptions{Recursive: true}); err != nil {
		return fmt.Errorf("removing stash %s: %w", name, err)
	}
	a.log.Info("stash removed", "stash", name)
	a.fo.noteStash()
	return nil
}

// divergence is a loop's report that both sides wrote after their common
// snapshot, with the policy's decision.
type divergence struct {
	dataset   string
	localWins bool
	res       snapshot.Resolution
}

// foDivergence carries it to the supervisor.
type foDivergence struct {
	dataset   string
	localWins bool
}

// reportDivergence is called by a dataset loop: it keeps the resolution
// for Stash and tells the supervisor.
func (a *Agent) reportDivergence(ctx context.Context, d divergence) {
	r := a.runners[d.dataset]
	if r == nil {
		return
	}
	r.mu.Lock()
	r.div = &stashPlan{RollbackTo: d.res.RollbackTo, LoserEpoch: d.loserEpoch()}
	r.mu.Unlock()
	post(ctx, a.fo.events, foDivergence{dataset: d.dataset, localWins: d.localWins})
}

// stashPlan is what Stash needs of a resolution.
type stashPlan struct {
	RollbackTo string // our name for the base
	LoserEpoch uint64 // the epoch whose writes the stash holds
}

func (d divergence) loserEpoch() uint64 {
	side := d.res.Local
	if d.localWins {
		side = d.res.Peer
	}
	e, _ := newestEpoch(side.AfterBase)
	return e
}

// newestEpoch is the epoch in the newest flocker snapshot name; ok is
// false when there is none (epoch 0 is a real epoch).
func newestEpoch(snaps []snapshot.Snapshot) (epoch uint64, ok bool) {
	for i := len(snaps) - 1; i >= 0; i-- {
		if n, err := snapshot.ParseFlockerName(snaps[i].ShortName()); err == nil {
			return n.Epoch, true
		}
	}
	return 0, false
}

// planDivergence runs the divergence planner for a loop: ours against the
// peer's list. Each side's epoch is the epoch its newest snapshot was taken
// in (the current epochs are equal by now: the demoted side took the
// peer's). Heads are unknown here (counted as changed): at worst one stash
// too many, never a lost write.
//
// Equal epochs go to the master: a slave's snapshots at the master's own
// epoch (an operator's snapshot on the replica, say) are no writes a master
// acknowledged, and must never demote the master that serves.
func planDivergence(cfg datasetConfig, local, peer []snapshot.Snapshot, localMaster bool) snapshot.Resolution {
	le, _ := newestEpoch(local)
	pe, _ := newestEpoch(peer)
	policy := cfg.policy
	if le == pe {
		if localMaster {
			le++
		} else {
			pe++
		}
		policy = snapshot.DivergeNewerEpoch
	}
	return snapshot.PlanDivergence(
		snapshot.DivergenceSide{Node: cfg.node, Epoch: le, Master: localMaster, Snapshots: local},
		snapshot.DivergenceSide{Node: cfg.peer, Epoch: pe, Master: !localMaster, Snapshots: peer},
		policy)
}

// divergedFrom reports that we hold snapshots after the newest one the
// peer also holds (and the peer holds some): replication cannot go on
// without the divergence planner.
func divergedFrom(local, peer []snapshot.Snapshot) bool {
	top := newest(local)
	if top == nil || len(peer) == 0 {
		return false
	}
	return !slices.ContainsFunc(peer, func(s snapshot.Snapshot) bool { return s.GUID == top.GUID })
}
