package transport

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestControlFrameFinishedAfterDeadline: a control send whose context ends
// while its frame is half on the stream (the peer is not reading, so flow
// control stopped the write mid-frame) finishes the frame instead of
// closing the connection. Measured before: a 50 ms heartbeat deadline on a
// busy host closed the connection with "control frame cut short", failing
// every transfer on it.
func TestControlFrameFinishedAfterDeadline(t *testing.T) {
	p := newPair(t, nil)
	ab, ba := connect(t, p.a, p.b)
	ctx := ctxTimeout(t, 2*time.Minute)

	// ~780 KB frames, which do not divide the 8 MiB stream window: the
	// window runs out in the middle of one. Beta's reader takes msgQueue
	// frames before it stops reading; 40 frames are twice what fits.
	const frames = 40
	list := func(i int) SnapshotList {
		l := SnapshotList{Dataset: fmt.Sprintf("app%02d", i)}
		for j := range 8000 {
			l.Snapshots = append(l.Snapshots, Snapshot{Name: fmt.Sprintf("flocker-1-%d", j), GUID: uint64(1e18) + uint64(j), CreateTXG: uint64(j + 1), Creation: 1700000000})
		}
		return l
	}
	const deadline = 200 * time.Millisecond
	type result struct {
		err  error
		took time.Duration
	}
	results := make(chan result, frames)
	go func() {
		for i := range frames {
			sctx, cancel := context.WithTimeout(ctx, deadline)
			t0 := time.Now()
			err := ab.Send(sctx, list(i))
			cancel()
			results <- result{err, time.Since(t0)}
		}
	}()
	// Let alpha run into the full window and past its deadline, then read.
	time.Sleep(3 * time.Second)
	got := 0
	late := 0
	for sent := 0; sent < frames; sent++ {
		r := <-results
		if r.err != nil {
			// Cut before its first byte went out: nothing on the stream.
			t.Logf("send %d: %v", sent, r.err)
		} else {
			if r.took > deadline {
				late++
			}
			m, err := ba.Receive(ctx)
			if err != nil {
				t.Fatalf("receive after %d messages: %v (alpha: %v)", got, err, ab.Err())
			}
			l, ok := m.(*SnapshotList)
			if !ok || len(l.Snapshots) != 8000 {
				t.Fatalf("message %d: %T with %v", got, m, m)
			}
			got++
		}
	}
	if late == 0 {
		t.Fatal("no send outlived its deadline: the window never stopped a frame midway, so the case was not exercised")
	}
	if err := ab.Err(); err != nil {
		t.Fatalf("connection closed: %v", err)
	}
	roundTrip(t, ab, ba, "still_up")
	t.Logf("%d frames delivered, %d finished after their %v deadline", got, late, deadline)
}
