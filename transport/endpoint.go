package transport

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flockerha/flocker/transport/pki"
	"github.com/quic-go/quic-go"
)

// Timing defaults, sized for failover: heartbeat 100 ms, failure timeout 1 s
// (issue 5; [failover] heartbeat and timeout in the config).
const (
	// DefaultKeepAlive makes QUIC send a PING when nothing else was sent for
	// one heartbeat interval, so the idle timer measures the peer's silence,
	// not the agent's. quic-go caps it at half the idle timeout.
	DefaultKeepAlive = 100 * time.Millisecond
	// DefaultIdleTimeout closes a connection whose peer was silent for one
	// failure timeout: 10 keep-alives in a row lost. quic-go takes the
	// smaller of both sides' values (and never less than 3 PTOs).
	DefaultIdleTimeout = time.Second
	// DefaultHandshakeTimeout bounds the QUIC handshake (quic-go allows 2x
	// this in total): two round trips plus ed25519 signatures take
	// milliseconds, even in the TCG guests, so this only matters when the
	// peer is down, and then a short attempt lets the next one start soon.
	DefaultHandshakeTimeout = time.Second
	// DefaultHelloTimeout bounds the Hello exchange after the handshake.
	DefaultHelloTimeout = 2 * time.Second
	// DefaultHeaderTimeout bounds reading a transfer stream's header.
	DefaultHeaderTimeout = 5 * time.Second
)

// Flow-control windows: the bound on what one connection can hold in
// memory. A stream's window is maxStreamWindow, enough for ~1 Gbit/s at
// 60 ms RTT; the connection's maxConnWindow, two full transfers. Memory per
// connection is at most maxConnWindow received plus the sender's congestion
// window in flight. The windows start at their maximum: quic-go's
// auto-tuning grows them only when a window is used up within a few
// round trips, and on a busy host (measured: 2 cores at load 20) the
// round trips stretch with scheduling delays, so a 512 KiB start held a
// full sync at 55-70% of a local zfs send | zfs receive; at full size it
// ran at 80-85%.
const (
	initialStreamWindow  = 8 << 20
	maxStreamWindow      = 8 << 20
	initialConnWindow    = 16 << 20
	maxConnWindow        = 16 << 20
	maxIncomingTransfers = 16
)

// Config describes this node and the one peer it talks to.
type Config struct {
	Node            string          // this node's name ([node] name)
	Cert            tls.Certificate // this node's self-signed certificate and key
	ListenAddr      string          // UDP host:port ([node] listen); port 0 picks one
	Peer            string          // the peer's name ([peer] name)
	PeerFingerprint string          // sha256:<hex> of the peer's certificate ([peer] fingerprint)
	// LocalState reports this node's role and epoch for each Hello; it is
	// called from dialing and accepting goroutines, so it must be safe for
	// concurrent use.
	LocalState func() (Role, uint64)
	Logger     *slog.Logger

	// Zero values take the defaults above.
	KeepAlive        time.Duration
	IdleTimeout      time.Duration
	HandshakeTimeout time.Duration
	HelloTimeout     time.Duration
	HeaderTimeout    time.Duration
	// DisableDatagrams turns off QUIC datagrams (heartbeats then go over the
	// control stream); for peers or paths without them, and for tests.
	DisableDatagrams bool
}

func (c *Config) check() error {
	if err := checkNodeName("node name", c.Node); err != nil {
		return fmt.Errorf("transport config: %w", err)
	}
	if err := checkNodeName("peer name", c.Peer); err != nil {
		return fmt.Errorf("transport config: %w", err)
	}
	if c.Node == c.Peer {
		return fmt.Errorf("transport config: node and peer are both named %q", c.Node)
	}
	if len(c.Cert.Certificate) == 0 || c.Cert.PrivateKey == nil {
		return errors.New("transport config: certificate and key missing")
	}
	if _, err := pki.ParseFingerprint(c.PeerFingerprint); err != nil {
		return fmt.Errorf("transport config: peer %w", err)
	}
	if c.LocalState == nil {
		return errors.New("transport config: LocalState missing")
	}
	if c.Logger == nil {
		return errors.New("transport config: Logger missing")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"keep-alive", &c.KeepAlive, DefaultKeepAlive},
		{"idle timeout", &c.IdleTimeout, DefaultIdleTimeout},
		{"handshake timeout", &c.HandshakeTimeout, DefaultHandshakeTimeout},
		{"hello timeout", &c.HelloTimeout, DefaultHelloTimeout},
		{"header timeout", &c.HeaderTimeout, DefaultHeaderTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("transport config: %s %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.KeepAlive >= c.IdleTimeout {
		return fmt.Errorf("transport config: keep-alive %v must be shorter than the idle timeout %v", c.KeepAlive, c.IdleTimeout)
	}
	return nil
}

// Endpoint is this node's QUIC socket: it listens for the peer and dials it
// from the same UDP port. It accepts exactly one identity, the pinned peer.
type Endpoint struct {
	cfg      Config
	log      *slog.Logger
	pin      *pinning
	udp      *net.UDPConn
	tr       *quic.Transport
	ln       *quic.Listener
	instance uint64
	refused  atomic.Uint64

	mu     sync.Mutex
	conns  map[*Conn]struct{}
	closed bool
}

// Listen binds the UDP socket and starts accepting QUIC handshakes. Close
// releases it.
func Listen(cfg Config) (*Endpoint, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.ListenAddr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.ListenAddr, err)
	}
	resetKey, err := statelessResetKey(cfg.Cert)
	if err != nil {
		udp.Close()
		return nil, err
	}
	var inst [8]byte
	_, _ = rand.Read(inst[:])
	e := &Endpoint{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.Node),
		instance: binary.BigEndian.Uint64(inst[:]) | 1,
		conns:    map[*Conn]struct{}{},
		udp:      udp,
		tr: &quic.Transport{
			Conn: udp,
			// A stable key lets a restarted node answer the old connection's
			// packets with a stateless reset, so the peer drops it at once
			// instead of after the idle timeout.
			StatelessResetKey: resetKey,
		},
	}
	e.pin = &pinning{cert: cfg.Cert, want: cfg.PeerFingerprint, log: e.log, refused: &e.refused}
	e.ln, err = e.tr.Listen(e.pin.serverTLS(), e.quicConfig(true))
	if err != nil {
		e.tr.Close()
		udp.Close()
		return nil, fmt.Errorf("listening on %s: %w", cfg.ListenAddr, err)
	}
	e.log.Info("listening", "addr", udp.LocalAddr().String(), "alpn", ALPN, "pinned", cfg.PeerFingerprint)
	return e, nil
}

// statelessResetKey derives the key from the node's private key, so it is
// the same after a restart and secret like the key itself.
func statelessResetKey(cert tls.Certificate) (*quic.StatelessResetKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("deriving stateless reset key: %w", err)
	}
	k := quic.StatelessResetKey(sha256.Sum256(append([]byte("flocker stateless reset key\x00"), der...)))
	return &k, nil
}

func (e *Endpoint) quicConfig(server bool) *quic.Config {
	c := &quic.Config{
		HandshakeIdleTimeout:           e.cfg.HandshakeTimeout,
		MaxIdleTimeout:                 e.cfg.IdleTimeout,
		KeepAlivePeriod:                e.cfg.KeepAlive,
		InitialStreamReceiveWindow:     initialStreamWindow,
		MaxStreamReceiveWindow:         maxStreamWindow,
		InitialConnectionReceiveWindow: initialConnWindow,
		MaxConnectionReceiveWindow:     maxConnWindow,
		MaxIncomingUniStreams:          maxIncomingTransfers,
		EnableDatagrams:                !e.cfg.DisableDatagrams,
		// Only the dialer opens a bidirectional stream: the control stream.
		MaxIncomingStreams: -1,
	}
	if server {
		c.MaxIncomingStreams = 1
	}
	return c
}

// Addr is the bound UDP address.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Refused counts handshakes refused for a wrong or missing certificate or a
// wrong ALPN, in both directions.
func (e *Endpoint) Refused() uint64 { return e.refused.Load() }

// Dial connects to the peer at addr: QUIC handshake with mutual pinning,
// then Hello both ways.
func (e *Endpoint) Dial(ctx context.Context, addr string) (*Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer address %q: %w", addr, err)
	}
	qc, err := e.tr.Dial(ctx, ua, e.pin.clientTLS(ua), e.quicConfig(false))
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, mapErr(err))
	}
	c, err := e.clientHello(ctx, qc)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	return c, nil
}

// Accept returns the next connection the peer dialed, after Hello. Peers
// that fail the Hello are logged and closed; Accept goes on waiting.
func (e *Endpoint) Accept(ctx context.Context) (*Conn, error) {
	for {
		qc, err := e.ln.Accept(ctx)
		if err != nil {
			return nil, err
		}
		c, err := e.serverHello(ctx, qc)
		if err != nil {
			e.log.Warn("refused connection after the handshake", "remote", qc.RemoteAddr().String(), "err", err)
			continue
		}
		return c, nil
	}
}

func (e *Endpoint) localHello() Hello {
	role, epoch := e.cfg.LocalState()
	return Hello{Node: e.cfg.Node, Version: ProtocolVersion, Role: role, Epoch: epoch, Instance: e.instance}
}

func (e *Endpoint) clientHello(ctx context.Context, qc *quic.Conn) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.HelloTimeout)
	defer cancel()
	local := e.localHello()
	frame, err := AppendFrame(nil, local)
	if err != nil {
		qc.CloseWithError(quic.ApplicationErrorCode(CloseProtocolError), "")
		return nil, fmt.Errorf("local hello: %w", err)
	}
	ctrl, err := qc.OpenStreamSync(ctx)
	if err == nil {
		_, err = writeCtx(ctx, ctrl, frame)
	}
	var peer Hello
	if err == nil {
		peer, err = e.readHello(ctx, qc, ctrl)
	}
	if err != nil {
		return nil, e.helloFailed(qc, err)
	}
	return e.adopt(qc, ctrl, local, peer, e.cfg.Node), nil
}

func (e *Endpoint) serverHello(ctx context.Context, qc *quic.Conn) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.HelloTimeout)
	defer cancel()
	ctrl, err := qc.AcceptStream(ctx)
	var peer Hello
	if err == nil {
		peer, err = e.readHello(ctx, qc, ctrl)
	}
	local := e.localHello()
	if err == nil {
		var frame []byte
		if frame, err = AppendFrame(nil, local); err == nil {
			_, err = writeCtx(ctx, ctrl, frame)
		}
	}
	if err != nil {
		return nil, e.helloFailed(qc, err)
	}
	return e.adopt(qc, ctrl, local, peer, e.cfg.Peer), nil
}

// readHello reads and checks the peer's Hello, giving up with ctx.
func (e *Endpoint) readHello(ctx context.Context, qc *quic.Conn, ctrl *quic.Stream) (Hello, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = ctrl.SetReadDeadline(dl)
		defer ctrl.SetReadDeadline(time.Time{})
	}
	f, err := ReadFrame(ctrl)
	if err != nil {
		if errors.Is(err, net.ErrClosed) { // the peer closed or refused
			return Hello{}, mapErr(err)
		}
		return Hello{}, fmt.Errorf("reading hello: %w", err)
	}
	if f.Type != TypeHello {
		return Hello{}, fmt.Errorf("%w: %s before hello", errUnexpected, f.Type)
	}
	m, err := ParseMessage(f)
	if err != nil {
		return Hello{}, err
	}
	h := *m.(*Hello)
	if h.Version != ProtocolVersion {
		return Hello{}, fmt.Errorf("%w %d in hello (this node speaks %d)", ErrUnsupportedVersion, h.Version, ProtocolVersion)
	}
	if h.Node != e.cfg.Peer {
		return Hello{}, fmt.Errorf("%w: hello from %q, the pinned peer is %q", errWrongPeer, h.Node, e.cfg.Peer)
	}
	return h, nil
}

// helloFailed closes qc with the code matching err (unless the peer or the
// handshake already closed it) and returns the error to report.
func (e *Endpoint) helloFailed(qc *quic.Conn, err error) error {
	if qc.Context().Err() != nil {
		if cause := mapErr(context.Cause(qc.Context())); cause != nil {
			return cause
		}
		return err
	}
	code := closeCodeFor(err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		code = CloseHelloTimeout
	}
	qc.CloseWithError(quic.ApplicationErrorCode(code), err.Error())
	return fmt.Errorf("hello: %w", err)
}

func (e *Endpoint) adopt(qc *quic.Conn, ctrl *quic.Stream, local, peer Hello, dialer string) *Conn {
	c := newConn(qc, ctrl, local, peer, dialer, e.cfg.HeaderTimeout, e.log)
	e.mu.Lock()
	closed := e.closed
	if !closed {
		e.conns[c] = struct{}{}
	}
	e.mu.Unlock()
	if closed {
		c.CloseWithError(CloseShutdown, "endpoint closing")
		return c
	}
	context.AfterFunc(qc.Context(), func() {
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
	})
	return c
}

// Close closes every connection of this endpoint with CloseShutdown (so the
// peer learns at once, not after its idle timeout), then the socket.
// Idempotent.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	conns := make([]*Conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.CloseWithError(CloseShutdown, "node shutting down")
	}
	// quic.Transport does not close a socket it was given.
	return errors.Join(e.ln.Close(), e.tr.Close(), e.udp.Close())
}
