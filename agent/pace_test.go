package agent

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(1_000_000, t0) // 1 MB/s, burst 100 kB
	if got := b.chunk(); got != 100_000 {
		t.Fatalf("chunk = %d, want 100000", got)
	}
	steps := []struct {
		ms   int
		n    int
		want time.Duration
	}{
		{0, 100_000, 0},                                             // the burst goes at once
		{0, 50_000, 50 * time.Millisecond},                          // then 50 kB takes 50 ms
		{50, 50_000, 50 * time.Millisecond},                         // paid the debt; the next 50 kB waits again
		{2000, 100_000, 0},                                          // idle: the bucket refilled to the burst, no more
		{2000, 1, time.Microsecond},                                 // and is empty again
		{2000, 1_000_000, 1000*time.Millisecond + time.Microsecond}, // a large write is paced, not refused
	}
	for i, s := range steps {
		got := b.reserve(t0.Add(time.Duration(s.ms)*time.Millisecond), s.n)
		if d := got - s.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("step %d: reserve(%dms, %d) = %v, want %v", i, s.ms, s.n, got, s.want)
		}
	}
}

func TestBucketMinBurst(t *testing.T) {
	if got := newBucket(1000, time.Unix(0, 0)).chunk(); got != minBurst {
		t.Errorf("chunk at 1 kB/s = %d, want the floor %d", got, minBurst)
	}
}

// TestPacedWriter writes through a real clock at a low cap: the time taken
// may exceed the minimum on a loaded machine but never undercut it.
func TestPacedWriter(t *testing.T) {
	var out bytes.Buffer
	p := &pacedWriter{ctx: context.Background(), w: &out, b: newBucket(200_000, time.Now())} // burst 32 KiB
	data := bytes.Repeat([]byte("x"), 32<<10+40_000)
	start := time.Now()
	n, err := p.Write(data)
	took := time.Since(start)
	if err != nil || n != len(data) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Write = %d, %v; copied %d bytes", n, err, out.Len())
	}
	if took < 190*time.Millisecond { // 40 kB beyond the burst at 200 kB/s
		t.Errorf("paced write took %v, want at least 200ms", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p = &pacedWriter{ctx: ctx, w: &out, b: newBucket(1000, time.Now())}
	if n, err := p.Write(make([]byte, 1<<20)); err != context.Canceled || n != minBurst {
		t.Errorf("Write after cancel = %d, %v; want the burst written, then context.Canceled", n, err)
	}
}
