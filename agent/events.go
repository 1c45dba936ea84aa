package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport"
)

// Events a dataset's loop receives. Messages and transfers carry the
// connection they came on: the loop ignores what comes on a connection it
// no longer uses.
type (
	evChange   struct{ at time.Time }
	evConnUp   struct{ c *transport.Conn }
	evConnDown struct{ c *transport.Conn }
	// evPeerRole: the peer's heartbeats report a new role or epoch.
	evPeerRole struct {
		role  transport.Role
		epoch uint64
	}
	// evThaw: serving again (a handoff was aborted): snapshots resume.
	evThaw struct{}
	// evSync: take a snapshot now and answer once the peer holds it. A
	// final one (the dataset is readonly: a handoff) freezes the loop: no
	// snapshot after it. One that is not (a handoff's pre-sync, while the
	// service still writes) only moves most pending data ahead of the
	// handoff's final, then small, snapshot.
	evSync struct {
		at    time.Time
		final bool
		txg   uint64 // the snapshot taken for it (0: none yet)
		reply chan error
	}
	evList struct {
		c *transport.Conn
		m *transport.SnapshotList
	}
	evAck struct {
		c *transport.Conn
		m *transport.Ack
	}
	evDone struct {
		c *transport.Conn
		m *transport.TransferDone
	}
	evTransfer struct {
		c *transport.Conn
		t *transport.IncomingTransfer
	}
)

// Timing of the dataset loops.
const (
	// progressEvery spaces the progress lines of a long transfer.
	progressEvery = time.Second
	// ackTimeout bounds the wait for the peer's Ack after the last byte
	// went out: the receive ends within moments of the stream's end (at
	// most one flow-control window is buffered), so a minute of silence on
	// a live connection means the peer lost track of the transfer.
	ackTimeout = time.Minute
	// pruneEvery spaces retention runs: pruning one snapshot per cycle
	// costs a zfs exec per cycle, while the default policy loses nothing
	// by waiting a few seconds (it keeps every snapshot of the last minute).
	pruneEvery = 10 * time.Second
	// holdTrail is how long the master's hold may trail the replication
	// base while transfers follow each other (it moves at once when
	// replication is idle). Meanwhile the base itself is kept by both
	// sides' retention (neither prunes the newest common snapshot) and the
	// hold stays on an earlier one; moving it per transfer would add two
	// zfs runs to every cycle.
	holdTrail = 10 * time.Second
	// holdQuiet is how long replication must be idle (no snapshot, no
	// transfer) before the hold moves between the holdTrail moves: its two
	// zfs runs (20-30 ms on zfs-fuse) then do not sit in front of the next
	// write's snapshot. At 10 writes a second the loop was never idle for
	// longer than a few tens of ms, and with a move after every ack 37 of
	// 98 snapshots in a bench run waited for one (up to 30 ms).
	holdQuiet = 500 * time.Millisecond
	// resumeKeep bounds how long after a start the master keeps every
	// snapshot newer than its base while the peer has not reported yet (see
	// master.mayResume).
	resumeKeep = 10 * time.Minute
	// sendTimeout bounds one control message: a peer that does not read
	// its control stream for this long is treated as gone.
	sendTimeout = 10 * time.Second
	// connSettle delays the first transfer on a new connection: when both
	// nodes dial at once the session keeps one connection and closes the
	// other a moment later (transport's supersede rule), and a transfer
	// started on the loser is lost work (a full sync on zfs-fuse starts
	// over). Both dials resolve within a round trip and a handshake, a few
	// ms here; 200 ms covers a loaded host.
	connSettle = 200 * time.Millisecond
	// eventQueue is each loop's inbox; routing blocks when it is full,
	// which stalls that connection's readers (QUIC flow control does the
	// rest).
	eventQueue = 64
)

// post delivers ev to a loop's inbox unless ctx ends first.
func post(ctx context.Context, ch chan<- any, ev any) bool {
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// sendMsg sends one control message with sendTimeout. A peer that does not
// take it in time gets its connection closed: the session dials again.
func sendMsg(ctx context.Context, c *transport.Conn, m transport.Message) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	err := c.Send(ctx, m)
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		go c.CloseWithError(transport.CloseProtocolError, fmt.Sprintf("%s not read within %v", m.Type(), sendTimeout))
	}
	return err
}

// toWire converts snapshots for a SnapshotList (short names, unix seconds).
// Snapshots with an unknown creation time are sent with 1 (the message
// requires one); flocker only compares GUIDs across hosts.
func toWire(snaps []snapshot.Snapshot) []transport.Snapshot {
	out := make([]transport.Snapshot, 0, len(snaps))
	for _, s := range snaps {
		out = append(out, transport.Snapshot{
			Name:      s.ShortName(),
			GUID:      s.GUID,
			CreateTXG: s.CreateTXG,
			Creation:  max(s.Creation.Unix(), 1),
		})
	}
	return out
}

// fromWire converts the peer's list, naming each snapshot prefix@short
// (prefix names the peer in messages; only GUIDs are matched).
func fromWire(prefix string, w []transport.Snapshot) []snapshot.Snapshot {
	out := make([]snapshot.Snapshot, 0, len(w))
	for _, s := range w {
		out = append(out, snapshot.Snapshot{
			Name:      prefix + "@" + s.Name,
			GUID:      s.GUID,
			CreateTXG: s.CreateTXG,
			Creation:  time.Unix(s.Creation, 0).UTC(),
		})
	}
	sortByTXG(out)
	return out
}

// sortByTXG orders one host's snapshots oldest first.
func sortByTXG(s []snapshot.Snapshot) {
	slices.SortStableFunc(s, func(a, b snapshot.Snapshot) int {
		switch {
		case a.CreateTXG < b.CreateTXG:
			return -1
		case a.CreateTXG > b.CreateTXG:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
}

func ref(s *snapshot.Snapshot) *SnapshotRef {
	if s == nil {
		return nil
	}
	return &SnapshotRef{Name: s.ShortName(), GUID: s.GUID, Created: s.Creation}
}

func newest(s []snapshot.Snapshot) *snapshot.Snapshot {
	if len(s) == 0 {
		return nil
	}
	return &s[len(s)-1]
}

// removeNames drops the named snapshots from s (in place).
func removeNames(s []snapshot.Snapshot, names []string) []snapshot.Snapshot {
	return slices.DeleteFunc(s, func(x snapshot.Snapshot) bool { return slices.Contains(names, x.Name) })
}

// errText shortens an error for a message to the peer (its text limit).
func errText(err error) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, err.Error())
	if len(s) > 1000 {
		s = s[:1000] + "..."
	}
	return s
}

func problem(code string, err error, at time.Time) *Problem {
	return &Problem{Code: code, Message: err.Error(), At: at}
}

// earliest returns the earlier non-zero time.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// warnUnlessStopping logs a failure as a warning, or quieter when no fault
// is behind it: at debug level when ctx is done (the agent is stopping and
// cut a zfs command or a send short), at info when an error among args is
// an orderly end (see orderlyEnd).
func warnUnlessStopping(ctx context.Context, log *slog.Logger, msg string, args ...any) {
	level := slog.LevelWarn
	for _, a := range args {
		if err, ok := a.(error); ok && orderlyEnd(err) {
			level = slog.LevelInfo
		}
	}
	if ctx.Err() != nil {
		level = slog.LevelDebug
	}
	log.Log(context.WithoutCancel(ctx), level, msg, args...)
}

// peerStopped reports an error that is the peer's orderly stop: it aborted
// the transfer or closed the connection because it is shutting down. A
// transfer cut so is no fault; one cut otherwise (the connection lost, or
// replaced because the peer came back after a crash) is.
func peerStopped(err error) bool {
	if ae, ok := errors.AsType[*transport.TransferAbortedError](err); ok {
		return ae.Remote && ae.Code == transport.AbortShutdown
	}
	if ce, ok := errors.AsType[*transport.CloseError](err); ok {
		return ce.Remote && ce.Code == transport.CloseShutdown
	}
	return false
}

// orderlyEnd reports a control message lost to a connection closed in
// order: the peer's stop, or a connection closed normally, superseded by a
// crossing one, or closed by this node (a protocol error is logged where
// it is found). The message goes again on the connection that replaces it.
func orderlyEnd(err error) bool {
	if peerStopped(err) {
		return true
	}
	if ce, ok := errors.AsType[*transport.CloseError](err); ok {
		return !ce.Remote || ce.Code == transport.CloseNormal || ce.Code == transport.CloseSuperseded
	}
	return false
}
