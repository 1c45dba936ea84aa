package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport"
)

// holdTag is the `zfs hold` tag on the master's replication base: the
// newest snapshot the slave acknowledged. Retention never destroys it and
// ZFS refuses to either, so the next transfer can always be incremental.
const holdTag = "flocker-base"

// masterZFS is what the master needs from ZFS.
type masterZFS interface {
	snapshotLister
	snapshotter
	holder
	bookmarker
	sender
	properties
}

type datasetConfig struct {
	node      string // this node's name (divergence tie-break)
	name      string // logical name
	zfs       string // this node's dataset
	peer      string // the peer's node name, for messages
	epoch     uint64
	minGap    time.Duration
	retention snapshot.RetentionPolicy
	bandwidth uint64
	features  snapshot.Features
	// receiveProps: `zfs receive -o` works (the replica is readonly from
	// its first byte); elsewhere readonly is set right after the receive.
	receiveProps bool
	zfsFuse      bool // the dialect's quirks (see slave.readonlyOn)
	observer     Observer
	// policy decides divergences, reported through diverged (failover).
	policy   snapshot.DivergencePolicy
	diverged func(context.Context, divergence)
}

// master replicates one dataset to the peer. Its loop owns all of its state;
// other goroutines talk to it through events.
type master struct {
	cfg    datasetConfig
	z      masterZFS
	log    *slog.Logger
	board  *board
	events chan any
	ids    *atomic.Uint64
	sends  sendSlots // nil: no limit
	tier   NotifierStatus
	// flush runs syncfs on the dataset right before each snapshot when
	// the notifier leaves that to us (nil: the notifier flushed).
	flush func()

	local     []snapshot.Snapshot // oldest first, kept in memory
	marks     []snapshot.Bookmark
	covers    map[uint64]time.Time // snapshot GUID -> first change it holds
	seq       uint64
	trig      Trigger
	snapFails int
	snapRetry time.Time

	conn      *transport.Conn
	connAt    time.Time // when conn came up (see connSettle)
	peerRole  transport.Role
	peerEpoch uint64
	peer      []snapshot.Snapshot
	peerKnown bool
	peerToken string

	held   []string  // snapshots carrying holdTag (normally just the base)
	holdAt time.Time // when the hold last moved (see holdTrail)
	busyAt time.Time // the last snapshot or acknowledged transfer (see holdQuiet)
	// startedAt and peerSeen: until the peer's first list after a start
	// (or resumeKeep), nothing newer than the held base is pruned; an
	// interrupted transfer before the restart carried one of them, and the
	// peer may hold a resume token for it.
	startedAt   time.Time
	peerSeen    bool
	xfer        *outgoing
	interrupted *outgoing // the last transfer that broke off, for a resume
	resumeBad   string    // a token that failed to resume: never tried again
	fails       int
	retryAt     time.Time
	pruneDue    bool
	lastPrune   time.Time
	conflict    string
	syncs       []evSync // planned handoff: waiting for a snapshot to reach the peer
	divKey      string   // the divergence last planned (our newest/peer's newest)
	// frozen: a handoff's final snapshot reached the peer; no snapshot
	// after it, or the peer taking over would find ours diverged.
	frozen bool

	st DatasetStatus
}

// outgoing is one transfer to the peer. Fields the send goroutine writes
// are atomics; the rest belong to the loop.
type outgoing struct {
	id       uint64
	conn     *transport.Conn
	kind     string // full, incremental, resume
	base     *snapshot.Base
	target   snapshot.Snapshot
	between  int
	token    string
	started  time.Time
	cancel   context.CancelFunc
	stopping func() bool // the agent is stopping (else a cancel is the loop's)
	bytes    atomic.Uint64
	estimate atomic.Uint64
	estSrc   atomic.Pointer[string]

	done      chan struct{} // closed when the send goroutine returns
	running   bool          // the send goroutine has not reported yet
	sentOK    bool
	sentAt    time.Time
	acked     bool
	failed    bool
	nextNote  time.Time
	finalSize int64
}

func newMaster(cfg datasetConfig, z masterZFS, tier NotifierStatus, ids *atomic.Uint64, sends sendSlots, log *slog.Logger) *master {
	return &master{
		sends:  sends,
		cfg:    cfg,
		z:      z,
		log:    log.With("dataset", cfg.name, "zfs", cfg.zfs, "role", "master"),
		board:  &board{},
		events: make(chan any, eventQueue),
		ids:    ids,
		tier:   tier,
		covers: map[uint64]time.Time{},
		trig:   Trigger{MinInterval: cfg.minGap},
		st:     DatasetStatus{Name: cfg.name, ZFS: cfg.zfs, Role: "master", Notifier: tier},
	}
}

// init reads what the loop keeps in memory: the snapshot list (once), the
// bookmarks, our holds (stale ones released), and marks the dataset dirty:
// whatever was written while no agent ran gets a snapshot at once.
func (m *master) init(ctx context.Context, now time.Time) error {
	snaps, err := m.z.ListSnapshots(ctx, m.cfg.zfs)
	if err != nil {
		return fmt.Errorf("dataset %s: %w", m.cfg.name, err)
	}
	sortByTXG(snaps)
	m.local = snaps
	m.seq = nextSeq(snaps, m.cfg.epoch)
	m.startedAt = now
	if m.cfg.features.Bookmarks {
		if m.marks, err = m.z.ListBookmarks(ctx, m.cfg.zfs); err != nil {
			return fmt.Errorf("dataset %s: %w", m.cfg.name, err)
		}
		// A base destroyed by hand lives on as its bookmark, and in the
		// peer's replica under its name: a new snapshot must not take it.
		m.seq = max(m.seq, nextSeq(marksAsSnapshots(m.marks), m.cfg.epoch))
	}
	if m.cfg.features.Holds {
		if err := m.cleanHolds(ctx); err != nil {
			return fmt.Errorf("dataset %s: %w", m.cfg.name, err)
		}
	}
	m.trig.Change(now)
	m.st.Snapshots.Local = len(m.local)
	m.log.Info("master ready", "snapshots", len(m.local), "next_seq", m.seq, "held", m.held)
	return nil
}

// cleanHolds keeps our hold on the newest held snapshot (the last base we
// knew) and releases it everywhere else: older holds are left over from a
// crash between placing a new hold and releasing the old one. Where the
// dialect cannot list tags (zfs-fuse) every held snapshot is a candidate;
// releasing a tag that is not there is harmless.
func (m *master) cleanHolds(ctx context.Context) error {
	holds, err := m.z.Holds(ctx, m.cfg.zfs)
	if err != nil {
		return err
	}
	txg := map[string]uint64{}
	for _, s := range m.local {
		txg[s.Name] = s.CreateTXG
	}
	var ours []string
	for _, h := range holds {
		if h.Tags == nil || slices.Contains(h.Tags, holdTag) {
			ours = append(ours, h.Snapshot)
		}
	}
	if len(ours) == 0 {
		return nil
	}
	slices.SortFunc(ours, func(a, b string) int { return int(txg[a]) - int(txg[b]) })
	keep := ours[len(ours)-1]
	for _, s := range ours[:len(ours)-1] {
		if err := m.z.Release(ctx, holdTag, s); err != nil && !errors.Is(err, snapshot.ErrNoSuchHold) {
			warnUnlessStopping(ctx, m.log, "releasing a stale hold failed", "snapshot", s, "err", err)
			m.held = append(m.held, s)
			continue
		}
		m.log.Info("released stale hold", "snapshot", s, "tag", holdTag)
	}
	// Without tag lists the newest held snapshot may carry someone else's
	// hold only; it is our presumed base until the peer's list says which
	// snapshot is, and releasing our tag there later is harmless.
	m.held = append(m.held, keep)
	return nil
}

func (m *master) run(ctx context.Context) {
	defer m.shutdown()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wake := m.step(ctx, time.Now())
		if wake.IsZero() {
			wake = time.Now().Add(time.Hour)
		}
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
			return
		case ev := <-m.events:
			m.handle(ctx, ev, time.Now())
		case <-timer.C:
		}
	}
}

// shutdown stops a transfer in flight and waits for its goroutine.
func (m *master) shutdown() {
	x := m.xfer
	if x == nil || !x.running {
		return
	}
	x.cancel()
	<-x.done
	m.log.Info("transfer stopped: shutting down", "id", x.id, "target", x.target.ShortName(), "bytes", x.bytes.Load())
}

// evSent is the send goroutine's report.
type evSent struct {
	x   *outgoing
	n   int64
	err error
}

func (m *master) handle(ctx context.Context, ev any, now time.Time) {
	switch ev := ev.(type) {
	case evChange:
		m.trig.Change(ev.at)
	case evConnUp:
		if m.xfer != nil && m.xfer.conn != ev.c {
			m.fail(m.xfer, codeTransport, errors.New("connection replaced"), now)
		}
		m.conn, m.connAt, m.peerKnown, m.peer, m.peerToken = ev.c, now, false, nil, ""
		m.peerRole, m.peerEpoch = ev.c.Peer().Role, ev.c.Peer().Epoch
		// The peer's view of our snapshots, for its status.
		m.sendList(ctx)
	case evPeerRole:
		m.peerRole, m.peerEpoch = ev.role, ev.epoch
		if ev.role == transport.RoleSlave && m.conn != nil {
			// A peer that just became slave plans its divergence from our list.
			m.sendList(ctx)
		}
	case evThaw:
		m.frozen = false
	case evSync:
		// A snapshot now, whatever the notifier saw.
		m.trig.Change(now)
		ev.at = now
		m.syncs = append(m.syncs, ev)
	case evConnDown:
		if ev.c != m.conn {
			return
		}
		if m.xfer != nil && m.xfer.conn == ev.c {
			m.fail(m.xfer, codeTransport, fmt.Errorf("connection lost: %w", ev.c.Err()), now)
		}
		if m.peerKnown {
			// The hold trails acks (holdQuiet, holdTrail) and moves only
			// while the peer is known: move it now to the newest snapshot
			// the departing peer holds, so that the hold and the bookmark,
			// which outlast a restart, name the real base. Left on an
			// older one, a master restarted and alone for resumeKeep would
			// prune the real base.
			m.syncHold(ctx, now)
		}
		m.conn, m.peerKnown = nil, false
	case evList:
		if ev.c != m.conn {
			return
		}
		m.peer = fromWire(m.cfg.peer+":"+m.cfg.name, ev.m.Snapshots)
		// Names the peer holds stay taken, whatever happened here since.
		m.seq = max(m.seq, nextSeq(m.peer, m.cfg.epoch))
		m.peerToken = ev.m.ResumeToken
		m.peerKnown = true
		m.peerSeen = true
		m.st.NewestPeer = ref(newest(m.peer))
		m.st.Snapshots.Peer = len(m.peer)
		m.checkDivergence(ctx)
	case evAck:
		m.ack(ev, now)
	case evSent:
		m.sent(ev, now)
	case evDone, evTransfer:
		// Only a slave receives transfers; the agent refuses them before
		// they get here.
	}
}

func (m *master) sendList(ctx context.Context) {
	if err := sendMsg(ctx, m.conn, &transport.SnapshotList{Dataset: m.cfg.name, Snapshots: toWire(m.wireList())}); err != nil {
		warnUnlessStopping(ctx, m.log, "sending snapshot list failed", "err", err)
	}
}

// checkDivergence runs the divergence planner when the slave holds
// snapshots we lack: both sides wrote after their common snapshot. The
// slave runs it too, with the sides swapped; the loser stashes. We send
// our list so that the slave has it to plan with.
func (m *master) checkDivergence(ctx context.Context) {
	if !divergedFrom(m.peer, m.local) {
		m.divKey = ""
		return
	}
	key := fmt.Sprintf("%d/%d", newest(m.local).GUID, newest(m.peer).GUID)
	if key == m.divKey {
		return
	}
	m.divKey = key
	m.sendList(ctx)
	res := planDivergence(m.cfg, m.local, m.peer, true)
	if res.Conflict != nil {
		m.log.Error("divergence needs the operator", "conflict", res.Conflict.Error())
		return
	}
	m.log.Warn("divergence", "winner", res.Winner.String(), "decided_by", res.DecidedBy.String(), "base", res.Base.Local,
		"ours_after_base", len(res.Local.AfterBase), "peers_after_base", len(res.Peer.AfterBase))
	if res.Winner == snapshot.SidePeer && m.cfg.diverged != nil {
		m.cfg.diverged(ctx, divergence{dataset: m.cfg.name, localWins: false, res: res})
	}
}

// wireList is our list as the peer may see it: flocker's own snapshots and
// the operator's alike (GUIDs are what count).
func (m *master) wireList() []snapshot.Snapshot {
	if len(m.local) > 8192 {
		return m.local[len(m.local)-8192:]
	}
	return m.local
}

// step does whatever is due at now and returns when it next needs to run
// without an event (zero: only an event can make anything due).
//
// The order keeps zfs runs off the replication path: a snapshot that
// waited for the last transfer goes out before the loop spends a zfs run
// on the next snapshot, and the hold moves once replication has been quiet
// for holdQuiet (or every holdTrail), never between the peer's list and
// its ack.
func (m *master) step(ctx context.Context, now time.Time) time.Time {
	var wake time.Time
	// First: a handoff waits on it with its service stopped, and the
	// hold moves below cost a zfs command each.
	m.answerSyncs(now)
	wake = earliest(wake, m.startDue(ctx, now))
	if m.frozen {
		// No snapshots: the peer takes over from the final one.
	} else if now.Before(m.snapRetry) {
		wake = earliest(wake, m.snapRetry)
	} else {
		take, at := m.trig.Decide(now, m.snapshotWaiting())
		if take {
			m.takeSnapshot(ctx, now)
			if !m.snapRetry.IsZero() && now.Before(m.snapRetry) {
				wake = earliest(wake, m.snapRetry)
			}
			wake = earliest(wake, m.startDue(ctx, now))
		}
		wake = earliest(wake, at)
	}
	if m.peerKnown && !m.ackDue() {
		due := m.holdAt.Add(holdTrail)
		if dirty, _ := m.trig.Dirty(); m.xfer == nil && !dirty {
			due = earliest(due, m.busyAt.Add(holdQuiet))
		}
		if !now.Before(due) {
			m.syncHold(ctx, now)
		} else {
			wake = earliest(wake, due)
		}
	}
	if x := m.xfer; x != nil && !x.failed {
		if x.running && !now.Before(x.nextNote) {
			m.noteProgress(x, now)
		}
		if x.running {
			wake = earliest(wake, x.nextNote)
		}
		if x.sentOK && !x.acked {
			if now.Sub(x.sentAt) > ackTimeout {
				m.fail(x, codeAckTimeout, fmt.Errorf("no ack %v after the stream ended", ackTimeout), now)
			} else {
				wake = earliest(wake, x.sentAt.Add(ackTimeout))
			}
		}
	}
	if m.pruneDue {
		if due := m.lastPrune.Add(pruneEvery); now.Before(due) {
			wake = earliest(wake, due)
		} else {
			m.prune(ctx, now)
		}
	}
	m.publish(now)
	return wake
}

// startDue starts the next transfer when none is in flight and nothing
// holds it back, and returns when to look again (zero: on an event).
func (m *master) startDue(ctx context.Context, now time.Time) time.Time {
	if m.xfer != nil {
		return time.Time{}
	}
	switch settled := m.connAt.Add(connSettle); {
	case now.Before(m.retryAt):
		return m.retryAt
	case m.conn != nil && now.Before(settled):
		return settled
	}
	m.maybeStart(ctx, now)
	return time.Time{}
}

// ackDue reports that the peer's list holds the transfer in flight, so
// its ack comes next (the peer sends its list just before the ack):
// moving the hold now would delay the next transfer by two zfs runs.
func (m *master) ackDue() bool {
	x := m.xfer
	return x != nil && !x.failed && !x.acked &&
		slices.ContainsFunc(m.peer, func(s snapshot.Snapshot) bool { return s.GUID == x.target.GUID })
}

// answerSyncs tells the waiting handoffs that the peer holds the snapshot
// taken for them (the first one taken after they asked) or a later one: a
// snapshot that waited for a transfer may be skipped for a newer one.
func (m *master) answerSyncs(now time.Time) {
	if len(m.syncs) == 0 {
		return
	}
	var held uint64 // the newest TXG of ours the peer holds
	peer := map[uint64]bool{}
	for _, s := range m.peer {
		peer[s.GUID] = true
	}
	for _, s := range m.local {
		if peer[s.GUID] {
			held = max(held, s.CreateTXG)
		}
	}
	kept := m.syncs[:0]
	for _, w := range m.syncs {
		if w.txg != 0 && held >= w.txg {
			w.reply <- nil
			m.log.Info("peer holds the snapshot for the handoff", "final", w.final, "waited", now.Sub(w.at).Round(time.Millisecond))
			continue
		}
		kept = append(kept, w)
	}
	m.syncs = kept
}

// snapshotWaiting reports a snapshot newer than the transfer in flight.
func (m *master) snapshotWaiting() bool {
	if m.xfer == nil {
		return false
	}
	n := newest(m.local)
	return n != nil && n.GUID != m.xfer.target.GUID
}

// snapshotFlusher is the notifier side of "clear flag, syncfs, snapshot"
// when the notifier leaves the syncfs to its consumer (Watcher with
// ConsumerFlushes).
type snapshotFlusher interface{ FlushBeforeSnapshot(dataset string) }

func (m *master) takeSnapshot(ctx context.Context, now time.Time) {
	_, since := m.trig.Dirty()
	if m.flush != nil {
		m.flush()
	}
	name := m.cfg.zfs + "@" + snapshot.FlockerName{Epoch: m.cfg.epoch, Seq: m.seq}.String()
	err := m.z.Snapshot(ctx, name)
	if errors.Is(err, snapshot.ErrExists) {
		// Someone took this name (or a snapshot we never listed): skip it.
		m.seq++
		name = m.cfg.zfs + "@" + snapshot.FlockerName{Epoch: m.cfg.epoch, Seq: m.seq}.String()
		err = m.z.Snapshot(ctx, name)
	}
	var got []snapshot.Snapshot
	if err == nil {
		got, err = m.z.GetSnapshots(ctx, name)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		m.snapFails++
		d := retryDelay(m.snapFails, rand.Float64())
		m.snapRetry = now.Add(d)
		m.st.LastError = problem(codeSnapshotFailed, err, now)
		m.log.Error("snapshot failed", "snapshot", name, "err", err, "retry_in", d)
		return
	}
	m.snapFails, m.snapRetry = 0, time.Time{}
	for i, w := range m.syncs {
		if w.txg == 0 {
			m.syncs[i].txg = got[0].CreateTXG
		}
		if w.final {
			// A handoff's final snapshot: the dataset is readonly, nothing
			// after it can hold a write, and the peer takes over from it.
			m.frozen = true
		}
	}
	m.trig.Taken(now)
	m.busyAt = now
	m.seq++
	s := got[0]
	m.local = append(m.local, s)
	sortByTXG(m.local)
	if !since.IsZero() {
		m.covers[s.GUID] = since
	}
	m.st.Snapshots.Taken++
	m.pruneDue = true
	m.log.Info("snapshot taken", "snapshot", s.ShortName(), "guid", s.GUID, "took", time.Since(now).Round(time.Microsecond),
		"change_age", now.Sub(since).Round(time.Microsecond))
}

// syncHold moves our hold to the replication base once the peer's list is
// known: the newest snapshot both sides hold. While transfers follow each
// other it moves at most every holdTrail (step), not per transfer: two zfs
// runs per cycle would slow every cycle.
func (m *master) syncHold(ctx context.Context, now time.Time) {
	if !m.cfg.features.Holds {
		return
	}
	plan := snapshot.PlanReplication(m.local, m.peer, m.marks...)
	base := plan.Base
	if plan.Conflict != nil {
		base = plan.Conflict.Base
	}
	if base == nil || base.Bookmark {
		return
	}
	if len(m.held) == 1 && m.held[0] == base.Local {
		return
	}
	m.holdAt = now
	m.moveHold(ctx, base.Local)
}

// moveHold holds base first, then releases every other hold of ours, so the
// base is never unprotected.
func (m *master) moveHold(ctx context.Context, base string) {
	if !slices.Contains(m.held, base) {
		if err := m.z.Hold(ctx, holdTag, base); err != nil && !errors.Is(err, snapshot.ErrHoldExists) {
			warnUnlessStopping(ctx, m.log, "holding the replication base failed", "snapshot", base, "err", err)
			return
		}
		m.held = append(m.held, base)
	}
	var stale []string
	for _, h := range m.held {
		if h != base {
			stale = append(stale, h)
		}
	}
	kept := []string{base}
	if len(stale) > 0 {
		if err := m.z.Release(ctx, holdTag, stale...); err != nil && !errors.Is(err, snapshot.ErrNoSuchHold) && !errors.Is(err, snapshot.ErrNotFound) {
			warnUnlessStopping(ctx, m.log, "releasing the old base failed; retrying later", "snapshots", stale, "err", err)
			kept = append(kept, stale...)
		}
	}
	m.held = kept
	m.log.Debug("hold moved", "base", base, "released", stale)
	if m.cfg.features.Bookmarks {
		m.bookmarkBase(ctx, base)
	}
}

// bookmarkBase bookmarks the base (dataset#flocker-E-S) and drops older
// flocker bookmarks: an incremental can start from it even after the
// snapshot itself is gone.
func (m *master) bookmarkBase(ctx context.Context, base string) {
	short := snapshot.Snapshot{Name: base}.ShortName()
	mark := m.cfg.zfs + "#" + short
	if err := m.z.CreateBookmark(ctx, base, mark); err != nil && !errors.Is(err, snapshot.ErrExists) {
		warnUnlessStopping(ctx, m.log, "bookmarking the base failed", "snapshot", base, "err", err)
		return
	}
	marks, err := m.z.ListBookmarks(ctx, m.cfg.zfs)
	if err != nil {
		warnUnlessStopping(ctx, m.log, "listing bookmarks failed", "err", err)
		return
	}
	kept := marks[:0]
	for _, b := range marks {
		i := len(m.cfg.zfs) + 1
		if b.Name != mark && len(b.Name) > i && snapshot.IsFlockerName(b.Name[i:]) {
			if err := m.z.DestroyBookmark(ctx, b.Name); err != nil {
				warnUnlessStopping(ctx, m.log, "destroying an old bookmark failed", "bookmark", b.Name, "err", err)
				kept = append(kept, b)
			}
			continue
		}
		kept = append(kept, b)
	}
	m.marks = kept
}

// maybeStart plans and starts the next transfer when the peer is there.
func (m *master) maybeStart(ctx context.Context, now time.Time) {
	if m.conn == nil || !m.peerKnown {
		return
	}
	if m.peerRole != transport.RoleSlave {
		m.setConflict(fmt.Sprintf("peer %s also claims the %s role (epoch %d): not replicating", m.cfg.peer, m.peerRole, m.peerEpoch), now)
		return
	}
	if x := m.resumable(ctx); x != nil {
		m.start(ctx, x, now)
		return
	}
	plan := snapshot.PlanReplication(m.local, m.peer, m.marks...)
	switch plan.Action {
	case snapshot.ActNothing:
		m.setConflict("", now)
	case snapshot.ActConflict:
		m.setConflict(plan.Conflict.Error(), now)
	case snapshot.ActFull, snapshot.ActIncremental:
		m.setConflict("", now)
		kind := "full"
		if plan.Action == snapshot.ActIncremental {
			kind = "incremental"
		}
		m.start(ctx, &outgoing{kind: kind, base: plan.Base, target: plan.Target, between: len(plan.Between)}, now)
	}
}

// resumable returns a resume of the interrupted transfer when the peer
// reports a partial receive: of the transfer that broke off here, or, after
// this agent restarted, of whatever the token names when its target (and
// source) still exist here, read from the token with `zfs send -nP -t`. A
// token that cannot be resumed is never tried again; the slave then drops
// its partial state for the next planned stream.
func (m *master) resumable(ctx context.Context) *outgoing {
	tok, x := m.peerToken, m.interrupted
	if tok == "" || tok == m.resumeBad {
		return nil
	}
	if x != nil && slices.ContainsFunc(m.local, func(s snapshot.Snapshot) bool { return s.GUID == x.target.GUID }) {
		return &outgoing{kind: "resume", base: x.base, target: x.target, token: tok}
	}
	if !m.cfg.features.ResumableReceive {
		return nil
	}
	info, err := m.z.ResumeInfo(ctx, tok)
	if err != nil {
		if ctx.Err() == nil {
			m.resumeBad = tok
			m.log.Warn("the peer's partial receive cannot be resumed from here; sending anew", "err", err)
		}
		return nil
	}
	i := slices.IndexFunc(m.local, func(s snapshot.Snapshot) bool { return s.GUID == info.ToGUID })
	if i < 0 {
		m.resumeBad = tok
		m.log.Info("the peer's partial receive is of a snapshot we no longer hold; sending anew", "guid", info.ToGUID, "name", info.ToName)
		return nil
	}
	out := &outgoing{kind: "resume", target: m.local[i], token: tok}
	if info.FromGUID != 0 {
		out.base = m.baseOf(info.FromGUID)
		if out.base == nil {
			m.resumeBad = tok
			m.log.Info("the peer's partial receive starts from a snapshot we no longer hold; sending anew", "from_guid", info.FromGUID)
			return nil
		}
	}
	m.log.Info("resuming the peer's partial receive", "target", out.target.ShortName(), "received", info.Bytes, "remaining", info.Remaining)
	out.estimate.Store(uint64(max(info.Remaining, 0)))
	src := "send -nP -t"
	out.estSrc.Store(&src)
	return out
}

// marksAsSnapshots names bookmarks as snapshots (dataset@mark), for their
// flocker names.
func marksAsSnapshots(marks []snapshot.Bookmark) []snapshot.Snapshot {
	out := make([]snapshot.Snapshot, len(marks))
	for i, b := range marks {
		out[i] = snapshot.Snapshot{Name: strings.Replace(b.Name, "#", "@", 1), GUID: b.GUID, CreateTXG: b.CreateTXG}
	}
	return out
}

// mayResume reports that the peer may hold a partial receive we have not
// resumed or given up on yet: it said so, or it has not spoken since this
// agent started (for at most resumeKeep, so that a peer gone for good does
// not stop pruning).
func (m *master) mayResume(now time.Time) bool {
	if m.peerKnown && m.peerToken != "" && m.peerToken != m.resumeBad {
		return true
	}
	return !m.peerSeen && now.Before(m.startedAt.Add(resumeKeep))
}

// baseOf finds a local snapshot, else a bookmark, with guid.
func (m *master) baseOf(guid uint64) *snapshot.Base {
	for _, s := range m.local {
		if s.GUID == guid {
			return &snapshot.Base{GUID: guid, Local: s.Name, LocalTXG: s.CreateTXG}
		}
	}
	for _, b := range m.marks {
		if b.GUID == guid {
			return &snapshot.Base{GUID: guid, Local: b.Name, LocalTXG: b.CreateTXG, Bookmark: true}
		}
	}
	return nil
}

func (m *master) setConflict(c string, now time.Time) {
	if c == m.conflict {
		return
	}
	m.conflict = c
	if c != "" {
		m.log.Warn("replication stopped: conflict (not resolved automatically)", "conflict", c)
		m.st.LastError = &Problem{Code: codeConflict, Message: c, At: now}
	}
}

func (m *master) start(ctx context.Context, x *outgoing, now time.Time) {
	x.id = m.ids.Add(1)
	x.conn = m.conn
	x.started = now
	x.running = true
	x.nextNote = now.Add(progressEvery)
	xctx, cancel := context.WithCancel(ctx)
	x.cancel = cancel
	x.stopping = func() bool { return ctx.Err() != nil }
	m.xfer = x
	args := []any{"id", x.id, "kind", x.kind, "target", x.target.ShortName()}
	if x.base != nil {
		args = append(args, "base", x.base.Local)
	}
	m.log.Info("transfer started", args...)
	x.done = make(chan struct{})
	go func() {
		n, err := m.send(xctx, x)
		close(x.done)
		post(ctx, m.events, evSent{x: x, n: n, err: err})
	}()
}

// send runs on its own goroutine: estimate, open the stream, zfs send into
// it, then the TransferDone account.
func (m *master) send(ctx context.Context, x *outgoing) (int64, error) {
	hdr := transport.TransferBegin{
		ID: x.id, Dataset: m.cfg.name, TargetGUID: x.target.GUID, Target: x.target.ShortName(), Resume: x.kind == "resume",
	}
	if x.base != nil {
		hdr.BaseGUID = x.base.GUID
	}
	release, err := m.sends.acquire(ctx, func() {
		m.log.Info("transfer waits for a free slot", "id", x.id, "limit", cap(m.sends))
	})
	if err != nil {
		return 0, err
	}
	defer release()
	if est := x.estimate.Load(); est > 0 {
		hdr.EstimatedBytes = min(est, 1<<56)
	} else if est, src := m.estimate(ctx, x); est > 0 {
		hdr.EstimatedBytes = min(est, 1<<56)
		x.estimate.Store(hdr.EstimatedBytes)
		x.estSrc.Store(&src)
	}
	ot, err := x.conn.OpenTransfer(ctx, hdr)
	if err != nil {
		return 0, fmt.Errorf("opening the transfer: %w", err)
	}
	// A cut stream tells the peer why: this agent stops (the peer keeps
	// calm), or the loop gave up on the transfer.
	cut := func() transport.AbortCode {
		if x.stopping != nil && x.stopping() {
			return transport.AbortShutdown
		}
		return transport.AbortCanceled
	}
	// A write blocked on flow control ends when the stream is reset.
	stop := context.AfterFunc(ctx, func() { ot.Abort(cut()) })
	defer stop()
	var w io.Writer = countingTransfer{ot, &x.bytes}
	if m.cfg.bandwidth > 0 {
		w = &pacedWriter{ctx: ctx, w: w, b: newBucket(m.cfg.bandwidth, time.Now())}
	}
	var n int64
	if x.kind == "resume" {
		n, err = m.z.SendResume(ctx, x.token, w)
	} else {
		opts := snapshot.SendOptions{}
		if x.base != nil {
			opts.From = x.base.Local
		}
		n, err = m.z.Send(ctx, x.target.Name, w, opts)
	}
	done := transport.TransferDone{ID: x.id, Dataset: m.cfg.name, TargetGUID: x.target.GUID, Bytes: uint64(max(n, 0))}
	if err != nil {
		code := transport.AbortSendFailed
		if ctx.Err() != nil {
			code = cut()
		}
		ot.Abort(code)
		done.Error = errText(err)
		_ = sendMsg(context.WithoutCancel(ctx), x.conn, &done)
		return n, err
	}
	if err := ot.Close(); err != nil {
		return n, err
	}
	if err := sendMsg(ctx, x.conn, &done); err != nil {
		return n, fmt.Errorf("sending transfer-done: %w", err)
	}
	return n, nil
}

// estimate sizes a stream for progress: `zfs send -nP` where the dialect
// has it; for a full stream elsewhere the snapshot's referenced bytes (the
// data a full stream carries, without the stream's small overhead). A
// steady-state incremental (one snapshot after the base) is not estimated:
// it is small, and the estimate would cost a zfs exec per cycle.
func (m *master) estimate(ctx context.Context, x *outgoing) (uint64, string) {
	if x.kind == "resume" {
		r, err := m.z.ResumeInfo(ctx, x.token)
		if err != nil || r.Remaining <= 0 {
			return 0, ""
		}
		return uint64(r.Remaining), "send -nP -t"
	}
	if x.kind == "incremental" && x.between == 0 {
		return 0, ""
	}
	opts := snapshot.SendOptions{}
	if x.base != nil {
		opts.From = x.base.Local
	}
	n, err := m.z.EstimateSend(ctx, x.target.Name, opts)
	if err == nil && n > 0 {
		return uint64(n), "send -nP"
	}
	if !errors.Is(err, snapshot.ErrUnsupported) && err != nil {
		warnUnlessStopping(ctx, m.log, "estimating the send failed", "err", err)
	}
	if x.kind != "full" {
		return 0, ""
	}
	p, err := m.z.GetProperty(ctx, x.target.Name, "referenced")
	if err != nil {
		warnUnlessStopping(ctx, m.log, "reading referenced for the estimate failed", "err", err)
		return 0, ""
	}
	v, err := strconv.ParseUint(p.Value, 10, 64)
	if err != nil {
		return 0, ""
	}
	return v, "referenced"
}

type countingTransfer struct {
	w *transport.OutgoingTransfer
	n *atomic.Uint64
}

func (c countingTransfer) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}

func (m *master) noteProgress(x *outgoing, now time.Time) {
	x.nextNote = now.Add(progressEvery)
	b, est := x.bytes.Load(), x.estimate.Load()
	el := now.Sub(x.started)
	args := []any{"id", x.id, "kind", x.kind, "target", x.target.ShortName(), "bytes", b, "estimate", est,
		"elapsed", el.Round(time.Millisecond), "rate_bps", uint64(float64(b) / el.Seconds())}
	if est > 0 {
		args = append(args, "percent", min(100, b*100/est))
	}
	m.log.Info("transfer in flight", args...)
}

// sent handles the send goroutine's report.
func (m *master) sent(ev evSent, now time.Time) {
	x := ev.x
	x.running = false
	x.finalSize = ev.n
	if x != m.xfer {
		return
	}
	if x.failed {
		m.xfer = nil
		return
	}
	if ev.err != nil {
		if x.acked {
			// The peer has it; only the account afterwards failed.
			m.complete(x, now)
			return
		}
		code := codeSendFailed
		if x.kind == "resume" {
			m.resumeBad = x.token
		}
		if errors.Is(ev.err, net.ErrClosed) || errors.Is(ev.err, transport.ErrTransferAborted) {
			code = codeTransport
		}
		m.fail(x, code, ev.err, now)
		return
	}
	x.sentOK, x.sentAt = true, now
	m.log.Debug("stream sent", "id", x.id, "bytes", ev.n, "since_start", now.Sub(x.started))
	if x.acked {
		m.complete(x, now)
	}
}

// ack handles the peer's Ack.
func (m *master) ack(ev evAck, now time.Time) {
	x := m.xfer
	if x == nil || ev.c != x.conn || ev.m.ID != x.id || x.failed {
		m.log.Debug("ignoring ack for another transfer", "id", ev.m.ID)
		return
	}
	if ev.m.Error != "" {
		if ev.m.Code == codeRefused && slices.ContainsFunc(m.peer, func(p snapshot.Snapshot) bool { return p.GUID == x.target.GUID }) {
			// An earlier attempt delivered the target and its ack was lost
			// (a connection replaced mid-transfer): the list the peer sent
			// before refusing shows it. Delivered, not failed.
			m.log.Info("peer already held the target: an earlier ack was lost", "id", x.id, "target", x.target.ShortName())
			x.acked = true
			if !x.running {
				m.complete(x, now)
			}
			return
		}
		code := ev.m.Code
		if code == "" {
			code = codeReceiveFailed
		}
		m.fail(x, code, fmt.Errorf("peer %s: %s", m.cfg.peer, ev.m.Error), now)
		return
	}
	if ev.m.ReceivedGUID != x.target.GUID {
		m.fail(x, codeReceiveFailed, fmt.Errorf("peer acknowledged guid %d, sent %d", ev.m.ReceivedGUID, x.target.GUID), now)
		return
	}
	x.acked = true
	m.log.Debug("ack received", "id", x.id, "stream_running", x.running)
	if !x.running {
		m.complete(x, now)
	}
}

// complete records an acknowledged transfer: lag, counters, and the
// retention due now that the base moved (the hold moves in step, from the
// peer's list that came just before the Ack).
func (m *master) complete(x *outgoing, now time.Time) {
	m.xfer, m.interrupted, m.fails, m.retryAt = nil, nil, 0, time.Time{}
	m.busyAt = now
	m.st.Snapshots.Transfers++
	m.st.Snapshots.BytesSent += x.bytes.Load()
	// The oldest change this transfer delivered: the earliest covered change
	// of the snapshots after the old base up to the target.
	var oldest time.Time
	for _, s := range m.local {
		if s.CreateTXG > x.target.CreateTXG {
			break
		}
		if t, ok := m.covers[s.GUID]; ok {
			oldest = earliest(oldest, t)
			delete(m.covers, s.GUID)
		}
	}
	args := []any{"id", x.id, "kind", x.kind, "target", x.target.ShortName(), "bytes", x.bytes.Load(),
		"took", now.Sub(x.started).Round(time.Microsecond)}
	if !oldest.IsZero() {
		lag := now.Sub(oldest)
		m.st.LastLag = lag
		m.cfg.observer.Replicated(m.cfg.name, lag)
		args = append(args, "lag", lag.Round(time.Microsecond), "lag_ms", float64(lag.Microseconds())/1000)
	}
	m.pruneDue = true
	m.log.Info("replicated", args...)
}

// fail records a failed transfer and schedules the retry.
func (m *master) fail(x *outgoing, code string, err error, now time.Time) {
	if x.failed {
		return
	}
	x.failed = true
	if x.cancel != nil {
		x.cancel()
	}
	if !x.running {
		m.xfer = nil
	}
	if x.kind != "resume" && x.bytes.Load() > 0 {
		m.interrupted = x
	}
	m.fails++
	d := retryDelay(m.fails, rand.Float64())
	switch code {
	case codeModified, codeResumeDiscard, codeMismatch:
		// The slave repaired its side already (or our list was stale): go again.
		d = retryFirst
	}
	m.retryAt = now.Add(d)
	m.st.Snapshots.FailedTransfers++
	m.st.LastError = problem(code, err, now)
	args := []any{"id", x.id, "kind", x.kind, "target", x.target.ShortName(), "code", code, "err", err,
		"bytes", x.bytes.Load(), "retry_in", d.Round(time.Millisecond)}
	switch {
	case code == codePoolFull:
		m.log.Error("peer's pool is full: transfer failed; still serving and retrying", args...)
	case peerStopped(err):
		m.log.Info("transfer interrupted: the peer is shutting down", args...)
	default:
		m.log.Warn("transfer failed", args...)
	}
}

// prune applies retention: never the newest (PlanRetention), the held base,
// the target in flight or the peer's newest.
func (m *master) prune(ctx context.Context, now time.Time) {
	m.pruneDue, m.lastPrune = false, now
	var keep []uint64
	for _, s := range m.local {
		if slices.Contains(m.held, s.Name) {
			keep = append(keep, s.GUID)
		}
	}
	if m.xfer != nil {
		keep = append(keep, m.xfer.target.GUID)
		if m.xfer.base != nil {
			keep = append(keep, m.xfer.base.GUID)
		}
	}
	if x := m.interrupted; x != nil {
		keep = append(keep, x.target.GUID) // the peer may resume it
	}
	if m.mayResume(now) {
		// Whatever the peer's token continues is newer than the base.
		var baseTXG uint64
		for _, s := range m.local {
			if slices.Contains(m.held, s.Name) {
				baseTXG = max(baseTXG, s.CreateTXG)
			}
		}
		for _, s := range m.local {
			if s.CreateTXG > baseTXG {
				keep = append(keep, s.GUID)
			}
		}
	}
	if n := newest(m.peer); n != nil {
		keep = append(keep, n.GUID)
	}
	destroy := snapshot.PlanRetention(m.local, now, m.cfg.retention, keep...)
	if len(destroy) == 0 {
		return
	}
	names := make([]string, len(destroy))
	for i, s := range destroy {
		names[i] = s.Name
	}
	err := m.z.DestroySnapshots(ctx, names...)
	if err != nil {
		warnUnlessStopping(ctx, m.log, "pruning failed; re-reading the snapshot list", "err", err)
		if snaps, lerr := m.z.ListSnapshots(ctx, m.cfg.zfs); lerr == nil {
			sortByTXG(snaps)
			gone := len(m.local) - len(snaps)
			m.local = snaps
			m.st.Snapshots.Pruned += uint64(max(gone, 0))
		}
		return
	}
	m.local = removeNames(m.local, names)
	for _, s := range destroy {
		delete(m.covers, s.GUID)
	}
	m.st.Snapshots.Pruned += uint64(len(names))
	m.log.Info("pruned snapshots", "count", len(names), "oldest", destroy[0].ShortName(), "newest", destroy[len(destroy)-1].ShortName())
}

// publish makes the loop's view readable by Status.
func (m *master) publish(now time.Time) {
	st := m.st
	st.Notifier = m.tier
	dirty, since := m.trig.Dirty()
	st.DirtySince = time.Time{}
	if dirty {
		st.DirtySince = since
	}
	st.NewestLocal = ref(newest(m.local))
	st.Snapshots.Local = len(m.local)
	st.Conflict = m.conflict
	st.UnreplicatedSince = m.unreplicatedSince(since, dirty)
	st.Transfer = nil
	var bytes func() uint64
	if x := m.xfer; x != nil && !x.failed {
		t := &TransferStatus{ID: x.id, Kind: x.kind, Target: x.target.ShortName(), Started: x.started, Estimate: x.estimate.Load()}
		if x.base != nil {
			t.Base = snapshot.Snapshot{Name: x.base.Local}.ShortName()
		}
		if p := x.estSrc.Load(); p != nil {
			t.EstimateSource = *p
		}
		st.Transfer, bytes = t, x.bytes.Load
	}
	m.board.publish(st, bytes)
}

// unreplicatedSince is the first change the peer does not hold yet: the
// oldest covered change of our snapshots newer than the peer's newest, or
// the dirty time when no snapshot holds it yet.
func (m *master) unreplicatedSince(dirtySince time.Time, dirty bool) time.Time {
	var t time.Time
	if dirty {
		t = dirtySince
	}
	var peerTXG uint64
	if p := newest(m.peer); p != nil {
		for _, s := range m.local {
			if s.GUID == p.GUID {
				peerTXG = s.CreateTXG
			}
		}
	}
	for _, s := range m.local {
		if s.CreateTXG > peerTXG {
			if c, ok := m.covers[s.GUID]; ok {
				t = earliest(t, c)
			}
		}
	}
	return t
}
