package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// SessionConfig is an Endpoint's Config plus where to reach the peer.
type SessionConfig struct {
	Config
	PeerAddr string // the peer's UDP host:port ([peer] address)
	// DialTimeout bounds one dial attempt, handshake and Hello (default 2 s:
	// quic-go's handshake limit of 2 x HandshakeTimeout).
	DialTimeout time.Duration
	// OnState is called on every change of the live connection, in order,
	// from the session's goroutine: keep it short and never call Close from it.
	OnState func(StateChange)
}

// StateChange reports the live connection going up, being replaced, or
// going down. An Up while a connection is live replaces it (use the new
// Conn). When both nodes dial at once, the connection a node adopted first
// may be closed by the peer (a Down with a remote CloseSuperseded) a moment
// before the winning one arrives as the next Up.
type StateChange struct {
	Up     bool
	Conn   *Conn // the live connection when Up; the one that went down otherwise
	Reason string
	Err    error // why it went down (nil when Up)
	At     time.Time
}

// Session keeps exactly one live connection to the pinned peer. Both nodes
// listen and both dial when they have no connection, so either side's
// restart is repaired by the side that comes up; simultaneous connects are
// resolved by supersedes, the same way on both nodes.
type Session struct {
	cfg SessionConfig
	ep  *Endpoint

	cancel context.CancelFunc
	wg     sync.WaitGroup
	cands  chan candidate
	dialed chan dialResult

	dialInFlight atomic.Bool // mirrors run's dialing, for tests

	mu      sync.Mutex
	cur     *Conn
	changed chan struct{} // closed and replaced when cur changes
	started bool
	closed  bool
}

type candidate struct {
	c   *Conn
	how string
}

type dialResult struct {
	c   *Conn
	err error
}

// NewSession checks the configuration; nothing runs until Start.
func NewSession(cfg SessionConfig) (*Session, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.PeerAddr == "" {
		return nil, errors.New("transport config: peer address missing")
	}
	if cfg.DialTimeout < 0 {
		return nil, fmt.Errorf("transport config: dial timeout %v is negative", cfg.DialTimeout)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 2 * cfg.HandshakeTimeout
	}
	return &Session{cfg: cfg, changed: make(chan struct{})}, nil
}

// Start binds the listening socket and starts accepting and dialing.
func (s *Session) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return errors.New("session already started")
	}
	ep, err := Listen(s.cfg.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.ep, s.cancel, s.started = ep, cancel, true
	s.cands = make(chan candidate)
	s.dialed = make(chan dialResult)
	s.wg.Add(2)
	go s.acceptLoop(ctx)
	go s.run(ctx)
	return nil
}

// Addr is the bound UDP address (after Start).
func (s *Session) Addr() string { return s.ep.Addr().String() }

// Endpoint is the session's endpoint (after Start), for its counters.
func (s *Session) Endpoint() *Endpoint { return s.ep }

// Conn returns the live connection, or nil while there is none.
func (s *Session) Conn() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// WaitConn waits for a live connection other than prev (nil: any).
func (s *Session) WaitConn(ctx context.Context, prev *Conn) (*Conn, error) {
	for {
		s.mu.Lock()
		cur, changed := s.cur, s.changed
		s.mu.Unlock()
		if cur != nil && cur != prev && cur.Err() == nil {
			return cur, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close stops dialing and accepting, closes the connection with
// CloseShutdown and the socket, and waits for every goroutine. Idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	return s.ep.Close()
}

// acceptLoop hands every connection the peer dials to run, each Hello in its
// own goroutine so one slow peer cannot hold up the next.
func (s *Session) acceptLoop(ctx context.Context) {
	defer s.wg.Done()
	var hellos sync.WaitGroup
	defer hellos.Wait()
	for {
		qc, err := s.ep.ln.Accept(ctx)
		if err != nil {
			return
		}
		hellos.Go(func() {
			c, err := s.ep.serverHello(ctx, qc)
			if err != nil {
				s.ep.log.Warn("refused connection after the handshake", "remote", qc.RemoteAddr().String(), "err", err)
				return
			}
			s.offer(ctx, candidate{c, "accepted"})
		})
	}
}

func (s *Session) offer(ctx context.Context, cand candidate) {
	select {
	case s.cands <- cand:
	case <-ctx.Done():
		cand.c.CloseWithError(CloseShutdown, "node shutting down")
	}
}

// run owns the live connection: it adopts candidates, notices the
// connection dying, and dials with backoff while there is none.
//
// A connection is adopted as soon as its Hello is done, even while this
// node's own dial is in flight. Holding it until the dial resolves would
// spare the rare crossing connect one replacement, but a dial to a peer
// that was down can take a retransmission timeout or more to resolve, and
// reconnecting after a restart is what failover waits on.
func (s *Session) run(ctx context.Context) {
	defer s.wg.Done()
	log := s.ep.log.With("peer", s.cfg.Peer, "peer_addr", s.cfg.PeerAddr)
	var (
		cur      *Conn
		attempt  int       // dial attempts since the last connection
		dialing  bool      // a dial goroutine is running
		downAt   time.Time // when the last connection went down
		timer    = time.NewTimer(0)
		dialWG   sync.WaitGroup
		reapWG   sync.WaitGroup // closing replaced and dead connections
		closeAll = func() {
			dialWG.Wait()
			reapWG.Wait()
			if cur != nil {
				cur.CloseWithError(CloseShutdown, "node shutting down")
				s.setCur(nil, StateChange{Conn: cur, Reason: "session closed", Err: cur.Err(), At: time.Now()})
			}
		}
	)
	defer closeAll()
	adopt := func(cand candidate) {
		now := time.Now()
		if cur != nil && cur.Err() == nil {
			if !supersedes(s.cfg.Node, s.cfg.Peer, info(cur), info(cand.c)) {
				log.Info("closing duplicate connection", "kept_dialer", cur.Dialer(), "closed_dialer", cand.c.Dialer())
				loser, why := cand.c, "kept the connection dialed by "+cur.Dialer()
				reapWG.Go(func() { loser.CloseWithError(CloseSuperseded, why) })
				return
			}
			old, why := cur, "replaced by a connection dialed by "+cand.c.Dialer()
			reapWG.Go(func() { old.CloseWithError(CloseSuperseded, why) })
			cur, attempt = cand.c, 0
			log.Info("connection replaced", "how", cand.how, "dialer", cur.Dialer())
			s.setCur(cur, StateChange{Up: true, Conn: cur, Reason: "replaced: " + cand.how, At: now})
			return
		}
		cur, attempt = cand.c, 0
		args := []any{"how", cand.how, "dialer", cur.Dialer(), "datagrams", cur.DatagramsEnabled()}
		if !downAt.IsZero() {
			args = append(args, "down_for", now.Sub(downAt).Round(time.Millisecond))
		}
		log.Info("connection up", args...)
		s.setCur(cur, StateChange{Up: true, Conn: cur, Reason: cand.how, At: now})
	}
	for {
		var curDone <-chan struct{}
		if cur != nil {
			curDone = cur.Done()
		}
		select {
		case <-ctx.Done():
			return
		case cand := <-s.cands:
			adopt(cand)
		case <-curDone:
			err := cur.Err()
			downAt = time.Now()
			if closedCleanly(err) {
				log.Info("connection closed", "err", err)
			} else {
				log.Warn("connection down", "err", err)
			}
			s.setCur(nil, StateChange{Conn: cur, Reason: "connection lost", Err: err, At: downAt})
			dead := cur
			reapWG.Go(func() { dead.Close() }) // reap its goroutines
			cur, attempt = nil, 0
			if !dialing {
				timer.Reset(0)
			}
		case <-timer.C:
			if cur != nil || dialing {
				continue
			}
			dialing = true
			s.dialInFlight.Store(true)
			dialWG.Go(func() {
				dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
				defer cancel()
				c, err := s.ep.Dial(dctx, s.cfg.PeerAddr)
				select {
				case s.dialed <- dialResult{c, err}:
				case <-ctx.Done():
					if c != nil {
						c.CloseWithError(CloseShutdown, "node shutting down")
					}
				}
			})
		case res := <-s.dialed:
			dialing = false
			s.dialInFlight.Store(false)
			if res.err == nil {
				adopt(candidate{res.c, "dialed"})
				continue
			}
			if cur != nil {
				continue // an accepted connection came up meanwhile
			}
			attempt++
			d := backoffDelay(attempt, rand.Float64())
			log.Debug("dial failed", "attempt", attempt, "retry_in", d, "err", res.err)
			timer.Reset(d)
		}
	}
}

// closedCleanly reports a connection ended on purpose: the peer shut down,
// closed it in order or kept a crossing connection instead, or this node
// closed it (a protocol error is logged where it is found). Anything else
// (an idle timeout, a stateless reset, the peer refusing our messages) is a
// failure worth a warning.
func closedCleanly(err error) bool {
	ce, ok := errors.AsType[*CloseError](err)
	if !ok {
		return false
	}
	switch {
	case !ce.Remote:
		return true
	case ce.Code == CloseShutdown, ce.Code == CloseNormal, ce.Code == CloseSuperseded:
		return true
	}
	return false
}

func info(c *Conn) connInfo { return connInfo{dialer: c.Dialer(), peerInstance: c.Peer().Instance} }

func (s *Session) setCur(c *Conn, ev StateChange) {
	s.mu.Lock()
	s.cur = c
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if s.cfg.OnState != nil {
		s.cfg.OnState(ev)
	}
}
