package transport

import (
	"io"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTransferThroughput moves 64 MiB per op over one loopback QUIC
// transfer stream (real TLS, real flow control) and reports MB/s and the
// CPU both ends used per GB (user and system time of this process, so run
// it with nothing else in the test binary; -cpu 1,2 compares GOMAXPROCS).
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
	cpu0 := processCPU(b)
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
	b.StopTimer()
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/(float64(b.N)*size/1e9), "cpu-s/GB")
}

// processCPU is this process's user plus system time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
