package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport"
)

// slaveZFS is what the slave needs from ZFS.
type slaveZFS interface {
	snapshotLister
	snapshotter
	receiver
	properties
	mounter
	roller
}

// slave keeps one dataset's replica: it receives the master's transfers,
// keeps the replica readonly and mounted, prunes it, and after every
// receive tells the master which snapshots it holds.
type slave struct {
	cfg    datasetConfig
	z      slaveZFS
	log    *slog.Logger
	board  *board
	events chan any

	local    []snapshot.Snapshot
	exists   bool   // the replica dataset exists
	readonly bool   // readonly=on is known to be set
	token    string // partial receive state (resumable receive)
	conn     *transport.Conn
	recv     *incoming
	pruneDue bool
	lastPrun time.Time
	// remountBusy: the last remount was refused (see remount), and it is
	// not tried again before remountRetry.
	remountBusy  bool
	remountRetry time.Time
	divKey       string // the divergence last planned (our newest/peer's newest)

	st DatasetStatus
}

// incoming is one transfer being received.
type incoming struct {
	c         *transport.Conn
	t         *transport.IncomingTransfer
	hdr       transport.TransferBegin
	started   time.Time
	cancel    context.CancelFunc
	done      chan struct{}
	senderErr string
	nextNote  time.Time
}

type evReceived struct {
	r   *incoming
	n   int64
	err error
}

func newSlave(cfg datasetConfig, z slaveZFS, log *slog.Logger) *slave {
	return &slave{
		cfg:    cfg,
		z:      z,
		log:    log.With("dataset", cfg.name, "zfs", cfg.zfs, "role", "slave"),
		board:  &board{},
		events: make(chan any, eventQueue),
		st:     DatasetStatus{Name: cfg.name, ZFS: cfg.zfs, Role: "slave"},
	}
}

// init reads the replica's snapshots once; a replica that does not exist
// yet is created by the first full receive. An existing replica is made
// readonly: nothing may change it between receives (on zfs-fuse even an
// atime update from a read would refuse the next incremental).
func (s *slave) init(ctx context.Context) error {
	snaps, err := s.z.ListSnapshots(ctx, s.cfg.zfs)
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
		s.log.Info("slave ready: no replica yet; the first transfer creates it")
		return nil
	case err != nil:
		return fmt.Errorf("dataset %s: %w", s.cfg.name, err)
	}
	sortByTXG(snaps)
	s.local, s.exists = snaps, true
	if err := s.ensureReadonly(ctx); err != nil {
		return fmt.Errorf("dataset %s: %w", s.cfg.name, err)
	}
	if s.cfg.features.ResumableReceive {
		if s.token, err = s.z.ResumeToken(ctx, s.cfg.zfs); err != nil {
			return fmt.Errorf("dataset %s: %w", s.cfg.name, err)
		}
	}
	s.log.Info("slave ready", "snapshots", len(s.local), "resume_token", s.token != "")
	return nil
}

// readonlyOn reads the readonly property as the dialect means it. zfs-fuse
// reports readonly=on of a mounted file system as "off" with source
// "temporary" (its mount is rw; zfs-fuse refuses the writes itself, which
// was measured: writes fail with EROFS), so there "temporary" is taken as
// on. On OpenZFS a temporary value is a real mount override and is taken
// as it reads.
func (s *slave) readonlyOn(p snapshot.Property) bool {
	if s.cfg.zfsFuse && p.Source == "temporary" {
		return true
	}
	return p.Value == "on"
}

func (s *slave) ensureReadonly(ctx context.Context) error {
	p, err := s.z.GetProperty(ctx, s.cfg.zfs, "readonly")
	if err != nil {
		return err
	}
	if !s.readonlyOn(p) {
		if err := s.z.SetProperty(ctx, s.cfg.zfs, "readonly", "on"); err != nil {
			return err
		}
		s.log.Info("replica set readonly")
	}
	s.readonly = true
	return nil
}

func (s *slave) run(ctx context.Context) {
	defer s.shutdown()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wake := s.step(ctx, time.Now())
		if wake.IsZero() {
			wake = time.Now().Add(time.Hour)
		}
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
			return
		case ev := <-s.events:
			s.handle(ctx, ev, time.Now())
		case <-timer.C:
		}
	}
}

// shutdown aborts a receive in flight cleanly: zfs sees its input end and
// discards the partial state (or keeps it for a resume), and the master
// learns that the transfer stopped.
func (s *slave) shutdown() {
	r := s.recv
	if r == nil {
		return
	}
	r.cancel()
	r.t.Abort(transport.AbortShutdown)
	<-r.done
	s.log.Info("receive aborted: shutting down", "id", r.hdr.ID, "target", r.hdr.Target, "bytes", r.t.Bytes())
}

func (s *slave) handle(ctx context.Context, ev any, now time.Time) {
	switch ev := ev.(type) {
	case evConnUp:
		s.conn = ev.c
		s.sendList(ctx, ev.c)
	case evConnDown:
		if ev.c == s.conn {
			s.conn = nil
		}
	case evList:
		peer := fromWire(s.cfg.peer+":"+s.cfg.name, ev.m.Snapshots)
		if n := newest(peer); n != nil {
			s.st.NewestPeer = ref(n)
		}
		s.st.Snapshots.Peer = len(ev.m.Snapshots)
		s.checkDivergence(ctx, peer)
		// A master sends its list when its loop starts (after a failover
		// the connection may be older than the loop): answer with ours,
		// which it needs to plan. It never answers a list with a list.
		if ev.c == s.conn {
			s.sendList(ctx, ev.c)
		}
	case evDone:
		if r := s.recv; r != nil && r.c == ev.c && r.hdr.ID == ev.m.ID && ev.m.Error != "" {
			r.senderErr = ev.m.Error
		}
	case evTransfer:
		s.accept(ctx, ev, now)
	case evReceived:
		s.received(ctx, ev, now)
	}
}

// checkDivergence runs the divergence planner when the replica holds
// snapshots the master lacks (a former master's writes after it lost the
// peer): replication from the master cannot go on over them. When the
// master's history wins and ours has something after the base, the
// supervisor stashes ours (failover's stash effect); when ours wins, it
// waits for the master to step down.
func (s *slave) checkDivergence(ctx context.Context, peer []snapshot.Snapshot) {
	if s.recv != nil || !divergedFrom(s.local, peer) {
		s.divKey = ""
		return
	}
	key := fmt.Sprintf("%d/%d", newest(s.local).GUID, newest(peer).GUID)
	if key == s.divKey {
		return
	}
	s.divKey = key
	res := planDivergence(s.cfg, s.local, peer, false)
	if res.Conflict != nil {
		s.st.Conflict = res.Conflict.Error()
		s.log.Error("divergence needs the operator", "conflict", res.Conflict.Error())
		return
	}
	s.st.Conflict = fmt.Sprintf("diverged from %s after %s: %s wins (%s)", s.cfg.peer, res.Base.Local, res.Winner, res.DecidedBy)
	s.log.Warn("divergence", "winner", res.Winner.String(), "decided_by", res.DecidedBy.String(), "base", res.Base.Local,
		"ours_after_base", len(res.Local.AfterBase), "peers_after_base", len(res.Peer.AfterBase))
	if s.cfg.diverged != nil && (res.Winner == snapshot.SideLocal || res.RollbackTo != "") {
		s.cfg.diverged(ctx, divergence{dataset: s.cfg.name, localWins: res.Winner == snapshot.SideLocal, res: res})
	}
}

func (s *slave) sendList(ctx context.Context, c *transport.Conn) {
	list := &transport.SnapshotList{Dataset: s.cfg.name, Snapshots: toWire(s.local), ResumeToken: s.token}
	if err := sendMsg(ctx, c, list); err != nil {
		warnUnlessStopping(ctx, s.log, "sending snapshot list failed", "err", err)
	}
}

// refuse turns a transfer down before anything is received, and tells the
// master what this side holds so it can plan again.
func (s *slave) refuse(ctx context.Context, ev evTransfer, reason string, now time.Time) {
	hdr := ev.t.Header()
	ev.t.Abort(transport.AbortReceiveFailed)
	s.log.Warn("refused transfer", "id", hdr.ID, "target", hdr.Target, "base_guid", hdr.BaseGUID, "reason", reason)
	s.st.LastError = &Problem{Code: codeRefused, Message: reason, At: now}
	s.sendList(ctx, ev.c)
	if err := sendMsg(ctx, ev.c, &transport.Ack{ID: hdr.ID, Dataset: s.cfg.name, Error: reason, Code: codeRefused}); err != nil {
		warnUnlessStopping(ctx, s.log, "sending ack failed", "err", err)
	}
}

// check validates a transfer's header against what the replica holds.
func (s *slave) check(hdr transport.TransferBegin) string {
	top := newest(s.local)
	switch {
	case s.recv != nil:
		return fmt.Sprintf("transfer %d is still being received", s.recv.hdr.ID)
	case slices.ContainsFunc(s.local, func(x snapshot.Snapshot) bool { return x.GUID == hdr.TargetGUID }):
		return fmt.Sprintf("the replica already holds the target (guid %d)", hdr.TargetGUID)
	case hdr.Resume && s.token == "":
		return "a resume was offered but no partial receive is kept here"
	case hdr.BaseGUID == 0 && len(s.local) > 0:
		return fmt.Sprintf("a full stream was offered but the replica holds %d snapshots (newest %s); flocker never receives over them",
			len(s.local), top.ShortName())
	case hdr.BaseGUID == 0 && s.exists && !hdr.Resume && s.token == "":
		return fmt.Sprintf("a full stream was offered but %s exists without snapshots; flocker does not overwrite it", s.cfg.zfs)
	case hdr.BaseGUID != 0 && top == nil:
		return fmt.Sprintf("an incremental from guid %d was offered but the replica holds no snapshot", hdr.BaseGUID)
	case hdr.BaseGUID != 0 && top.GUID != hdr.BaseGUID:
		if slices.ContainsFunc(s.local, func(x snapshot.Snapshot) bool { return x.GUID == hdr.BaseGUID }) {
			return fmt.Sprintf("the incremental's base (guid %d) is not the replica's newest snapshot %s", hdr.BaseGUID, top.ShortName())
		}
		return fmt.Sprintf("the replica does not hold the incremental's base (guid %d); its newest is %s", hdr.BaseGUID, top.ShortName())
	}
	return ""
}

func (s *slave) accept(ctx context.Context, ev evTransfer, now time.Time) {
	hdr := ev.t.Header()
	if ev.c != s.conn {
		ev.t.Abort(transport.AbortCanceled)
		return
	}
	if reason := s.check(hdr); reason != "" {
		s.refuse(ctx, ev, reason, now)
		return
	}
	if s.token != "" && !hdr.Resume {
		// A new stream replaces the partial one.
		if err := s.z.AbortReceive(ctx, s.cfg.zfs); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			s.refuse(ctx, ev, fmt.Sprintf("discarding the partial receive failed: %v", err), now)
			return
		}
		s.log.Info("discarded partial receive state for a new stream")
		s.token = ""
		if len(s.local) == 0 {
			s.exists = false // a partial first receive is gone with its state
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &incoming{c: ev.c, t: ev.t, hdr: hdr, started: now, cancel: cancel, done: make(chan struct{}), nextNote: now.Add(progressEvery)}
	s.recv = r
	opts := snapshot.ReceiveOptions{Resumable: s.cfg.features.ResumableReceive}
	// A resumed stream keeps the properties its first part was received with.
	if hdr.BaseGUID == 0 && !hdr.Resume && s.cfg.receiveProps {
		opts.Properties = map[string]string{"readonly": "on"}
	}
	kind := "incremental"
	switch {
	case hdr.Resume:
		kind = "resume"
	case hdr.BaseGUID == 0:
		kind = "full"
	}
	s.log.Info("receiving", "id", hdr.ID, "kind", kind, "target", hdr.Target, "estimate", hdr.EstimatedBytes)
	go func() {
		n, err := s.z.Receive(rctx, s.cfg.zfs, ev.t, opts)
		close(r.done)
		post(ctx, s.events, evReceived{r: r, n: n, err: err})
	}()
}

func (s *slave) received(ctx context.Context, ev evReceived, now time.Time) {
	r := ev.r
	if r != s.recv {
		return
	}
	s.recv = nil
	r.cancel()
	// The stream is done with either way; an early end tells the master.
	_ = r.t.Close()
	took := now.Sub(r.started)
	if ev.err != nil {
		s.receiveFailed(ctx, r, ev.err, now)
		return
	}
	s.exists, s.token = true, ""
	// The replica holds the snapshot from the moment zfs receive exits:
	// that is when it is received, before it is read back and acked.
	s.st.Snapshots.Transfers++
	s.st.Snapshots.BytesReceived += uint64(max(ev.n, 0))
	s.log.Info("received", "id", r.hdr.ID, "target", r.hdr.Target, "guid", r.hdr.TargetGUID, "bytes", ev.n, "took", took.Round(time.Microsecond))
	var got []snapshot.Snapshot
	var err error
	if r.hdr.Target != "" && !r.hdr.Resume {
		got, err = s.z.GetSnapshots(ctx, s.cfg.zfs+"@"+r.hdr.Target)
	} else {
		got, err = s.z.ListSnapshots(ctx, s.cfg.zfs)
	}
	if err != nil {
		// The receive worked; only reading it back failed. Re-read on the
		// next receive: list everything then.
		s.log.Error("reading the received snapshot failed", "err", err)
		s.st.LastError = problem(codeReceiveFailed, err, now)
		s.sendAck(ctx, r, &transport.Ack{ID: r.hdr.ID, Dataset: s.cfg.name, Error: "received, but reading it back failed: " + errText(err), Code: codeReceiveFailed})
		return
	}
	if r.hdr.Target != "" && !r.hdr.Resume {
		s.local = append(s.local, got...)
	} else {
		s.local = got
	}
	sortByTXG(s.local)
	if !s.readonly {
		if err := s.ensureReadonly(ctx); err != nil {
			s.log.Error("making the replica readonly failed", "err", err)
			s.st.LastError = problem(codeReceiveFailed, err, now)
		} else if r.hdr.BaseGUID == 0 && !s.cfg.receiveProps {
			// Without `receive -o readonly=on` the new replica was writable and
			// mounted for a moment; a read then (zfs-fuse updates atime) would
			// refuse the next incremental. It holds nothing but the snapshot
			// just received, so rolling back to it loses nothing.
			if err := s.z.Rollback(ctx, s.cfg.zfs+"@"+newest(s.local).ShortName()); err != nil {
				warnUnlessStopping(ctx, s.log, "rolling the new replica back to its snapshot failed", "err", err)
			}
		}
	}
	// Pruning waits until after the ack (step), off the replication path.
	s.pruneDue = true
	if s.cfg.zfsFuse && r.hdr.BaseGUID != 0 {
		// Before the ack: once the master hears of it, the replica reads
		// the received data.
		s.remount(ctx, now)
	}
	s.sendList(ctx, r.c)
	s.sendAck(ctx, r, &transport.Ack{ID: r.hdr.ID, Dataset: s.cfg.name, ReceivedGUID: r.hdr.TargetGUID})
	// For timelines of a cycle: what the ack waited for after the receive.
	s.log.Debug("ack sent", "id", r.hdr.ID, "since_received", time.Since(now))
}

// remountBackoff spaces remount attempts while the zfs-fuse replica is in
// use: an unmount refused as busy is retried by the adapter for a few
// seconds (zfs-fuse calls a file system busy for a moment after its last
// file closed), and an operator's open file must not cost that on every
// receive. The unmount itself is never cut short: a `zfs unmount` killed
// on a loaded host (it was bounded at 1 s) left its umount child hanging
// on the FUSE mount (seen with 50 datasets; the zfs-fuse daemon died soon
// after), which is the hazard of cutting a zfs-fuse unmount short.
const remountBackoff = 10 * time.Second

// remount unmounts and mounts the replica after an incremental receive on
// zfs-fuse, which otherwise keeps answering "no such file" for every name
// that was looked up on the replica before the receive created it (readdir
// lists the file, open fails), until the next mount. Measured: a remount
// cures it and takes about 25 ms. The unmount is never forced; a replica in
// use refuses it, and its stale names then stay until a later remount.
func (s *slave) remount(ctx context.Context, now time.Time) {
	if now.Before(s.remountRetry) {
		return
	}
	err := s.z.Unmount(ctx, s.cfg.zfs)
	if err != nil {
		// A refused (or cut short) unmount may still have happened.
		if _, mounted, merr := s.z.Mountpoint(ctx, s.cfg.zfs); merr != nil || mounted {
			if !s.remountBusy {
				s.log.Warn("replica in use: not remounted after the receive; names looked up before it may read as missing until a later remount", "err", err)
			}
			s.remountBusy, s.remountRetry = true, now.Add(remountBackoff)
			return
		}
	}
	if s.remountBusy {
		s.log.Info("replica remounted again")
		s.remountBusy = false
	}
	if err := s.z.Mount(ctx, s.cfg.zfs); err != nil && !errors.Is(err, snapshot.ErrMounted) {
		s.log.Error("mounting the replica again failed", "err", err)
		s.st.LastError = problem(codeReceiveFailed, fmt.Errorf("mounting the replica: %w", err), time.Now())
	}
}

func (s *slave) sendAck(ctx context.Context, r *incoming, a *transport.Ack) {
	if err := sendMsg(ctx, r.c, a); err != nil {
		warnUnlessStopping(ctx, s.log, "sending ack failed", "id", a.ID, "err", err)
	}
}

// receiveFailed reports a failed receive. ZFS has discarded the partial
// state (zfs-fuse, or any dialect without -s) or kept it for a resume; a
// replica modified since its newest snapshot is rolled back when it is
// readonly, since then only a read's atime update can have changed it.
func (s *slave) receiveFailed(ctx context.Context, r *incoming, err error, now time.Time) {
	code := receiveCode(err)
	if ctx.Err() != nil {
		code = codeShutdown
	}
	if errors.Is(err, snapshot.ErrResumable) {
		if tok := resumeTokenOf(err); tok != "" {
			s.token = tok
		} else if tok, terr := s.z.ResumeToken(ctx, s.cfg.zfs); terr == nil {
			s.token = tok
		}
		s.exists = s.exists || s.token != ""
	}
	msg := errText(err)
	if r.senderErr != "" {
		msg = "sender failed: " + r.senderErr + "; " + msg
	}
	if code == codeModified {
		msg += "; " + s.repairModified(ctx)
	}
	s.st.Snapshots.FailedTransfers++
	s.st.LastError = &Problem{Code: code, Message: msg, At: now}
	args := []any{"id", r.hdr.ID, "target", r.hdr.Target, "code", code, "err", msg, "bytes", r.t.Bytes(), "resume_token", s.token != ""}
	switch {
	case code == codePoolFull:
		s.log.Error("receive failed: pool full", args...)
	case code == codeShutdown:
		s.log.Info("receive interrupted: shutting down", args...)
	case peerStopped(err):
		s.log.Info("receive interrupted: the master is shutting down", args...)
	default:
		s.log.Warn("receive failed", args...)
	}
	s.sendList(ctx, r.c)
	if s.conn != nil && s.conn != r.c {
		// The transfer's connection was replaced (the master restarted):
		// the master plans on the new one, so it learns of the token there.
		s.sendList(ctx, s.conn)
	}
	s.sendAck(ctx, r, &transport.Ack{ID: r.hdr.ID, Dataset: s.cfg.name, Error: msg, Code: code})
	// After the ack: a zfs run before it let the master's send fail on the
	// closed stream first, and it then ignored the ack and its cause
	// (pool_full seen as a transport error).
	if code != codeShutdown && s.relist(ctx) {
		s.sendList(ctx, r.c)
		if s.conn != nil && s.conn != r.c {
			s.sendList(ctx, s.conn)
		}
	}
}

// relist re-reads the replica's snapshots after a failed receive and
// reports whether the newest changed. A
// receive can fail and still have landed: zfs had read the whole stream
// when the connection dropped before its end was confirmed (seen with 50
// datasets). The list must then name the new snapshot, or the master plans
// every retry from the old base and zfs refuses each as an
// incremental_mismatch, for good.
func (s *slave) relist(ctx context.Context) bool {
	snaps, err := s.z.ListSnapshots(ctx, s.cfg.zfs)
	if err != nil {
		return false // nothing there yet, or unreadable: the list stays as it was
	}
	sortByTXG(snaps)
	changed := false
	if top, was := newest(snaps), newest(s.local); top != nil && (was == nil || top.GUID != was.GUID) {
		s.log.Info("the failed receive landed nonetheless", "newest", top.ShortName())
		changed = true
	}
	s.local, s.exists = snaps, true
	return changed
}

// repairModified rolls the replica back to its newest snapshot when that
// loses nothing: the replica is readonly, so no write reached it; what
// changed is metadata such as atime (a file read on zfs-fuse between
// setting readonly and an earlier receive). A writable replica may hold
// someone's writes: then it is left alone and reported.
func (s *slave) repairModified(ctx context.Context) string {
	top := newest(s.local)
	if top == nil {
		return "nothing to roll back to"
	}
	p, err := s.z.GetProperty(ctx, s.cfg.zfs, "readonly")
	if err != nil {
		return fmt.Sprintf("not rolled back: reading readonly failed: %v", err)
	}
	if !s.readonlyOn(p) {
		s.readonly = false
		return fmt.Sprintf("not rolled back: the replica is writable (readonly=%s) and may hold writes; set readonly=on and roll back to %s by hand", p.Value, top.Name)
	}
	if err := s.z.Rollback(ctx, top.Name); err != nil {
		return fmt.Sprintf("rolling back to %s failed: %v", top.ShortName(), err)
	}
	s.log.Warn("replica was modified since its newest snapshot while readonly (an atime update?); rolled back", "to", top.ShortName())
	return "rolled back to " + top.ShortName()
}

func (s *slave) step(ctx context.Context, now time.Time) time.Time {
	var wake time.Time
	if r := s.recv; r != nil {
		if !now.Before(r.nextNote) {
			r.nextNote = now.Add(progressEvery)
			args := []any{"id", r.hdr.ID, "target", r.hdr.Target, "bytes", r.t.Bytes(), "estimate", r.hdr.EstimatedBytes,
				"elapsed", now.Sub(r.started).Round(time.Millisecond)}
			if e := r.hdr.EstimatedBytes; e > 0 {
				args = append(args, "percent", min(100, r.t.Bytes()*100/e))
			}
			s.log.Info("receive in flight", args...)
		}
		wake = r.nextNote
	}
	if s.pruneDue && s.recv == nil {
		if due := s.lastPrun.Add(pruneEvery); now.Before(due) {
			wake = earliest(wake, due)
		} else {
			s.prune(ctx, now)
			if s.conn != nil {
				s.sendList(ctx, s.conn)
			}
		}
	}
	s.publish()
	return wake
}

// prune applies retention to the replica. PlanRetention never destroys the
// newest snapshot, which is the base of the next incremental.
func (s *slave) prune(ctx context.Context, now time.Time) {
	s.pruneDue, s.lastPrun = false, now
	destroy := snapshot.PlanRetention(s.local, now, s.cfg.retention)
	if len(destroy) == 0 {
		return
	}
	names := make([]string, len(destroy))
	for i, x := range destroy {
		names[i] = x.Name
	}
	if err := s.z.DestroySnapshots(ctx, names...); err != nil {
		warnUnlessStopping(ctx, s.log, "pruning failed; re-reading the snapshot list", "err", err)
		if snaps, lerr := s.z.ListSnapshots(ctx, s.cfg.zfs); lerr == nil {
			sortByTXG(snaps)
			s.st.Snapshots.Pruned += uint64(max(len(s.local)-len(snaps), 0))
			s.local = snaps
		}
		return
	}
	s.local = removeNames(s.local, names)
	s.st.Snapshots.Pruned += uint64(len(names))
	s.log.Info("pruned snapshots", "count", len(names), "oldest", destroy[0].ShortName(), "newest", destroy[len(destroy)-1].ShortName())
}

func (s *slave) publish() {
	st := s.st
	st.NewestLocal = ref(newest(s.local))
	st.Snapshots.Local = len(s.local)
	st.Transfer = nil
	if r := s.recv; r != nil {
		kind := "incremental"
		if r.hdr.BaseGUID == 0 {
			kind = "full"
		}
		if r.hdr.Resume {
			kind = "resume"
		}
		st.Transfer = &TransferStatus{ID: r.hdr.ID, Kind: kind, Target: r.hdr.Target, Started: r.started,
			Bytes: r.t.Bytes(), Estimate: r.hdr.EstimatedBytes}
		s.board.publish(st, r.t.Bytes)
		return
	}
	s.board.publish(st, nil)
}
