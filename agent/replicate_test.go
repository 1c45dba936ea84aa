package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flockerha/flocker/snapshot"
)

const syncTimeout = 60 * time.Second

// TestReplicate: the first sync is a full send that creates a readonly,
// mounted replica; a change is an incremental from the held base; a
// restart of both sides continues the sequence and the increments.
func TestReplicate(t *testing.T) {
	m, s := newPair(t, pairOptions{})
	s.start(t)
	m.start(t)
	st := waitSynced(t, m, syncTimeout)
	sameTree(t, m, s)
	if st.Snapshots.Transfers != 1 || st.NewestLocal.Name != "flocker-0-1" {
		t.Errorf("after the first sync: %d transfers, newest %s; want 1 and flocker-0-1", st.Snapshots.Transfers, st.NewestLocal.Name)
	}
	// The replica refuses writes (zfs-fuse's `zfs get` shows readonly=on of a
	// mounted file system as "off, temporary": the write is the real test).
	if err := os.WriteFile(filepath.Join(s.mount, "x"), nil, 0o644); err == nil || !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing to the replica: %v, want EROFS", err)
	}
	if _, mounted, err := s.z.Mountpoint(context.Background(), s.zfs); err != nil || !mounted {
		t.Errorf("replica mounted = %v, %v", mounted, err)
	}
	assertHeld(t, m, "flocker-0-1")
	full := m.a.Status()
	if !full.Peer.Connected || full.Peer.Role != "slave" || full.Role != "master" || full.Dialect == "" {
		t.Errorf("agent status: %+v", full)
	}
	if b, err := json.Marshal(full); err != nil || !strings.Contains(string(b), `"newest_local"`) {
		t.Errorf("status JSON: %s, %v", b, err)
	}

	// A change: one snapshot, one incremental; the hold moves.
	writeFiles(t, m.mount, "a", 20, 4096)
	m.fire(t)
	st = waitSynced(t, m, syncTimeout)
	sameTree(t, m, s)
	if st.NewestLocal.Name != "flocker-0-2" || st.Snapshots.Transfers != 2 {
		t.Errorf("after a change: newest %s, %d transfers", st.NewestLocal.Name, st.Snapshots.Transfers)
	}
	if st.LastLag <= 0 {
		t.Errorf("last lag %v: want the measured change-to-ack time", st.LastLag)
	}
	assertHeld(t, m, "flocker-0-2")
	assertNotHeld(t, m, "flocker-0-1")
	if ss := s.status(); ss.NewestLocal == nil || ss.NewestLocal.GUID != st.NewestLocal.GUID || ss.Snapshots.Transfers != 2 {
		t.Errorf("slave status: %+v", ss)
	}

	// sameTree read every file of the replica: that must not have broken
	// the incremental above, nor the next one. Restart both: numbering continues, the next transfer is incremental.
	m.stop(t)
	s.stop(t)
	writeFiles(t, m.mount, "b", 5, 1000)
	s.start(t)
	m.start(t) // init marks the dataset dirty: it snapshots at once
	st = waitSynced(t, m, syncTimeout)
	sameTree(t, m, s)
	if st.NewestLocal.Name != "flocker-0-3" {
		t.Errorf("after a restart the newest is %s, want flocker-0-3", st.NewestLocal.Name)
	}
	if ss := s.status(); ss.Snapshots.BytesReceived > 1<<20 {
		t.Errorf("after the restart the slave received %d bytes: want a small incremental, not a full resend", ss.Snapshots.BytesReceived)
	}
	assertHeld(t, m, "flocker-0-3")
}

// assertHeld checks our hold on a snapshot through ZFS itself: a held
// snapshot cannot be destroyed, and its userrefs count is positive.
// The hold moves once replication has been quiet for holdQuiet, so both
// wait for it a while.
func assertHeld(t *testing.T, m *testNode, short string) {
	t.Helper()
	var p snapshot.Property
	var err error
	if !eventually(holdWait, func() bool {
		p, err = m.z.GetProperty(context.Background(), m.zfs+"@"+short, "userrefs")
		return err == nil && p.Value != "0"
	}) {
		t.Errorf("%s userrefs = %q, %v; want our hold", short, p.Value, err)
	}
}

func assertNotHeld(t *testing.T, m *testNode, short string) {
	t.Helper()
	var p snapshot.Property
	var err error
	if !eventually(holdWait, func() bool {
		p, err = m.z.GetProperty(context.Background(), m.zfs+"@"+short, "userrefs")
		return err != nil || p.Value == "0"
	}) {
		t.Errorf("%s userrefs = %q: the old base is still held", short, p.Value)
	}
}

// holdWait covers holdQuiet on a loaded host.
const holdWait = holdQuiet + 10*time.Second

// eventually polls cond until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// cutWriter passes the first left bytes, then fails.
type cutWriter struct {
	w    io.Writer
	left int
	// flip, when set, inverts bytes at [flipAt, flipAt+64) instead of cutting.
	flip   bool
	flipAt int
	off    int
}

var errCut = errors.New("stream cut by the test")

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.flip {
		q := append([]byte(nil), p...)
		for i := range q {
			if o := c.off + i; o >= c.flipAt && o < c.flipAt+64 {
				q[i] ^= 0xff
			}
		}
		c.off += len(p)
		return c.w.Write(q)
	}
	if len(p) > c.left {
		n, _ := c.w.Write(p[:c.left])
		c.left -= n
		return n, errCut
	}
	n, err := c.w.Write(p)
	c.left -= n
	return n, err
}

// TestBadStreamsRetried: a stream that ends early (a clean end of a short
// stream) and one with flipped bytes are refused by zfs on the slave,
// leave no half-received dataset, are reported and retried until a good
// one lands.
func TestBadStreamsRetried(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(w io.Writer) *cutWriter
	}{
		{"truncated", func(w io.Writer) *cutWriter { return &cutWriter{w: w, left: 20000} }},
		{"corrupted", func(w io.Writer) *cutWriter { return &cutWriter{w: w, flip: true, flipAt: 30000} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, s := newPair(t, pairOptions{})
			writeFiles(t, m.mount, "data", 16, 8192) // the full stream is ~150 KB
			var bad atomic.Int32
			m.fault.send = func(ctx context.Context, snap string, w io.Writer, opts snapshot.SendOptions) (int64, error) {
				if bad.Add(1) > 1 {
					return m.z.Send(ctx, snap, w, opts)
				}
				n, err := m.z.Send(ctx, snap, tc.cut(w), opts)
				if errors.Is(err, errCut) {
					return n, nil // the stream ends cleanly, short
				}
				return n, err
			}
			// Before the slave may retry anything, record what it held.
			var sawFailure atomic.Bool
			s.fault.receive = func(ctx context.Context, target string, r io.Reader, opts snapshot.ReceiveOptions) (int64, error) {
				n, err := s.z.Receive(ctx, target, r, opts)
				if err != nil {
					sawFailure.Store(true)
					if !errors.Is(err, snapshot.ErrBadStream) {
						t.Errorf("receive failed with %v, want a bad-stream error", err)
					}
					if replicaExists(t, s) {
						t.Errorf("a failed first receive left %s behind", s.zfs)
					}
				}
				return n, err
			}
			s.start(t)
			m.start(t)
			st := waitSynced(t, m, syncTimeout)
			sameTree(t, m, s)
			if !sawFailure.Load() || bad.Load() < 2 {
				t.Fatalf("the bad stream was not refused and retried (sends %d)", bad.Load())
			}
			if st.Snapshots.FailedTransfers < 1 || st.LastError == nil || st.LastError.Code != codeBadStream {
				t.Errorf("master status after the retry: failed %d, last error %+v; want one bad_stream", st.Snapshots.FailedTransfers, st.LastError)
			}
			if ss := s.status(); ss.LastError == nil || ss.LastError.Code != codeBadStream {
				t.Errorf("slave last error %+v, want bad_stream", ss.LastError)
			}
		})
	}
}

// TestModifiedReplicaRolledBack: a replica changed since its newest
// snapshot (here: an atime update from a read while it was briefly
// writable, as zfs-fuse does) makes the next incremental fail with
// "destination has been modified"; the slave rolls the readonly replica
// back to its newest snapshot and the retry succeeds.
func TestModifiedReplicaRolledBack(t *testing.T) {
	m, s := newPair(t, pairOptions{})
	writeFiles(t, m.mount, "data", 3, 1000)
	s.start(t)
	m.start(t)
	waitSynced(t, m, syncTimeout)

	ctx := context.Background()
	if err := s.z.SetProperty(ctx, s.zfs, "readonly", "off"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(filepath.Join(s.mount, "data", "f0001")); err != nil {
		t.Fatal(err)
	}
	if err := s.z.SetProperty(ctx, s.zfs, "readonly", "on"); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, m.mount, "more", 2, 1000)
	m.fire(t)
	st := waitSynced(t, m, syncTimeout)
	sameTree(t, m, s)
	ss := s.status()
	if ss.LastError == nil || ss.LastError.Code != codeModified || !strings.Contains(ss.LastError.Message, "rolled back to flocker-0-1") {
		t.Fatalf("slave last error %+v: want destination_modified, rolled back (did the read not modify the replica?)", ss.LastError)
	}
	if st.Snapshots.FailedTransfers != 1 {
		t.Errorf("master failed transfers %d, want the one refused incremental", st.Snapshots.FailedTransfers)
	}
}

// TestWritableModifiedReplicaKept: a replica someone made writable and
// changed is not rolled back (that could lose writes): replication stops
// on it and says why.
func TestWritableModifiedReplicaKept(t *testing.T) {
	m, s := newPair(t, pairOptions{})
	s.start(t)
	m.start(t)
	waitSynced(t, m, syncTimeout)
	ctx := context.Background()
	if err := s.z.SetProperty(ctx, s.zfs, "readonly", "off"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.mount, "written-on-the-slave"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, m.mount, "more", 2, 1000)
	m.fire(t)
	waitFor(t, syncTimeout, "the slave to refuse the incremental", func() bool {
		e := s.status().LastError
		return e != nil && e.Code == codeModified
	})
	if msg := s.status().LastError.Message; !strings.Contains(msg, "not rolled back") {
		t.Errorf("slave error %q: want it to say it did not roll back", msg)
	}
	if _, err := os.Stat(filepath.Join(s.mount, "written-on-the-slave")); err != nil {
		t.Errorf("the slave's own write is gone: %v", err)
	}
}

// TestDivergedIsReported: a snapshot on the slave that the master does not
// have is a divergence; the master reports it and sends nothing.
func TestDivergedIsReported(t *testing.T) {
	m, s := newPair(t, pairOptions{})
	s.start(t)
	m.start(t)
	waitSynced(t, m, syncTimeout)
	ctx := context.Background()
	if err := s.z.Snapshot(ctx, s.zfs+"@operator-snap"); err != nil {
		t.Fatal(err)
	}
	s.stop(t) // the restarted slave reports its list with the new snapshot
	s.start(t)
	writeFiles(t, m.mount, "more", 1, 100)
	m.fire(t)
	waitFor(t, syncTimeout, "the master to report the divergence", func() bool {
		return strings.Contains(m.status().Conflict, "diverged")
	})
	st := m.status()
	if st.LastError == nil || st.LastError.Code != codeConflict || st.Transfer != nil {
		t.Errorf("master status: %+v", st)
	}
	if snaps, err := s.z.ListSnapshots(ctx, s.zfs); err != nil || len(snaps) != 2 {
		t.Errorf("slave snapshots %v, %v: want its two, untouched", snaps, err)
	}
}

// TestSlavePoolFull: a full slave pool is reported on both sides; the
// master keeps snapshotting and retrying, and replication resumes once the
// stream fits.
func TestSlavePoolFull(t *testing.T) {
	m, s := newPair(t, pairOptions{slavePoolSize: 64 << 20}) // zfs-fuse's smallest: ~27 MiB usable
	writeFiles(t, m.mount, "big", 40, 1<<20)
	s.start(t)
	m.start(t)
	waitFor(t, syncTimeout, "the master to report the peer's full pool twice (a retry)", func() bool {
		st := m.status()
		return st.LastError != nil && st.LastError.Code == codePoolFull && st.Snapshots.FailedTransfers >= 2
	})
	if e := s.status().LastError; e == nil || e.Code != codePoolFull {
		t.Errorf("slave last error %+v, want pool_full", e)
	}
	if replicaExists(t, s) {
		t.Errorf("the failed full receive left %s behind", s.zfs)
	}
	taken := m.status().Snapshots.Taken
	writeFiles(t, m.mount, "small", 1, 100)
	m.fire(t)
	waitFor(t, syncTimeout, "the master to keep snapshotting", func() bool { return m.status().Snapshots.Taken > taken })

	// Free the space on the master's side: the next full stream fits.
	if err := os.RemoveAll(filepath.Join(m.mount, "big")); err != nil {
		t.Fatal(err)
	}
	m.fire(t)
	waitSynced(t, m, 2*syncTimeout)
	sameTree(t, m, s)
}

// TestSlaveStopAbortsReceive: stopping the slave (SIGTERM in the binary)
// during a transfer aborts the receive cleanly: no half-received dataset;
// the restarted slave gets the whole stream again (zfs-fuse has no resume).
func TestSlaveStopAbortsReceive(t *testing.T) {
	m, s := newPair(t, pairOptions{extra: "[replication]\nbandwidth = 1MiB"})
	writeFiles(t, m.mount, "big", 6, 1<<20) // ~6 s at 1 MiB/s
	s.start(t)
	m.start(t)
	waitFor(t, syncTimeout, "the receive to be in flight", func() bool {
		tr := s.status().Transfer
		return tr != nil && tr.Bytes > 0
	})
	s.stop(t)
	if replicaExists(t, s) {
		t.Fatalf("the aborted receive left %s behind", s.zfs)
	}
	waitFor(t, syncTimeout, "the master to notice", func() bool { return m.status().Snapshots.FailedTransfers >= 1 })
	m.cfg.Replication.Bandwidth = 0 // the master's loop has its copy; only the restart below matters
	s.start(t)
	st := waitSynced(t, m, 2*syncTimeout)
	sameTree(t, m, s)
	if st.Snapshots.Transfers != 1 {
		t.Errorf("transfers %d, want the one full transfer", st.Snapshots.Transfers)
	}
}

// TestFullSendProgress: a full send reports bytes of an estimate while in
// flight (zfs-fuse: the snapshot's referenced bytes; `send -nP` elsewhere).
func TestFullSendProgress(t *testing.T) {
	m, s := newPair(t, pairOptions{extra: "[replication]\nbandwidth = 2MiB"})
	writeFiles(t, m.mount, "big", 4, 1<<20)
	s.start(t)
	m.start(t)
	var tr *TransferStatus
	waitFor(t, syncTimeout, "progress of the full send", func() bool {
		tr = m.status().Transfer
		return tr != nil && tr.Bytes > 0 && tr.Estimate > 0
	})
	wantSrc := "referenced"
	if m.dialect.Features.SendDryRunParsable {
		wantSrc = "send -nP"
	}
	if tr.Kind != "full" || tr.EstimateSource != wantSrc || tr.Estimate < 4<<20 || tr.Bytes >= tr.Estimate {
		t.Errorf("transfer in flight: %+v", tr)
	}
	st := waitSynced(t, m, syncTimeout)
	if st.Snapshots.BytesSent < 4<<20 {
		t.Errorf("bytes sent %d", st.Snapshots.BytesSent)
	}
	if _, err := snapshot.ParseFlockerName(st.NewestLocal.Name); err != nil {
		t.Error(err)
	}
}

// TestStaleHoldsReleased: holds of ours left on older snapshots (a crash
// between placing the new hold and releasing the old) are released at
// start; the base keeps its hold.
func TestStaleHoldsReleased(t *testing.T) {
	m, s := newPair(t, pairOptions{})
	s.start(t)
	m.start(t)
	waitSynced(t, m, syncTimeout)
	writeFiles(t, m.mount, "a", 1, 100)
	m.fire(t)
	waitSynced(t, m, syncTimeout)
	assertHeld(t, m, "flocker-0-2")
	assertNotHeld(t, m, "flocker-0-1") // the move is over: nothing stops it midway
	m.stop(t)
	if err := m.z.Hold(context.Background(), holdTag, m.zfs+"@flocker-0-1"); err != nil {
		t.Fatal(err)
	}
	assertHeld(t, m, "flocker-0-1")
	m.start(t)
	// A master starts fenced: its loop (which cleans the holds) starts once
	// it hears the slave, a moment after Start.
	deadline := time.Now().Add(syncTimeout)
	for {
		p, err := m.z.GetProperty(context.Background(), m.zfs+"@flocker-0-1", "userrefs")
		if err == nil && p.Value == "0" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertNotHeld(t, m, "flocker-0-1")
	waitSynced(t, m, syncTimeout)
	assertHeld(t, m, "flocker-0-3")
	assertNotHeld(t, m, "flocker-0-2")
}

// TestRetentionBothSides: with a one-second retention, each side prunes
// flocker's old snapshots (at most every pruneEvery) but keeps its newest,
// and the master keeps the held base; operator snapshots are never pruned.
func TestRetentionBothSides(t *testing.T) {
	m, s := newPair(t, pairOptions{extra: "[snapshot]\nretention = 1s:all"})
	if err := m.z.Snapshot(context.Background(), m.zfs+"@operator-kept"); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	m.start(t)
	waitSynced(t, m, syncTimeout)
	for i := range 4 {
		writeFiles(t, m.mount, fmt.Sprintf("r%d", i), 1, 100)
		m.fire(t)
		waitSynced(t, m, syncTimeout)
		time.Sleep(1100 * time.Millisecond) // creation times have a one-second resolution
	}
	waitFor(t, 3*pruneEvery, "both sides to prune", func() bool {
		return m.status().Snapshots.Pruned > 0 && s.status().Snapshots.Pruned > 0
	})
	// One more cycle: each side prunes again what aged out meanwhile.
	writeFiles(t, m.mount, "last", 1, 100)
	m.fire(t)
	st := waitSynced(t, m, syncTimeout)
	sameTree(t, m, s)
	ctx := context.Background()
	local, err := m.z.ListSnapshots(ctx, m.zfs)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, x := range local {
		names[x.ShortName()] = true
	}
	if !names["operator-kept"] || !names[st.NewestLocal.Name] {
		t.Errorf("master kept %v: want the operator's snapshot and the newest %s", names, st.NewestLocal.Name)
	}
	if len(local) > 4 {
		t.Errorf("master holds %d snapshots after pruning: %v", len(local), names)
	}
	replica, err := s.z.ListSnapshots(ctx, s.zfs)
	if err != nil {
		t.Fatal(err)
	}
	if len(replica) > 3 || replica[len(replica)-1].GUID != st.NewestLocal.GUID {
		t.Errorf("replica holds %d snapshots, newest %s: want few, the master's newest last", len(replica), replica[len(replica)-1].Name)
	}
	if st.Snapshots.Local != len(local) {
		t.Errorf("status counts %d local snapshots, zfs lists %d: the in-memory list drifted", st.Snapshots.Local, len(local))
	}
}
