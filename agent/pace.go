package agent

import (
	"context"
	"io"
	"time"
)

// bucket is a token bucket in bytes: pure, the time is passed in. reserve
// takes n bytes and returns how long the caller must wait before sending
// them; tokens go into debt rather than making callers retry, so waits are
// exact and a write larger than the burst is still paced.
type bucket struct {
	rate   float64 // bytes per second
	burst  float64 // most bytes sent without waiting after an idle spell
	tokens float64
	last   time.Time
}

func newBucket(rate uint64, now time.Time) *bucket {
	burst := max(float64(rate)/10, minBurst)
	return &bucket{rate: float64(rate), burst: burst, tokens: burst, last: now}
}

// minBurst keeps the chunks of a slow cap from being tiny writes.
const minBurst = 32 << 10

func (b *bucket) reserve(now time.Time, n int) time.Duration {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt*b.rate)
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// chunk is the largest write reserve is asked about at once.
func (b *bucket) chunk() int { return int(b.burst) }

// pacedWriter caps the rate of writes to w ([replication] bandwidth). Its
// waits end early when ctx ends.
type pacedWriter struct {
	ctx context.Context
	w   io.Writer
	b   *bucket
}

func (p *pacedWriter) Write(buf []byte) (int, error) {
	written := 0
	for len(buf) > 0 {
		n := min(len(buf), p.b.chunk())
		if d := p.b.reserve(time.Now(), n); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return written, p.ctx.Err()
			}
		}
		m, err := p.w.Write(buf[:n])
		written += m
		if err != nil {
			return written, err
		}
		buf = buf[n:]
	}
	return written, nil
}
