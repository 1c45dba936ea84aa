package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// A transfer is one unidirectional QUIC stream: a TransferBegin frame, then
// the raw zfs send bytes, then FIN. Back-pressure is QUIC flow control end to
// end: the receiver's stream window (maxStreamWindow) is all that can be in
// flight, so a slow zfs receive blocks the sender's Write and, through the
// pipe, zfs send itself. Either side aborts with a stream reset carrying an
// AbortCode; the other side's Read or Write then returns a
// *TransferAbortedError with Remote set.

// OutgoingTransfer is the sending side of a transfer.
type OutgoingTransfer struct {
	hdr TransferBegin
	s   *quic.SendStream
	n   atomic.Uint64
}

// OpenTransfer opens a transfer stream and writes its header. A zero hdr.ID
// is replaced by the next ID of this connection (IDs are per sender). It
// blocks while the peer already has its maximum of transfers open.
func (c *Conn) OpenTransfer(ctx context.Context, hdr TransferBegin) (*OutgoingTransfer, error) {
	if hdr.ID == 0 {
		hdr.ID = c.nextID.Add(1)
	}
	b, err := AppendFrame(nil, hdr)
	if err != nil {
		return nil, err
	}
	s, err := c.qc.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening transfer %d: %w", hdr.ID, mapErr(err))
	}
	if _, err := writeCtx(ctx, s, b); err != nil {
		s.CancelWrite(quic.StreamErrorCode(AbortCanceled))
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("writing transfer %d header: %w", hdr.ID, mapErr(err))
	}
	return &OutgoingTransfer{hdr: hdr, s: s}, nil
}

// Header is the transfer's header as sent (with its ID).
func (t *OutgoingTransfer) Header() TransferBegin { return t.hdr }

// Bytes is how many payload bytes Write accepted so far.
func (t *OutgoingTransfer) Bytes() uint64 { return t.n.Load() }

// Write sends payload bytes, blocking while the receiver's window is full.
func (t *OutgoingTransfer) Write(p []byte) (int, error) {
	n, err := t.s.Write(p)
	t.n.Add(uint64(n))
	if err != nil {
		return n, fmt.Errorf("transfer %d: %w", t.hdr.ID, mapErr(err))
	}
	return n, nil
}

// Close ends the transfer normally: the receiver reads io.EOF after the last
// byte. It does not wait for the receiver; its Ack says how it went.
func (t *OutgoingTransfer) Close() error {
	if err := t.s.Close(); err != nil {
		return fmt.Errorf("transfer %d: %w", t.hdr.ID, mapErr(err))
	}
	return nil
}

// Abort resets the stream with code; the receiver's Read returns a
// *TransferAbortedError with that code. Idempotent.
func (t *OutgoingTransfer) Abort(code AbortCode) {
	t.s.CancelWrite(quic.StreamErrorCode(code))
}

// IncomingTransfer is the receiving side of a transfer.
type IncomingTransfer struct {
	hdr  TransferBegin
	s    *quic.ReceiveStream
	n    atomic.Uint64
	done atomic.Bool // read to io.EOF
}

// Header is the transfer's header.
func (t *IncomingTransfer) Header() TransferBegin { return t.hdr }

// Bytes is how many payload bytes were read so far.
func (t *IncomingTransfer) Bytes() uint64 { return t.n.Load() }

// Read reads payload bytes; io.EOF after the sender's Close.
func (t *IncomingTransfer) Read(p []byte) (int, error) {
	n, err := t.s.Read(p)
	t.n.Add(uint64(n))
	if err == io.EOF {
		t.done.Store(true)
		return n, io.EOF
	}
	if err != nil {
		return n, fmt.Errorf("transfer %d: %w", t.hdr.ID, mapErr(err))
	}
	return n, nil
}

// Close releases the stream. Before io.EOF it aborts the transfer with
// AbortCanceled, so the sender stops instead of blocking forever.
func (t *IncomingTransfer) Close() error {
	if !t.done.Load() {
		t.s.CancelRead(quic.StreamErrorCode(AbortCanceled))
	}
	return nil
}

// Abort tells the sender to stop with code; its Write returns a
// *TransferAbortedError with that code. Idempotent.
func (t *IncomingTransfer) Abort(code AbortCode) {
	t.s.CancelRead(quic.StreamErrorCode(code))
}

// AcceptTransfer returns the next transfer the peer opened, header read and
// validated.
func (c *Conn) AcceptTransfer(ctx context.Context) (*IncomingTransfer, error) {
	select {
	case t := <-c.transfers:
		return t, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.Done():
		return nil, c.Err()
	}
}

// acceptTransfers reads each transfer stream's header and hands the stream
// to AcceptTransfer. While nobody accepts, further streams wait in quic-go,
// bounded by maxIncomingTransfers. A malformed header is a protocol error and
// closes the connection, like any malformed frame.
func (c *Conn) acceptTransfers() {
	defer c.wg.Done()
	for {
		s, err := c.qc.AcceptUniStream(c.qc.Context())
		if err != nil {
			return
		}
		_ = s.SetReadDeadline(time.Now().Add(c.headerTO))
		f, err := ReadFrame(s)
		_ = s.SetReadDeadline(time.Time{})
		if err != nil {
			if c.Err() != nil {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) {
				// Slow or empty, not malformed: drop this stream only.
				c.log.Warn("dropping transfer stream without a header", "err", err)
				s.CancelRead(quic.StreamErrorCode(AbortBadHeader))
				continue
			}
			if _, reset := errors.AsType[*quic.StreamError](err); reset {
				continue // the sender aborted before the header was read
			}
			c.fail(fmt.Errorf("transfer header: %w", err))
			return
		}
		m, err := ParseMessage(f)
		if err == nil && f.Type != TypeTransferBegin {
			err = fmt.Errorf("%w: %s opens a transfer stream", errUnexpected, f.Type)
		}
		if err != nil {
			c.fail(fmt.Errorf("transfer header: %w", err))
			return
		}
		t := &IncomingTransfer{hdr: *m.(*TransferBegin), s: s}
		select {
		case c.transfers <- t:
		case <-c.Done():
			s.CancelRead(quic.StreamErrorCode(AbortShutdown))
			return
		}
	}
}
