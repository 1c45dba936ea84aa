package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flockerha/flocker/internal/agentpair"
)

// TestAutoSelectsTracepoint: a real agent with [notify] mode = auto on this
// host attaches the tracepoint tier to its zfs-fuse dataset, with the
// safety-net timer beside it, and keeps why fentry and kprobe were refused
// (this kernel refuses both); a write then reaches the replica.
func TestAutoSelectsTracepoint(t *testing.T) {
	p := newPair(t, agentpair.Options{Settings: map[string]map[string]string{
		"notify": {"mode": "auto", "interval": timerInterval},
	}})
	start(t, p.Slave, p.Master)
	r := waitRecord(t, p.Master, 0, syncTimeout, "the dataset's notifier", msg("dataset notifier"))
	if r.Str("tier") != "tracepoint" || r.Str("safety_net") != "1m0s" {
		t.Errorf("dataset notifier %v: want tier tracepoint with the 1m safety net", r)
	}
	refused, _ := r["refused"].(map[string]any)
	for _, tier := range []string{"fentry", "kprobe"} {
		if why, _ := refused[tier].(string); why == "" {
			t.Errorf("no reason kept for refusing %s: %v", tier, r)
		}
	}
	if len(refused) != 2 {
		b, _ := json.Marshal(refused)
		t.Errorf("refused %s: want exactly the two better tiers", b)
	}
	t.Logf("refused: %v", refused)
	waitSame(t, p, firstSyncTimeout)
	mark := p.Master.Log.Len()
	if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, "after-auto"), []byte("auto"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, p.Master, mark, syncTimeout, "an incremental of the write", msg("replicated"))
	waitSame(t, p, syncTimeout)
}

// TestMmapStoresReplicate: stores through a shared mapping, never synced by
// the writer, reach the replica within seconds with the tracepoint tier.
// The notifier reports the page's dirtying (writeback_dirty_folio) without
// flushing; the master runs syncfs right before each snapshot, which also
// write-protects the page again, so a second store to the same page is a
// new change. The kernel's own writeback of those pages comes only after
// dirty_expire_centisecs (30 s here), past this test's 15 s bound.
func TestMmapStoresReplicate(t *testing.T) {
	p := newPair(t, agentpair.Options{Settings: map[string]map[string]string{
		"notify": {"mode": "tracepoint"},
	}})
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)
	const name = "mapped"
	path := filepath.Join(p.Master.Mountpoint, name)
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p, syncTimeout)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Munmap(mem) }()
	replica := filepath.Join(p.Slave.Mountpoint, name)
	for _, word := range []string{"first store", "second store"} {
		copy(mem, word)
		deadline := time.Now().Add(15 * time.Second)
		for {
			got, err := os.ReadFile(replica)
			if err == nil && strings.HasPrefix(string(got), word) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica's %s does not begin with %q 15 s after the store (read err %v)\n%s", name, word, err, p.Master.Log.Tail(20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if n := p.Master.Log.Count(0, func(r agentpair.Record) bool { return strings.Contains(r.Msg(), "syncfs") }); n > 0 {
		t.Errorf("the master logged %d syncfs failures", n)
	}
}
