package transport

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// randomReader is a deterministic stream of n pseudo-random bytes.
func randomReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), n)
}

func TestTransferRoundTrip(t *testing.T) {
	p := newPair(t, nil)
	ab, ba := connect(t, p.a, p.b)
	ctx := ctxTimeout(t, 60*time.Second)
	const size = 32<<20 + 12345

	want := sha256.New()
	if _, err := io.Copy(want, randomReader(1, size)); err != nil {
		t.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		out, err := ab.OpenTransfer(ctx, TransferBegin{Dataset: "app", BaseGUID: 10, TargetGUID: 11, EstimatedBytes: size})
		if err != nil {
			sendErr <- err
			return
		}
		if _, err := io.Copy(out, randomReader(1, size)); err != nil {
			sendErr <- err
			return
		}
		if err := out.Close(); err != nil {
			sendErr <- err
			return
		}
		sendErr <- ab.Send(ctx, TransferDone{ID: out.Header().ID, Dataset: "app", TargetGUID: 11, Bytes: out.Bytes()})
	}()

	in, err := ba.AcceptTransfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hdr := in.Header()
	if hdr.ID == 0 || hdr.Dataset != "app" || hdr.BaseGUID != 10 || hdr.TargetGUID != 11 || hdr.EstimatedBytes != size {
		t.Fatalf("header %+v", hdr)
	}
	got := sha256.New()
	n, err := io.Copy(got, in)
	if err != nil {
		t.Fatal(err)
	}
	in.Close()
	if err := <-sendErr; err != nil {
		t.Fatalf("sender: %v", err)
	}
	if n != size || string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatalf("received %d bytes, sha256 %x; sent %d bytes, sha256 %x", n, got.Sum(nil), size, want.Sum(nil))
	}
	m, err := ba.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if done, ok := m.(*TransferDone); !ok || done.ID != hdr.ID || done.Bytes != size {
		t.Fatalf("got %#v, want TransferDone for %d with %d bytes", m, hdr.ID, size)
	}
	if err := ba.Send(ctx, Ack{ID: hdr.ID, Dataset: "app", ReceivedGUID: 11}); err != nil {
		t.Fatal(err)
	}
	if m, err := ab.Receive(ctx); err != nil || m.(*Ack).ReceivedGUID != 11 {
		t.Fatalf("ack: %#v, %v", m, err)
	}
}

// writeUntilError writes zeros until Write fails.
func writeUntilError(out *OutgoingTransfer) error {
	buf := make([]byte, 64<<10)
	for {
		if _, err := out.Write(buf); err != nil {
			return err
		}
	}
}

func TestTransferAbort(t *testing.T) {
	t.Run("sender aborts", func(t *testing.T) {
		p := newPair(t, nil)
		ab, ba := connect(t, p.a, p.b)
		ctx := ctxTimeout(t, 30*time.Second)
		out, err := ab.OpenTransfer(ctx, TransferBegin{Dataset: "app", TargetGUID: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.Write(make([]byte, 100<<10)); err != nil { // below the initial window: no reader yet
			t.Fatal(err)
		}
		in, err := ba.AcceptTransfer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(in, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		out.Abort(AbortSendFailed)
		_, err = io.Copy(io.Discard, in)
		var ae *TransferAbortedError
		if !errors.As(err, &ae) || !ae.Remote || ae.Code != AbortSendFailed || !errors.Is(err, ErrTransferAborted) {
			t.Fatalf("receiver got %v, want a remote abort with %v", err, AbortSendFailed)
		}
		if errors.Is(err, net.ErrClosed) {
			t.Fatal("an aborted transfer must not look like a closed connection")
		}
		if _, err := out.Write([]byte("x")); !errors.As(err, &ae) || ae.Remote {
			t.Fatalf("write after own abort: %v", err)
		}
		roundTrip(t, ab, ba, "conn_survives_abort")
	})

	t.Run("receiver aborts", func(t *testing.T) {
		p := newPair(t, nil)
		ab, ba := connect(t, p.a, p.b)
		ctx := ctxTimeout(t, 30*time.Second)
		out, err := ab.OpenTransfer(ctx, TransferBegin{Dataset: "app", TargetGUID: 1})
		if err != nil {
			t.Fatal(err)
		}
		writeErr := make(chan error, 1)
		go func() { writeErr <- writeUntilError(out) }()
		in, err := ba.AcceptTransfer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(in, make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		in.Abort(AbortReceiveFailed)
		select {
		case err := <-writeErr:
			var ae *TransferAbortedError
			if !errors.As(err, &ae) || !ae.Remote || ae.Code != AbortReceiveFailed {
				t.Fatalf("sender got %v, want a remote abort with %v", err, AbortReceiveFailed)
			}
		case <-ctx.Done():
			t.Fatal("the sender's Write did not return after the receiver aborted")
		}
		roundTrip(t, ba, ab, "conn_survives_abort")
	})

	t.Run("receiver closes early", func(t *testing.T) {
		p := newPair(t, nil)
		ab, ba := connect(t, p.a, p.b)
		ctx := ctxTimeout(t, 30*time.Second)
		out, err := ab.OpenTransfer(ctx, TransferBegin{Dataset: "app", TargetGUID: 1})
		if err != nil {
			t.Fatal(err)
		}
		writeErr := make(chan error, 1)
		go func() { writeErr <- writeUntilError(out) }()
		in, err := ba.AcceptTransfer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		in.Close()
		var ae *TransferAbortedError
		if err := <-writeErr; !errors.As(err, &ae) || ae.Code != AbortCanceled {
			t.Fatalf("sender got %v, want a remote abort with %v", err, AbortCanceled)
		}
	})

	t.Run("connection lost is not an abort", func(t *testing.T) {
		p := newPair(t, nil)
		ab, ba := connect(t, p.a, p.b)
		ctx := ctxTimeout(t, 30*time.Second)
		out, err := ab.OpenTransfer(ctx, TransferBegin{Dataset: "app", TargetGUID: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		in, err := ba.AcceptTransfer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ab.CloseWithError(CloseShutdown, "test")
		_, err = io.Copy(io.Discard, in)
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != CloseShutdown || !ce.Remote || errors.Is(err, ErrTransferAborted) {
			t.Fatalf("receiver got %v, want the connection's close", err)
		}
	})
}

// TestTransferBackPressure writes 256 MiB to a reader that reads slowly: the
// writer must be held back by flow control, never buffering ahead. Both the
// bytes in flight (written minus read) and the heap growth stay bounded.
func TestTransferBackPressure(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	p := newPair(t, nil)
	ab, ba := connect(t, p.a, p.b)
	ctx := ctxTimeout(t, 5*time.Minute)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapInuse

	// written counts bytes once Write returned; a Write in progress may have
	// handed up to writeChunk more to QUIC, so in flight is at most
	// written + writeChunk - read.
	const writeChunk = 64 << 10
	var written, read atomic.Int64
	sendErr := make(chan error, 1)
	go func() {
		out, err := ab.OpenTransfer(ctx, TransferBegin{Dataset: "app", TargetGUID: 1, EstimatedBytes: uint64(size)})
		if err != nil {
			sendErr <- err
			return
		}
		buf := make([]byte, writeChunk)
		for written.Load() < size {
			n, err := out.Write(buf[:min(int64(len(buf)), size-written.Load())])
			written.Add(int64(n))
			if err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- out.Close()
	}()

	in, err := ba.AcceptTransfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var maxInFlight int64
	var maxHeap uint64
	inFlight := func() {
		if d := written.Load() + writeChunk - read.Load(); d > maxInFlight {
			maxInFlight = d
		}
	}
	sample := func() {
		inFlight()
		runtime.ReadMemStats(&ms)
		maxHeap = max(maxHeap, ms.HeapInuse)
	}
	// The slow phase: 64 KiB every 2 ms (~32 MB/s, well below what the
	// writer could do over loopback), for the first quarter of the data.
	buf := make([]byte, 1<<20)
	start := time.Now()
	for read.Load() < size {
		chunk := buf[:64<<10]
		if read.Load() >= size/4 {
			chunk = buf // then read fast to finish
		}
		n, err := in.Read(chunk)
		read.Add(int64(n))
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", read.Load(), err)
		}
		if read.Load() < size/4 {
			time.Sleep(2 * time.Millisecond)
			inFlight()
		}
		if read.Load()%(4<<20) < int64(n) {
			sample()
		}
	}
	sample()
	if err := <-sendErr; err != nil {
		t.Fatalf("sender: %v", err)
	}
	if read.Load() != size {
		t.Fatalf("read %d of %d bytes", read.Load(), size)
	}
	growth := int64(maxHeap) - int64(baseHeap)
	t.Logf("%d MiB in %v; max in flight %.1f MiB (stream window %d MiB); heap growth %.1f MiB",
		size>>20, time.Since(start).Round(time.Millisecond), float64(maxInFlight)/(1<<20), maxStreamWindow>>20, float64(growth)/(1<<20))
	// In flight is bounded by the receiver's stream window: flow control
	// lets the sender go no further ahead.
	if limit := int64(maxStreamWindow + writeChunk); maxInFlight > limit {
		t.Fatalf("%d bytes in flight, above the flow-control bound %d", maxInFlight, limit)
	}
	if growth > 64<<20 {
		t.Fatalf("heap grew by %d MiB while moving %d MiB", growth>>20, size>>20)
	}
}

// The context given to OpenTransfer bounds opening it, and a canceled
// context leaves no half-written header behind.
func TestOpenTransferCanceled(t *testing.T) {
	p := newPair(t, nil)
	ab, _ := connect(t, p.a, p.b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ab.OpenTransfer(ctx, TransferBegin{Dataset: "app", TargetGUID: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}
