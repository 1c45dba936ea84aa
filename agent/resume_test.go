package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport"
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
	warnUnlessStopping(ctx, log, "running", "err", errors.New("boom"))
	peerLeft := fmt.Errorf("sending: %w", &transport.CloseError{Code: transport.CloseShutdown, Remote: true})
	warnUnlessStopping(ctx, log, "peer left", "err", peerLeft)
	cancel()
	warnUnlessStopping(ctx, log, "stopping", "err", errors.New("boom"))
	out := buf.String()
	for _, want := range []string{`level=WARN msg=running`, `level=INFO msg="peer left"`, `level=DEBUG msg=stopping`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in:\n%s", want, out)
		}
	}
}

func TestOrderlyEnd(t *testing.T) {
	shutdownAbort := &transport.TransferAbortedError{Code: transport.AbortShutdown, Remote: true}
	for _, tc := range []struct {
		err                  error
		orderly, peerStopped bool
	}{
		{shutdownAbort, true, true},
		{fmt.Errorf("receive: %w", errors.Join(errors.New("zfs: incomplete stream"), shutdownAbort)), true, true},
		{&transport.CloseError{Code: transport.CloseShutdown, Remote: true}, true, true},
		{&transport.CloseError{Code: transport.CloseSuperseded, Remote: true}, true, false},
		{fmt.Errorf("writing control frame: %w", &transport.CloseError{Code: transport.CloseSuperseded}), true, false}, // we replaced it
		{&transport.TransferAbortedError{Code: transport.AbortShutdown}, false, false},                                 // our own
		{&transport.TransferAbortedError{Code: transport.AbortCanceled, Remote: true}, false, false},
		{&transport.TransferAbortedError{Code: transport.AbortSendFailed, Remote: true}, false, false},
		{&transport.CloseError{Code: transport.CloseProtocolError, Remote: true}, false, false},
		{errors.New("timeout: no recent network activity"), false, false},
	} {
		if got := orderlyEnd(tc.err); got != tc.orderly {
			t.Errorf("orderlyEnd(%v) = %v, want %v", tc.err, got, tc.orderly)
		}
		if got := peerStopped(tc.err); got != tc.peerStopped {
			t.Errorf("peerStopped(%v) = %v, want %v", tc.err, got, tc.peerStopped)
		}
	}
}

// A bookmark's flocker name counts for the next sequence number: the base
// it kept may live on in the peer's replica under that name.
func TestMarksAsSnapshots(t *testing.T) {
	marks := []snapshot.Bookmark{{Name: "tank/app#flocker-0-36", GUID: 7}, {Name: "tank/app#other", GUID: 8}}
	snaps := marksAsSnapshots(marks)
	if snaps[0].Name != "tank/app@flocker-0-36" || snaps[0].GUID != 7 || snaps[1].ShortName() != "other" {
		t.Errorf("marksAsSnapshots: %+v", snaps)
	}
	if got := nextSeq(snaps, 0); got != 37 {
		t.Errorf("next sequence after bookmark flocker-0-36: %d, want 37", got)
	}
}
