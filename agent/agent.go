package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport"
)

// Options is what an Agent is built from.
type Options struct {
	Config *config.Config
	Cert   tls.Certificate
	// ZFS runs every zfs command; Dialect is what Detect found (once).
	ZFS     ZFS
	Dialect snapshot.Dialect
	// Notifier reports changes to the master's datasets; the agent adds a
	// target per dataset (named by its ZFS dataset) and closes it on Close.
	// Required when the node is master.
	// A Watcher also gives each dataset's status its tier and refusals.
	Notifier Notifier
	Logger   *slog.Logger
	// Transport overrides timing of the transport (tests); zero values
	// take its defaults.
	Transport transport.Config
	// Observer is told of transfers and changes, for metrics (optional).
	Observer Observer
	// ZFSTimeout bounds each zfs command that is not a stream (default
	// DefaultZFSTimeout).
	ZFSTimeout time.Duration
	// Children lists the stashes (CLIChildren); without it Stashes fails.
	Children childLister
	// StatePath is the file whose [state] records role and epoch before
	// any failover effect; default the file the Config was loaded from.
	StatePath string
}

// Agent runs every [dataset] of one node, as master or slave per [state]
// role: New checks, Start reads ZFS and starts the goroutines, Close stops
// them (idempotent). A peer's or a transfer's error never stops it; they
// are logged, shown in Status and retried.
//
// Issue 5 (failover) changes roles at run time: a dataset's loop is either
// a master or a slave, so a role change stops one loop and starts the
// other on the same ZFS state; both keep their state in memory and rebuild
// it from one listing at start.
type Agent struct {
	opts Options
	raw  ZFS // opts.ZFS before the timeout wrapper (stash, head)
	cfg  *config.Config
	log  *slog.Logger

	ids     atomic.Uint64
	sends   sendSlots // shared by every master loop
	tier    NotifierStatus
	runners map[string]*runner // by logical name; fixed after New
	order   []*runner          // config order
	byZFS   map[string]*runner // by ZFS dataset: the notifier's key
	fo      *supervisor

	sess   *transport.Session
	runCtx context.Context // the loops' parent, cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	role  config.Role // persisted role and epoch (what Hello and heartbeats claim)
	epoch uint64
	peer  PeerStatus
	peerC *transport.Conn
	// The peer's role and epoch as its heartbeats last said, for the
	// master loops (they replicate only to a slave).
	peerRole  transport.Role
	peerEpoch uint64
	peerHeard bool
	started   bool
	closed    bool
}

// New checks the options; nothing runs until Start.
func New(opts Options) (*Agent, error) {
	c := opts.Config
	switch {
	case c == nil:
		return nil, errors.New("agent: no config")
	case opts.ZFS == nil:
		return nil, errors.New("agent: no ZFS")
	case opts.Logger == nil:
		return nil, errors.New("agent: no logger")
	case c.State.Role == config.RoleMaster && opts.Notifier == nil:
		return nil, errors.New("agent: a master needs a notifier")
	case c.File() == "" && opts.StatePath == "":
		return nil, errors.New("agent: no state path: role and epoch must be persisted before any failover effect")
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	// Stashing and reading a head need more of the adapter than the
	// loops; they use it unwrapped.
	raw := opts.ZFS
	opts.ZFS = withTimeout(opts.ZFS, opts.ZFSTimeout)
	var err error
	a := &Agent{
		raw:     raw,
		opts:    opts,
		cfg:     c,
		log:     opts.Logger.With("node", c.Node.Name),
		runners: map[string]*runner{},
		byZFS:   map[string]*runner{},
		peer:    PeerStatus{Name: c.Peer.Name},
		role:    c.State.Role,
		epoch:   c.State.Epoch,
		sends:   make(sendSlots, maxConcurrentSends),
	}
	a.tier = NotifierStatus{} // a Watcher gives each dataset its own in startMaster
	if opts.Notifier != nil {
		a.tier.Tier = opts.Notifier.Tier()
	}
	for _, d := range c.Datasets {
		dc := datasetConfig{
			node: c.Node.Name, name: d.Name, zfs: d.ZFS, peer: c.Peer.Name, epoch: c.State.Epoch,
			minGap: c.Snapshot.MinInterval, retention: c.Snapshot.Retention, bandwidth: c.Replication.Bandwidth,
			features:     opts.Dialect.Features,
			receiveProps: opts.Dialect.Features.ReceiveProperties,
			zfsFuse:      opts.Dialect.Name == snapshot.DialectZFSFuse,
			observer:     opts.Observer,
		}
		if c.Failover.Divergence != "" {
			if dc.policy, err = snapshot.ParseDivergencePolicy(c.Failover.Divergence); err != nil {
				return nil, fmt.Errorf("agent: %w", err)
			}
		}
		dc.diverged = a.reportDivergence
		r := &runner{ds: d, cfg: dc, last: &board{}}
		r.last.publish(DatasetStatus{Name: d.Name, ZFS: d.ZFS, Role: string(c.State.Role)}, nil)
		a.runners[d.Name], a.byZFS[d.ZFS] = r, r
		a.order = append(a.order, r)
	}
	fo, err := newSupervisor(a)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.fo = fo
	return a, nil
}

// roleEpoch returns the persisted role and epoch.
func (a *Agent) roleEpoch() (config.Role, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.role, a.epoch
}

// Start reads each dataset's state from ZFS (one listing each), starts
// watching the master's datasets, and starts the session with the peer.
// On error nothing is left running.
func (a *Agent) Start(ctx context.Context) (err error) {
	a.mu.Lock()
	if a.started || a.closed {
		a.mu.Unlock()
		return errors.New("agent: already started")
	}
	a.started = true
	a.mu.Unlock()

	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.runCtx, a.cancel = ctx, cancel
	defer func() {
		if err != nil {
			cancel()
			for _, r := range a.order {
				a.stopLoop(r)
			}
			a.fo.close()
		}
	}()
	// A slave follows at once; a master starts fenced, without loops: it
	// serves again once it hears the peer as slave (or confirms it dead).
	if a.cfg.State.Role == config.RoleSlave {
		if err := a.reconcile(ctx, false, false); err != nil {
			return err
		}
	}
	if err := a.fo.prepare(ctx); err != nil {
		return err
	}

	tc := a.opts.Transport
	tc.Node, tc.Cert, tc.Peer, tc.PeerFingerprint = a.cfg.Node.Name, a.opts.Cert, a.cfg.Peer.Name, a.cfg.Peer.Fingerprint
	tc.ListenAddr = a.cfg.Node.Listen.String()
	tc.Logger = a.opts.Logger
	tc.LocalState = func() (transport.Role, uint64) {
		role, epoch := a.roleEpoch()
		return transport.Role(role), epoch
	}
	sess, err := transport.NewSession(transport.SessionConfig{Config: tc, PeerAddr: a.cfg.Peer.Address.String()})
	if err != nil {
		return err
	}
	if err := sess.Start(); err != nil {
		return err
	}
	a.sess = sess

	a.fo.start(ctx)
	if a.opts.Notifier != nil {
		a.wg.Go(func() { a.routeChanges(ctx) })
	}
	a.wg.Go(func() { a.watchConns(ctx) })
	a.log.Info("agent started", "role", a.cfg.State.Role, "epoch", a.cfg.State.Epoch, "listen", sess.Addr(),
		"peer", a.cfg.Peer.Name, "peer_addr", a.cfg.Peer.Address.String(), "datasets", len(a.cfg.Datasets),
		"zfs", a.opts.Dialect.Name, "tier", tierName(a.opts.Notifier))
	return nil
}

// targetStatuser is a notifier that picks a tier per target (Watcher).
type targetStatuser interface {
	TargetStatus(name string) (TargetStatus, bool)
}

// notifierStatus is a target's tier and refusals as the status shows them.
func notifierStatus(st TargetStatus) NotifierStatus {
	ns := NotifierStatus{Tier: st.Tier, SafetyNet: st.SafetyNet}
	for _, r := range st.Refused {
		if ns.Refused == nil {
			ns.Refused = map[string]string{}
		}
		ns.Refused[r.Tier] = r.Reason
	}
	return ns
}

func tierName(n Notifier) string {
	if n == nil {
		return ""
	}
	return n.Tier()
}

// Close stops the dataset loops (a send in flight is cut, a receive in
// flight aborted so zfs discards or keeps its partial state cleanly), the
// notifier and the session, and waits for every goroutine. Idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	started := a.started
	a.mu.Unlock()
	var errs []error
	if a.cancel != nil {
		a.cancel()
	}
	if started {
		a.fo.wait()
		for _, r := range a.order {
			a.stopLoop(r)
		}
	}
	if a.opts.Notifier != nil && started {
		errs = append(errs, a.opts.Notifier.Close())
	}
	a.wg.Wait()
	if started {
		errs = append(errs, a.fo.close())
	}
	if a.sess != nil {
		errs = append(errs, a.sess.Close())
	}
	a.log.Info("agent stopped")
	return errors.Join(errs...)
}

// Status returns a copy of the agent's state.
func (a *Agent) Status() Status {
	now := time.Now()
	a.mu.Lock()
	st := Status{
		Node: a.cfg.Node.Name, Role: string(a.role), Epoch: a.epoch,
		Dialect: a.opts.Dialect.Name, Peer: a.peer,
	}
	a.mu.Unlock()
	fs := a.fo.status()
	st.Failover = &fs
	st.Peer.LastHeartbeat = fs.LastHeard
	st.Peer.RTT = a.fo.live.roundTrip()
	for _, r := range a.order {
		st.Datasets = append(st.Datasets, r.board().read(now))
	}
	return st.clone()
}

// routeChanges hands the notifier's changes to the datasets' loops.
func (a *Agent) routeChanges(ctx context.Context) {
	for ch := range a.opts.Notifier.Changes() {
		a.opts.Observer.Changed(ch.Tier)
		r := a.byZFS[ch.Dataset]
		if r == nil {
			a.log.Warn("change for an unknown dataset", "dataset", ch.Dataset, "tier", ch.Tier)
			continue
		}
		m, _ := r.loops()
		if m == nil {
			continue // demoted since: nothing to snapshot here
		}
		if !post(ctx, m.events, evChange{at: ch.Time}) && ctx.Err() != nil {
			return
		}
	}
}

// broadcast posts ev to every dataset loop.
func (a *Agent) broadcast(ctx context.Context, ev any) {
	for _, r := range a.order {
		if in := r.inbox(); in != nil {
			post(ctx, in, ev)
		}
	}
}

func (a *Agent) inbox(dataset string) chan any {
	if r := a.runners[dataset]; r != nil {
		return r.inbox()
	}
	return nil
}

// watchConns follows the session's live connection: each new one is
// announced to the loops and served by a message reader and a transfer
// acceptor until it closes.
func (a *Agent) watchConns(ctx context.Context) {
	var cur *transport.Conn
	for {
		c, err := a.sess.WaitConn(ctx, cur)
		if err != nil {
			return
		}
		cur = c
		hello := c.Peer()
		a.mu.Lock()
		a.peerC = c
		a.peer = PeerStatus{Name: a.cfg.Peer.Name, Connected: true, Since: time.Now(), Role: string(hello.Role), Epoch: hello.Epoch, LastError: a.peer.LastError}
		if !a.peerHeard {
			a.peerRole, a.peerEpoch = hello.Role, hello.Epoch
		}
		a.mu.Unlock()
		a.log.Info("peer connected", "peer", hello.Node, "peer_role", hello.Role, "peer_epoch", hello.Epoch)
		a.broadcast(ctx, evConnUp{c})
		a.wg.Go(func() { a.readMessages(ctx, c) })
		a.wg.Go(func() { a.acceptTransfers(ctx, c) })
		a.wg.Go(func() { a.fo.receiveHeartbeats(ctx, c) })
		a.wg.Go(func() {
			select {
			case <-c.Done():
			case <-ctx.Done():
				return
			}
			a.mu.Lock()
			if a.peerC == c {
				a.peer.Connected, a.peer.Since = false, time.Now()
			}
			a.mu.Unlock()
			a.broadcast(ctx, evConnDown{c})
		})
	}
}

// readMessages routes the peer's control messages to the dataset loops.
func (a *Agent) readMessages(ctx context.Context, c *transport.Conn) {
	for {
		msg, err := c.Receive(ctx)
		if err != nil {
			return
		}
		var ds string
		var ev any
		switch m := msg.(type) {
		case *transport.SnapshotList:
			ds, ev = m.Dataset, evList{c, m}
		case *transport.Ack:
			ds, ev = m.Dataset, evAck{c, m}
		case *transport.TransferDone:
			ds, ev = m.Dataset, evDone{c, m}
		case *transport.Handoff:
			a.fo.handoffOffered(ctx, m.Epoch)
			continue
		case *transport.Error:
			a.log.Warn("peer reported an error", "code", m.Code, "message", m.Message)
			a.mu.Lock()
			a.peer.LastError = &Problem{Code: m.Code, Message: m.Message, At: time.Now()}
			a.mu.Unlock()
			continue
		default:
			continue
		}
		if a.runners[ds] == nil {
			a.log.Warn("peer sent a message about a dataset this node does not protect", "dataset", ds, "type", msg.Type())
			continue
		}
		in := a.inbox(ds)
		if in == nil {
			continue // no loop runs (a fenced master): nothing to tell
		}
		if !post(ctx, in, ev) && ctx.Err() != nil {
			return
		}
	}
}

// acceptTransfers hands incoming transfers to the slave loops; a transfer
// for a dataset this node does not receive is refused at once.
func (a *Agent) acceptTransfers(ctx context.Context, c *transport.Conn) {
	for {
		t, err := c.AcceptTransfer(ctx)
		if err != nil {
			return
		}
		hdr := t.Header()
		var s *slave
		var m *master
		if r := a.runners[hdr.Dataset]; r != nil {
			m, s = r.loops()
		}
		if s == nil {
			reason := fmt.Sprintf("%s does not receive dataset %q here", a.cfg.Node.Name, hdr.Dataset)
			if m != nil {
				reason = fmt.Sprintf("%s is master of %q: it sends, it does not receive", a.cfg.Node.Name, hdr.Dataset)
			}
			a.log.Warn("refused transfer", "dataset", hdr.Dataset, "id", hdr.ID, "reason", reason)
			t.Abort(transport.AbortReceiveFailed)
			_ = sendMsg(ctx, c, &transport.Ack{ID: hdr.ID, Dataset: hdr.Dataset, Error: reason, Code: codeRefused})
			continue
		}
		if !post(ctx, s.events, evTransfer{c, t}) {
			t.Abort(transport.AbortShutdown)
			return
		}
	}
}
