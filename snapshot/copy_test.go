package snapshot

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// copyAhead's contract with plain readers and writers (the zfs pipe and the
// QUIC stream it sits between in Send are tested through the adapter).

// choppyReader returns the data in reads of random sizes.
type choppyReader struct {
	data  []byte
	rnd   *rand.Rand
	reads atomic.Int64
}

func (r *choppyReader) Read(p []byte) (int, error) {
	r.reads.Add(1)
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rnd.IntN(3*streamBufSize/2))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestCopyAheadCopiesInOrder(t *testing.T) {
	data := make([]byte, 5*streamBufSize+12345)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	src := &choppyReader{data: data, rnd: rnd}
	var dst bytes.Buffer
	var n atomic.Int64
	var before atomic.Int64
	if err := copyAhead(&dst, src, &n, func() { before.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copied %d bytes that differ from the %d read", dst.Len(), len(data))
	}
	if n.Load() != int64(len(data)) {
		t.Errorf("counted %d bytes, want %d", n.Load(), len(data))
	}
	if before.Load() != src.reads.Load() {
		t.Errorf("beforeRead ran %d times for %d reads", before.Load(), src.reads.Load())
	}
}

// blockingWriter blocks its first Write until release is closed.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	err     error
	calls   int
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.calls == 1 {
		close(w.entered)
		<-w.release
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// endlessReader fills every read and counts them.
type endlessReader struct{ reads atomic.Int64 }

func (r *endlessReader) Read(p []byte) (int, error) {
	r.reads.Add(1)
	return len(p), nil
}

func TestCopyAheadReadsAtMostOneChunkAhead(t *testing.T) {
	src := &endlessReader{}
	wErr := errors.New("stream reset")
	dst := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{}), err: wErr}
	done := make(chan error, 1)
	var n atomic.Int64
	go func() { done <- copyAhead(dst, src, &n, nil) }()
	<-dst.entered
	// While the first chunk's Write is blocked, the reader may fill the
	// second buffer and must then wait: no more than 2 reads, however long
	// the Write takes.
	time.Sleep(100 * time.Millisecond)
	if r := src.reads.Load(); r > 2 {
		t.Errorf("%d reads while the first write was blocked: read-ahead is not bounded to one chunk", r)
	}
	close(dst.release)
	err := <-done
	var ce *copyError
	if !errors.As(err, &ce) || !ce.write || !errors.Is(err, wErr) {
		t.Fatalf("copyAhead = %v, want the write's error as a write copyError", err)
	}
	if r := src.reads.Load(); r > 2 {
		t.Errorf("%d reads after a failed first write, want at most 2", r)
	}
	if n.Load() != 0 {
		t.Errorf("counted %d bytes, want 0 (the only write failed)", n.Load())
	}
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestCopyAheadReadErrorAfterData(t *testing.T) {
	rErr := errors.New("pipe closed")
	var dst bytes.Buffer
	var n atomic.Int64
	err := copyAhead(&dst, &failingReader{data: []byte("partial stream"), err: rErr}, &n, nil)
	var ce *copyError
	if !errors.As(err, &ce) || ce.write || !errors.Is(err, rErr) {
		t.Fatalf("copyAhead = %v, want the read's error as a read copyError", err)
	}
	if dst.String() != "partial stream" || n.Load() != int64(len("partial stream")) {
		t.Errorf("wrote %q (counted %d) before the error, want all of %q", dst.String(), n.Load(), "partial stream")
	}
}
