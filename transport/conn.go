package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Conn is one established connection to the pinned peer: mutual TLS done and
// Hello exchanged. It carries the control stream (typed messages), transfer
// streams (raw zfs send bytes) and heartbeats (datagrams when negotiated).
// Its goroutines stop when the connection closes; Close waits for them.
type Conn struct {
	qc        *quic.Conn
	ctrl      *quic.Stream
	log       *slog.Logger
	local     Hello
	peer      Hello
	dialer    string // name of the node that dialed this connection
	datagrams bool
	headerTO  time.Duration

	sendMu    sync.Mutex // one frame at a time on the control stream
	msgs      chan Message
	hbMu      sync.Mutex // drop-oldest on hbs
	hbs       chan Heartbeat
	transfers chan *IncomingTransfer
	nextID    atomic.Uint64

	wg    sync.WaitGroup
	stats struct {
		datagramsReceived, datagramsDropped, heartbeatsDropped, unknownMessages atomic.Uint64
	}
}

// ConnStats counts what a connection received and dropped.
type ConnStats struct {
	DatagramsReceived uint64 // valid heartbeat datagrams
	DatagramsDropped  uint64 // undecodable, invalid or non-heartbeat datagrams
	HeartbeatsDropped uint64 // the consumer fell behind; the oldest queued heartbeat was dropped
	UnknownMessages   uint64 // control frames of a type this node does not know, skipped
}

// Queue sizes: small, because every queue here is between the network and
// one consumer, and QUIC flow control is the back-pressure for the rest.
const (
	msgQueue       = 8
	heartbeatQueue = 16 // ~1.6 s of heartbeats at 100 ms
)

func newConn(qc *quic.Conn, ctrl *quic.Stream, local, peer Hello, dialer string, headerTO time.Duration, log *slog.Logger) *Conn {
	c := &Conn{
		qc:        qc,
		ctrl:      ctrl,
		local:     local,
		peer:      peer,
		dialer:    dialer,
		datagrams: qc.ConnectionState().SupportsDatagrams.Remote && qc.ConnectionState().SupportsDatagrams.Local,
		headerTO:  headerTO,
		msgs:      make(chan Message, msgQueue),
		hbs:       make(chan Heartbeat, heartbeatQueue),
		transfers: make(chan *IncomingTransfer),
	}
	c.log = log.With("peer", peer.Node, "remote", qc.RemoteAddr().String(), "dialer", dialer)
	c.wg.Add(2)
	go c.readControl()
	go c.acceptTransfers()
	if c.datagrams {
		c.wg.Add(1)
		go c.readDatagrams()
	}
	return c
}

// Peer is the Hello the peer sent.
func (c *Conn) Peer() Hello { return c.peer }

// Dialer is the name of the node that dialed this connection.
func (c *Conn) Dialer() string { return c.dialer }

// DatagramsEnabled reports whether both sides negotiated QUIC datagrams;
// heartbeats use the control stream otherwise.
func (c *Conn) DatagramsEnabled() bool { return c.datagrams }

// RemoteAddr is the peer's UDP address.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// Done is closed when the connection is closed, by either side or by the
// idle timeout.
func (c *Conn) Done() <-chan struct{} { return c.qc.Context().Done() }

// Err is why the connection closed (nil while it is open): a *CloseError for
// application closes, quic-go's *IdleTimeoutError when the peer went silent.
func (c *Conn) Err() error {
	if c.qc.Context().Err() == nil {
		return nil
	}
	return mapErr(context.Cause(c.qc.Context()))
}

// Stats returns the connection's counters.
func (c *Conn) Stats() ConnStats {
	return ConnStats{
		DatagramsReceived: c.stats.datagramsReceived.Load(),
		DatagramsDropped:  c.stats.datagramsDropped.Load(),
		HeartbeatsDropped: c.stats.heartbeatsDropped.Load(),
		UnknownMessages:   c.stats.unknownMessages.Load(),
	}
}

// Close closes the connection with CloseNormal and waits for its goroutines.
// It is idempotent.
func (c *Conn) Close() error { return c.CloseWithError(CloseNormal, "") }

// CloseWithError closes the connection with a code the peer sees and waits
// for the connection's goroutines. Only the first close's code is sent.
func (c *Conn) CloseWithError(code CloseCode, reason string) error {
	c.closeQUIC(code, reason)
	c.wg.Wait()
	return nil
}

func (c *Conn) closeQUIC(code CloseCode, reason string) {
	_ = c.qc.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

// fail closes the connection over a peer's protocol error.
func (c *Conn) fail(err error) {
	code := closeCodeFor(err)
	c.log.Warn("closing connection: peer broke the protocol", "code", code, "err", err)
	c.closeQUIC(code, err.Error())
}

// Send writes one message to the control stream. Messages are validated
// first; an invalid one is an error here, never a frame the peer must reject.
func (c *Conn) Send(ctx context.Context, m Message) error {
	if m != nil && (m.Type() == TypeHello || m.Type() == TypeTransferBegin) {
		return fmt.Errorf("sending %s: %w: it belongs to the handshake or a transfer stream", m.Type(), errUnexpected)
	}
	b, err := AppendFrame(nil, m)
	if err != nil {
		return err
	}
	return c.writeControl(ctx, b)
}

func (c *Conn) writeControl(ctx context.Context, frame []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	n, err := writeCtx(ctx, c.ctrl, frame)
	if err == nil {
		return nil
	}
	if n > 0 && n < len(frame) && ctx.Err() != nil {
		// Half a frame is on the stream, and nothing after it could be
		// parsed: the caller's deadline is too short a reason to lose the
		// connection (a heartbeat too big for a datagram, behind a
		// snapshot list, on a busy host), so the rest still goes out.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), controlFinishGrace)
		m, ferr := writeCtx(fctx, c.ctrl, frame[n:])
		cancel()
		if ferr == nil {
			return nil
		}
		n += m
		err = ferr
	}
	if n > 0 {
		// Half a frame is on the stream: nothing after it could be parsed.
		c.closeQUIC(CloseProtocolError, "control frame cut short by a local timeout")
	}
	if ctx.Err() != nil {
		return fmt.Errorf("writing control frame: %w", ctx.Err())
	}
	return fmt.Errorf("writing control frame: %w", mapErr(err))
}

// controlFinishGrace bounds finishing a control frame whose write was cut
// short by its caller's context: a peer that does not read its control
// stream for this long is stuck, and the connection is closed.
const controlFinishGrace = 10 * time.Second

// deadlineWriter is the part of a QUIC stream writeCtx needs.
type deadlineWriter interface {
	io.Writer
	SetWriteDeadline(time.Time) error
}

// writeCtx writes b, giving up when ctx ends: QUIC streams take deadlines,
// not contexts.
func writeCtx(ctx context.Context, w deadlineWriter, b []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = w.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	n, err := w.Write(b)
	if !stop() {
		<-fired // the deadline was set: let it land before clearing it
	}
	_ = w.SetWriteDeadline(time.Time{})
	return n, err
}

// Receive returns the next control message other than heartbeats (those go
// to ReceiveHeartbeat). After the connection closed it returns Err().
func (c *Conn) Receive(ctx context.Context) (Message, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.Done():
		// Deliver what arrived before the close first.
		select {
		case m := <-c.msgs:
			return m, nil
		default:
		}
		return nil, c.Err()
	}
}

// SendHeartbeat sends hb as a QUIC datagram when the connection negotiated
// datagrams and hb fits in one, and on the control stream otherwise.
// Datagrams are not retransmitted: a lost heartbeat is simply a missed one,
// which is what a failure detector wants to see. On the control stream,
// heartbeats queue behind other messages: a receiver that stops calling
// Receive stalls them too, so the fallback needs Receive served promptly.
func (c *Conn) SendHeartbeat(ctx context.Context, hb Heartbeat) error {
	b, err := AppendFrame(nil, hb)
	if err != nil {
		return err
	}
	if c.datagrams {
		err := c.qc.SendDatagram(b)
		if err == nil {
			return nil
		}
		if _, tooLarge := errors.AsType[*quic.DatagramTooLargeError](err); !tooLarge {
			return fmt.Errorf("sending heartbeat datagram: %w", mapErr(err))
		}
	}
	return c.writeControl(ctx, b)
}

// ReceiveHeartbeat returns the next heartbeat, from a datagram or the
// control stream. When the consumer falls behind, the oldest queued
// heartbeats are dropped (and counted), never the newest.
func (c *Conn) ReceiveHeartbeat(ctx context.Context) (Heartbeat, error) {
	select {
	case hb := <-c.hbs:
		return hb, nil
	case <-ctx.Done():
		return Heartbeat{}, ctx.Err()
	case <-c.Done():
		return Heartbeat{}, c.Err()
	}
}

func (c *Conn) pushHeartbeat(hb Heartbeat) {
	c.hbMu.Lock()
	defer c.hbMu.Unlock()
	for {
		select {
		case c.hbs <- hb:
			return
		default:
		}
		select {
		case <-c.hbs:
			c.stats.heartbeatsDropped.Add(1)
		default:
		}
	}
}

// readControl routes control frames until the connection ends. Any decoding
// error closes the connection (only this one) with the matching code.
func (c *Conn) readControl() {
	defer c.wg.Done()
	for {
		f, err := ReadFrame(c.ctrl)
		if err != nil {
			if c.Err() != nil {
				return // the connection is already closed
			}
			if _, closed := errors.AsType[*quic.ApplicationError](err); closed {
				// Closed with a code a moment before c.Err says so: by this
				// node (superseded, shutting down) or by the peer. No
				// protocol error; the session reports the close.
				return
			}
			if errors.Is(err, io.EOF) {
				c.fail(fmt.Errorf("%w: peer ended the control stream", errUnexpected))
				return
			}
			if _, reset := errors.AsType[*quic.StreamError](err); reset {
				c.fail(fmt.Errorf("%w: peer reset the control stream", errUnexpected))
				return
			}
			c.fail(fmt.Errorf("reading control stream: %w", err))
			return
		}
		m, err := ParseMessage(f)
		if errors.Is(err, ErrUnknownType) {
			// Forward compatibility: a newer peer's advisory message.
			c.stats.unknownMessages.Add(1)
			c.log.Debug("skipping control message of unknown type", "type", uint8(f.Type), "bytes", len(f.Body))
			continue
		}
		if err != nil {
			c.fail(fmt.Errorf("control stream: %w", err))
			return
		}
		switch m := m.(type) {
		case *Heartbeat:
			c.pushHeartbeat(*m)
		case *Hello, *TransferBegin:
			c.fail(fmt.Errorf("%w: %s on the control stream after the handshake", errUnexpected, m.Type()))
			return
		default:
			select {
			case c.msgs <- m:
			case <-c.Done():
				return
			}
		}
	}
}

// readDatagrams decodes heartbeat datagrams. A datagram that is not a valid
// heartbeat frame is dropped and counted: datagrams are unreliable and
// unordered anyway, so garbage never closes anything.
func (c *Conn) readDatagrams() {
	defer c.wg.Done()
	for {
		b, err := c.qc.ReceiveDatagram(c.qc.Context())
		if err != nil {
			return
		}
		m, err := DecodeDatagram(b)
		hb, ok := m.(*Heartbeat)
		if err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("%s is not carried in datagrams", m.Type())
			}
			if n := c.stats.datagramsDropped.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th, ...
				c.log.Warn("dropped bad datagram", "bytes", len(b), "err", err, "dropped", n)
			}
			continue
		}
		c.stats.datagramsReceived.Add(1)
		c.pushHeartbeat(*hb)
	}
}
