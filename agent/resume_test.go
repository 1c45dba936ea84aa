package agent

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// mayResume keeps the snapshots a peer's token may continue from pruning:
// while the peer reports a token not given up on, and after a start until
// the peer's first list (bounded by resumeKeep). The resume itself runs on
// OpenZFS only, in test/vm's TestReplication.
func TestMayResume(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		m    master
		at   time.Duration
		want bool
	}{
		{"just started, peer not heard", master{startedAt: t0}, time.Second, true},
		{"peer not heard for resumeKeep", master{startedAt: t0}, resumeKeep, false},
		{"peer listed, no token", master{startedAt: t0, peerSeen: true, peerKnown: true}, time.Second, false},
		{"peer reports a token", master{startedAt: t0, peerSeen: true, peerKnown: true, peerToken: "1-abc"}, time.Hour, true},
		{"token given up on", master{startedAt: t0, peerSeen: true, peerKnown: true, peerToken: "1-abc", resumeBad: "1-abc"}, time.Second, false},
		{"peer gone since its token", master{startedAt: t0, peerSeen: true, peerToken: "1-abc"}, time.Second, false},
	} {
		if got := tc.m.mayResume(t0.Add(tc.at)); got != tc.want {
			t.Errorf("%s: mayResume = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A failure while the agent stops is no warning; the same failure while it
// runs is.
func TestWarnUnlessStopping(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	warnUnlessStopping(ctx, log, "running")
	cancel()
	warnUnlessStopping(ctx, log, "stopping")
	out := buf.String()
	if !strings.Contains(out, `level=WARN msg=running`) || !strings.Contains(out, `level=DEBUG msg=stopping`) {
		t.Errorf("logged:\n%s", out)
	}
}
