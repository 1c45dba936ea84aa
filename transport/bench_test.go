package transport

import (
	"io"
	"testing"
	"time"
)

// BenchmarkTransferThroughput moves 64 MiB per op over one loopback QUIC
// transfer stream (real TLS, real flow control) and reports MB/s.
func BenchmarkTransferThroughput(b *testing.B) {
	const size = 64 << 20
	p := newPair(b, nil)
	ab, ba := connect(b, p.a, p.b)
	ctx := ctxTimeout(b, 10*time.Minute)
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(randomReader(2, int64(len(buf))), buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		sendErr := make(chan error, 1)
		go func() {
			out, err := ab.OpenTransfer(ctx, TransferBegin{Dataset: "bench", TargetGUID: 1})
			if err != nil {
				sendErr <- err
				return
			}
			for sent := 0; sent < size; sent += len(buf) {
				if _, err := out.Write(buf); err != nil {
					sendErr <- err
					return
				}
			}
			sendErr <- out.Close()
		}()
		in, err := ba.AcceptTransfer(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, in, make([]byte, 1<<20))
		if err != nil || n != size {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		if err := <-sendErr; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkControlRoundTrip is one control message to the peer and its
// answer back: the floor under every request/ack exchange of replication.
func BenchmarkControlRoundTrip(b *testing.B) {
	p := newPair(b, nil)
	ab, ba := connect(b, p.a, p.b)
	ctx := ctxTimeout(b, 10*time.Minute)
	go func() { // beta answers every TransferDone with an Ack
		for {
			m, err := ba.Receive(ctx)
			if err != nil {
				return
			}
			d := m.(*TransferDone)
			if err := ba.Send(ctx, Ack{ID: d.ID, Dataset: d.Dataset, ReceivedGUID: d.TargetGUID}); err != nil {
				return
			}
		}
	}()
	b.ResetTimer()
	var id uint64
	for b.Loop() {
		id++
		if err := ab.Send(ctx, TransferDone{ID: id, Dataset: "bench", TargetGUID: id, Bytes: 1}); err != nil {
			b.Fatal(err)
		}
		m, err := ab.Receive(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if m.(*Ack).ID != id {
			b.Fatalf("ack for %d, want %d", m.(*Ack).ID, id)
		}
	}
}
