package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

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
