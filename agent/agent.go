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
	Notifier Notifier
	// Refused says why better notifier tiers were not chosen (tier ->
	// reason), for status.
	Refused map[string]string
	Logger  *slog.Logger
	// Transport overrides timing of the transport (tests); zero values
	// take its defaults.
	Transport transport.Config
	// Observer is told of transfers and changes, for metrics (optional).
	Observer Observer
	// ZFSTimeout bounds each zfs command that is not a stream (default
	// DefaultZFSTimeout).
	ZFSTimeout time.Duration
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
	cfg  *config.Config
	log  *slog.Logger

	ids     atomic.Uint64
	masters map[string]*master // by logical name
	slaves  map[string]*slave
	byZFS   map[string]*master // by ZFS dataset: the notifier's key

	sess   *transport.Session
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	peer    PeerStatus
	peerC   *transport.Conn
	started bool
	closed  bool
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
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	opts.ZFS = withTimeout(opts.ZFS, opts.ZFSTimeout)
	a := &Agent{
		opts:    opts,
		cfg:     c,
		log:     opts.Logger.With("node", c.Node.Name),
		masters: map[string]*master{},
		slaves:  map[string]*slave{},
		byZFS:   map[string]*master{},
		peer:    PeerStatus{Name: c.Peer.Name},
	}
	tier := NotifierStatus{Refused: opts.Refused}
	if opts.Notifier != nil {
		tier.Tier = opts.Notifier.Tier()
	}
	for _, d := range c.Datasets {
		dc := datasetConfig{
			name: d.Name, zfs: d.ZFS, peer: c.Peer.Name, epoch: c.State.Epoch,
			minGap: c.Snapshot.MinInterval, retention: c.Snapshot.Retention, bandwidth: c.Replication.Bandwidth,
			features:     opts.Dialect.Features,
			receiveProps: opts.Dialect.Features.ReceiveProperties,
			zfsFuse:      opts.Dialect.Name == snapshot.DialectZFSFuse,
			observer:     opts.Observer,
		}
		if c.State.Role == config.RoleMaster {
			m := newMaster(dc, opts.ZFS, tier, &a.ids, a.log)
			a.masters[d.Name], a.byZFS[d.ZFS] = m, m
		} else {
			a.slaves[d.Name] = newSlave(dc, opts.ZFS, a.log)
		}
	}
	return a, nil
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

	now := time.Now()
	for _, m := range a.masters {
		if err := m.init(ctx, now); err != nil {
			return err
		}
	}
	for _, s := range a.slaves {
		if err := s.init(ctx); err != nil {
			return err
		}
	}
	for _, m := range a.masters {
		mp, mounted, err := a.opts.ZFS.Mountpoint(ctx, m.cfg.zfs)
		if err != nil {
			return fmt.Errorf("dataset %s: %w", m.cfg.name, err)
		}
		if !mounted {
			return fmt.Errorf("dataset %s: %s is not mounted: the master serves it from its mountpoint", m.cfg.name, m.cfg.zfs)
		}
		if err := a.opts.Notifier.Add(ctx, Target{Name: m.cfg.zfs, Mountpoint: mp}); err != nil {
			return fmt.Errorf("dataset %s: watching %s with the %s tier: %w", m.cfg.name, mp, a.opts.Notifier.Tier(), err)
		}
	}

	tc := a.opts.Transport
	tc.Node, tc.Cert, tc.Peer, tc.PeerFingerprint = a.cfg.Node.Name, a.opts.Cert, a.cfg.Peer.Name, a.cfg.Peer.Fingerprint
	tc.ListenAddr = a.cfg.Node.Listen.String()
	tc.Logger = a.opts.Logger
	role, epoch := transport.Role(a.cfg.State.Role), a.cfg.State.Epoch
	tc.LocalState = func() (transport.Role, uint64) { return role, epoch }
	sess, err := transport.NewSession(transport.SessionConfig{Config: tc, PeerAddr: a.cfg.Peer.Address.String()})
	if err != nil {
		return err
	}
	if err := sess.Start(); err != nil {
		return err
	}
	a.sess = sess

	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	for _, m := range a.masters {
		a.wg.Go(func() { m.run(ctx) })
	}
	for _, s := range a.slaves {
		a.wg.Go(func() { s.run(ctx) })
	}
	if a.opts.Notifier != nil {
		a.wg.Go(func() { a.routeChanges(ctx) })
	}
	a.wg.Go(func() { a.watchConns(ctx) })
	a.log.Info("agent started", "role", a.cfg.State.Role, "epoch", a.cfg.State.Epoch, "listen", sess.Addr(),
		"peer", a.cfg.Peer.Name, "peer_addr", a.cfg.Peer.Address.String(), "datasets", len(a.cfg.Datasets),
		"zfs", a.opts.Dialect.Name, "tier", tierName(a.opts.Notifier))
	return nil
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
	if a.opts.Notifier != nil && started {
		errs = append(errs, a.opts.Notifier.Close())
	}
	a.wg.Wait()
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
		Node: a.cfg.Node.Name, Role: string(a.cfg.State.Role), Epoch: a.cfg.State.Epoch,
		Dialect: a.opts.Dialect.Name, Peer: a.peer,
	}
	a.mu.Unlock()
	for _, d := range a.cfg.Datasets {
		if m := a.masters[d.Name]; m != nil {
			st.Datasets = append(st.Datasets, m.board.read(now))
		} else if s := a.slaves[d.Name]; s != nil {
			st.Datasets = append(st.Datasets, s.board.read(now))
		}
	}
	return st.clone()
}

// routeChanges hands the notifier's changes to the datasets' loops.
func (a *Agent) routeChanges(ctx context.Context) {
	for ch := range a.opts.Notifier.Changes() {
		a.opts.Observer.Changed(ch.Tier)
		m := a.byZFS[ch.Dataset]
		if m == nil {
			a.log.Warn("change for an unknown dataset", "dataset", ch.Dataset, "tier", ch.Tier)
			continue
		}
		if !post(ctx, m.events, evChange{at: ch.Time}) {
			return
		}
	}
}

// broadcast posts ev to every dataset loop.
func (a *Agent) broadcast(ctx context.Context, ev any) {
	for _, m := range a.masters {
		post(ctx, m.events, ev)
	}
	for _, s := range a.slaves {
		post(ctx, s.events, ev)
	}
}

func (a *Agent) inbox(dataset string) chan any {
	if m := a.masters[dataset]; m != nil {
		return m.events
	}
	if s := a.slaves[dataset]; s != nil {
		return s.events
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
		a.mu.Unlock()
		a.log.Info("peer connected", "peer", hello.Node, "peer_role", hello.Role, "peer_epoch", hello.Epoch)
		a.broadcast(ctx, evConnUp{c})
		a.wg.Go(func() { a.readMessages(ctx, c) })
		a.wg.Go(func() { a.acceptTransfers(ctx, c) })
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
		case *transport.Error:
			a.log.Warn("peer reported an error", "code", m.Code, "message", m.Message)
			a.mu.Lock()
			a.peer.LastError = &Problem{Code: m.Code, Message: m.Message, At: time.Now()}
			a.mu.Unlock()
			continue
		default:
			continue
		}
		in := a.inbox(ds)
		if in == nil {
			a.log.Warn("peer sent a message about a dataset this node does not protect", "dataset", ds, "type", msg.Type())
			continue
		}
		if !post(ctx, in, ev) {
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
		s := a.slaves[hdr.Dataset]
		if s == nil {
			reason := fmt.Sprintf("%s does not receive dataset %q here", a.cfg.Node.Name, hdr.Dataset)
			if a.masters[hdr.Dataset] != nil {
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
