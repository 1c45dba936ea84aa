package failover

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Reachability probes.
//
// The witness is probed with ICMP echo: the witness is "a third address"
// (typically the gateway or a switch), and ICMP echo is the one thing any
// IP host answers without a service of ours on it; a UDP or TCP probe would
// need a listener, or rely on the witness sending port-unreachable or RST,
// which firewalls and routers commonly suppress. The agent runs as root,
// so raw ICMP sockets are available. The peer's host is probed the same
// way: its kernel answers echo whether or not its agent runs, which is what
// tells a dead host from a dead agent. The service on the floating address
// is probed with a TCP connect ([dataset] probe = tcp:PORT, proposed).

// DefaultProbeTimeout bounds a probe when the context has no deadline.
const DefaultProbeTimeout = time.Second

// Pinger sends ICMP echo requests and waits for the matching replies. Its
// sockets belong to the network namespace of the thread that called
// NewPinger. Probes are serialised: a Pinger probes one address at a time.
type Pinger struct {
	mu     sync.Mutex
	c4, c6 *icmp.PacketConn
	id     int
	seq    uint16
}

// NewPinger opens raw ICMPv4 and ICMPv6 sockets (root or CAP_NET_RAW). A
// family the host lacks (no IPv6) is left out; pinging it then fails.
func NewPinger() (*Pinger, error) {
	var b [2]byte
	rand.Read(b[:])
	p := &Pinger{id: int(binary.BigEndian.Uint16(b[:]))}
	var err4, err6 error
	p.c4, err4 = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	p.c6, err6 = icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err4 != nil && err6 != nil {
		return nil, fmt.Errorf("opening ICMP sockets: %w", errors.Join(err4, err6))
	}
	return p, nil
}

// Close closes the sockets.
func (p *Pinger) Close() error {
	var errs []error
	if p.c4 != nil {
		errs = append(errs, p.c4.Close())
	}
	if p.c6 != nil {
		errs = append(errs, p.c6.Close())
	}
	return errors.Join(errs...)
}

// drainGrace is how long a ping whose deadline passed still reads replies
// already queued on its socket (see Ping).
const drainGrace = 2 * time.Millisecond

// ErrNoReply: the address did not answer in time.
var ErrNoReply = errors.New("no reply")

// Ping sends one echo request to addr and waits for its reply until ctx's
// deadline (DefaultProbeTimeout without one). It returns the round trip.
func (p *Pinger) Ping(ctx context.Context, addr netip.Addr) (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("ping %v: %w", addr, err)
	}
	addr = addr.Unmap()
	conn, req, rep := p.c4, icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply)
	proto := 1 // ICMP, for parsing
	if addr.Is6() {
		conn, req, rep, proto = p.c6, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	if conn == nil {
		return 0, fmt.Errorf("ping %v: no socket for its family", addr)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultProbeTimeout)
	}
	p.seq++
	seq := int(p.seq)
	// ICMPv6 checksums are filled in by the kernel on raw ICMPv6 sockets.
	msg, err := (&icmp.Message{Type: req, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("flocker")}}).Marshal(nil)
	if err != nil {
		return 0, fmt.Errorf("ping %v: %w", addr, err)
	}
	// A cancelled context ends the wait at once.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		conn.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()
	drained := false
	if err := conn.SetReadDeadline(deadline); err != nil {
		return 0, fmt.Errorf("ping %v: %w", addr, err)
	}
	start := time.Now()
	if _, err := conn.WriteTo(msg, &net.IPAddr{IP: addr.AsSlice(), Zone: addr.Zone()}); err != nil {
		return 0, fmt.Errorf("ping %v: %w", addr, err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(ctx.Err(), context.Canceled):
				return 0, fmt.Errorf("ping %v: %w", addr, ctx.Err())
			case (ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout()) && !drained:
				// Go refuses to read once the deadline has passed, even
				// what the kernel holds: a reply that came in time, to a
				// goroutine that did not run in time (a starved process),
				// would be lost. Read what is queued, briefly, once.
				drained = true
				if !stop() && ctx.Err() != nil {
					<-fired
				}
				if err := conn.SetReadDeadline(time.Now().Add(drainGrace)); err != nil {
					return 0, fmt.Errorf("ping %v: %w", addr, err)
				}
				continue
			case ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
				return 0, fmt.Errorf("ping %v: %w within %v", addr, ErrNoReply, deadline.Sub(start).Round(time.Millisecond))
			}
			return 0, fmt.Errorf("ping %v: %w", addr, err)
		}
		// The raw socket sees every ICMP message to this host: keep only
		// the reply to this request.
		src, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(src.IP); !ok || ip.Unmap() != addr {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != rep {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == p.id && e.Seq == seq {
			return time.Since(start), nil
		}
	}
}

// ServiceAnswer is the outcome of a TCP probe.
type ServiceAnswer int

// TCP probe outcomes.
const (
	Silent   ServiceAnswer = iota // no answer in time: nobody holds the address, or its host is gone
	Refused                       // a host holds the address but nothing listens on the port
	Answered                      // the connection was accepted
)

func (a ServiceAnswer) String() string {
	return [...]string{"silent", "refused", "answered"}[a]
}

// ProbeTCP connects to addr within ctx's deadline (DefaultProbeTimeout
// without one) and closes the connection at once.
func ProbeTCP(ctx context.Context, addr netip.AddrPort) ServiceAnswer {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultProbeTimeout)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	switch {
	case err == nil:
		c.Close()
		return Answered
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	}
	return Silent
}

// Probes gathers the Evidence for a PeerDead event.
type Probes struct {
	Pinger  *Pinger
	Peer    netip.Addr     // the peer's address ([peer] address)
	Service netip.AddrPort // the floating address and service port; invalid when not configured
	Timeout time.Duration  // per probe; 0 means DefaultProbeTimeout (the agent passes Timing.ProbeTimeout)
}

// Gather runs the peer ping and the service probe at once and waits for
// both. A refused connection on the floating address counts as a reachable
// host: some live host still holds the address, so taking it would put it
// on two hosts. The host probe relies on the peer answering ICMP echo; a
// peer that drops echo requests looks dead to it (the service probe then
// has to tell).
func (p Probes) Gather(ctx context.Context) Evidence {
	ctx, cancel := context.WithTimeout(ctx, orDefault(p.Timeout, DefaultProbeTimeout))
	defer cancel()
	var ev Evidence
	var svc ServiceAnswer
	var wg sync.WaitGroup
	if p.Pinger != nil && p.Peer.IsValid() {
		// The pinger's socket exists already; the TCP socket is made by
		// the calling goroutine, in its network namespace.
		wg.Go(func() {
			_, err := p.Pinger.Ping(ctx, p.Peer)
			ev.HostReachable = err == nil
		})
	}
	if p.Service.IsValid() {
		svc = ProbeTCP(ctx, p.Service)
	}
	wg.Wait()
	ev.ServiceAnswers = svc == Answered
	if svc == Refused {
		ev.HostReachable = true
	}
	return ev
}

// RunWitness pings the witness every interval with a timeout of one
// interval and calls reply for each answer (the agent feeds its witness
// Detector with ObserveReply). It blocks until ctx ends.
func RunWitness(ctx context.Context, p *Pinger, witness netip.Addr, every time.Duration, reply func()) {
	for {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, every)
		_, err := p.Ping(pctx, witness)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			reply()
		}
		if sleep(ctx, every-time.Since(start)) != nil {
			return
		}
	}
}
