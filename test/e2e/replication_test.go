package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/rig/rigtest"
)

const (
	firstSyncTimeout = 90 * time.Second
	syncTimeout      = 60 * time.Second
)

// tiers are the notifier tiers the replication tests run under, forced: the
// timer and the tracepoint eBPF tier, the best one this development kernel
// loads (fentry and kprobes are refused here), which `mode = auto` picks
// (TestAutoSelectsTracepoint).
var tiers = []struct {
	name     string
	settings map[string]string
}{
	{"timer", map[string]string{"mode": "timer", "interval": timerInterval}},
	{"tracepoint", map[string]string{"mode": "tracepoint", "interval": timerInterval}},
}

// tierPair builds a pair whose master runs the given tier.
func tierPair(t *testing.T, settings map[string]string) *agentpair.Pair {
	t.Helper()
	rigtest.KernelFS(t)
	return newPair(t, agentpair.Options{Settings: map[string]map[string]string{"notify": settings}})
}

// TestFilesReplicate: files written on A appear, identical, in B's replica;
// then a handful of single writes measure the write-to-replica lag.
func TestFilesReplicate(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) { filesReplicate(t, tierPair(t, tier.settings), tier.name) })
	}
}

func filesReplicate(t *testing.T, p *agentpair.Pair, tier string) {
	writeRandom(t, filepath.Join(p.Master.Mountpoint, "tree"), 30, 8<<10, 1)
	if err := os.Symlink("tree/f0001", filepath.Join(p.Master.Mountpoint, "link")); err != nil {
		t.Fatal(err)
	}
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)
	// The slave's first receive is the full stream (the master's own record
	// of it may be a failure when the connection it went on was superseded
	// right after: then the slave's next list tells the master it is done).
	full := waitRecord(t, p.Slave, 0, syncTimeout, "the full receive", msg("received"))
	t.Logf("first sync: full stream of %v bytes", full.Num("bytes"))

	// A handful of writes, one at a time: from write() returning on A to the
	// file's content being readable in B's replica.
	var lags []time.Duration
	for i := range 5 {
		mark := p.Master.Log.Len()
		path := fmt.Sprintf("lag-%d", i)
		content := []byte(fmt.Sprintf("write %d at %s\n", i, time.Now().Format(time.RFC3339Nano)))
		t0 := time.Now()
		if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, path), content, 0o644); err != nil {
			t.Fatal(err)
		}
		lags = append(lags, waitContent(t, filepath.Join(p.Slave.Mountpoint, path), content, t0))
		r := waitRecord(t, p.Master, mark, syncTimeout, "an incremental", func(r agentpair.Record) bool {
			return r.Msg() == "replicated" && r.Str("kind") == "incremental"
		})
		t.Logf("write %d: visible in the replica after %v; the agent's change-to-ack time of the next incremental %.1f ms",
			i, lags[i].Round(time.Millisecond), r.Num("lag_ms"))
		time.Sleep(300 * time.Millisecond) // let the next write start a new cycle
	}
	slices.Sort(lags)
	t.Logf("write-to-replica lag over %d writes: min %v, median %v, max %v (%s tier)",
		len(lags), lags[0].Round(time.Millisecond), lags[len(lags)/2].Round(time.Millisecond),
		lags[len(lags)-1].Round(time.Millisecond), tier)
	waitSame(t, p, syncTimeout)
}

// waitContent polls the replica until path holds content; it returns the
// time from t0.
func waitContent(t *testing.T, path string, content []byte, t0 time.Time) time.Duration {
	t.Helper()
	deadline := t0.Add(syncTimeout)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, content) {
			return time.Since(t0)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear in the replica within %v", path, syncTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestBurstCoalesces: 1,000 small writes in a burst replicate with far
// fewer snapshots than writes.
func TestBurstCoalesces(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) { burstCoalesces(t, tierPair(t, tier.settings)) })
	}
}

func burstCoalesces(t *testing.T, p *agentpair.Pair) {
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)
	mark := p.Master.Log.Len()
	const writes = 1000
	f, err := os.Create(filepath.Join(p.Master.Mountpoint, "burst.log"))
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	for i := range writes {
		if _, err := fmt.Fprintf(f, "record %04d\n", i); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 { // a few files too: creates and writes of several kinds
			if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, fmt.Sprintf("small-%d", i)), []byte{byte(i)}, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	burst := time.Since(begin)
	waitSame(t, p, syncTimeout)
	// The replica reads the burst; the master's log line about it may come a
	// moment later.
	waitRecord(t, p.Master, mark, syncTimeout, "a transfer of the burst", msg("replicated"))
	snaps := p.Master.Log.Count(mark, msg("snapshot taken"))
	transfers := p.Master.Log.Count(mark, msg("replicated"))
	t.Logf("%d writes in %v: %d snapshots, %d transfers", writes, burst.Round(time.Millisecond), snaps, transfers)
	if transfers == 0 {
		t.Error("no transfer carried the burst")
	}
	if snaps == 0 || snaps > writes/10 {
		t.Errorf("%d snapshots for %d writes: want far fewer snapshots than writes (at most %d)", snaps, writes, writes/10)
	}
}

// TestSlaveKilledMidTransfer: the slave agent SIGKILLed while a full
// transfer is in flight leaves no half-received dataset; restarted, it gets
// the transfer redone from the start (zfs-fuse has no resumable receive)
// and ends identical.
func TestSlaveKilledMidTransfer(t *testing.T) {
	p := newPair(t, agentpair.Options{Settings: map[string]map[string]string{
		"replication": {"bandwidth": "4MiB"}, // the 16 MiB first sync takes ~4 s: long enough to catch in flight
	}})
	writeRandom(t, filepath.Join(p.Master.Mountpoint, "big"), 16, 1<<20, 2)
	start(t, p.Slave, p.Master)
	inFlight := waitRecord(t, p.Slave, 0, firstSyncTimeout, "receive in flight", func(r agentpair.Record) bool {
		return r.Msg() == "receive in flight" && r.Num("bytes") > 0
	})
	if err := p.Slave.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the slave agent with %v of %v bytes received", inFlight.Num("bytes"), inFlight.Num("estimate"))
	if got := inFlight.Num("bytes"); got >= inFlight.Num("estimate") {
		t.Fatalf("the transfer was not in flight: %v of %v bytes", got, inFlight.Num("estimate"))
	}
	mark := p.Master.Log.Len()
	waitRecord(t, p.Master, 0, syncTimeout, "the master's failed transfer", msg("transfer failed"))
	// zfs receive, orphaned, sees its input end and discards its state.
	waitGone(t, p.Slave)

	if err := p.Slave.Start(); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p, firstSyncTimeout)
	r := waitRecord(t, p.Master, mark, syncTimeout, "replicated", msg("replicated"))
	if r.Str("kind") != "full" {
		t.Errorf("after the restart: a %s transfer, want the full one redone", r.Str("kind"))
	}
}

// waitGone waits until the slave's replica dataset does not exist.
func waitGone(t *testing.T, n *agentpair.Node) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !datasetExists(t, n.Dataset) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists 30 s after the receive was cut: a half-received dataset", n.Dataset)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSlavePoolFull: a full slave pool is reported on both sides while the
// master keeps serving (writes, snapshots) and retrying; once the stream
// fits, replication completes.
func TestSlavePoolFull(t *testing.T) {
	p := newPair(t, agentpair.Options{SlavePoolSize: 64 << 20}) // zfs-fuse's smallest pool: ~27 MiB usable
	writeRandom(t, filepath.Join(p.Master.Mountpoint, "big"), 40, 1<<20, 3)
	start(t, p.Slave, p.Master)
	full := func(r agentpair.Record) bool { return r.Str("code") == "pool_full" }
	waitRecord(t, p.Slave, 0, firstSyncTimeout, "the slave's pool-full report", full)
	first := waitRecord(t, p.Master, 0, firstSyncTimeout, "the master's pool-full report", full)
	t.Logf("master: %s", first.Msg())
	// The master keeps serving: the dataset takes writes, gets snapshots,
	// and the transfer is retried.
	mark := p.Master.Log.Len()
	if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, "still-serving"), []byte("yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, p.Master, mark, syncTimeout, "a snapshot after the failure", msg("snapshot taken"))
	waitRecord(t, p.Master, mark, syncTimeout, "a retry that fails again", full)
	if !p.Master.Running() || !p.Slave.Running() {
		t.Fatal("an agent exited over the full pool")
	}
	if err := os.RemoveAll(filepath.Join(p.Master.Mountpoint, "big")); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p, firstSyncTimeout)
}

// writeRandom writes n files of size random bytes under dir.
func writeRandom(t *testing.T, dir string, n, size int, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	buf := make([]byte, size)
	for i := range n {
		for j := 0; j+8 <= len(buf); j += 8 {
			v := r.Uint64()
			for k := range 8 {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
