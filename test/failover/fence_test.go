package failover

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
)

// loadDuration is how long TestNoFalseFailoverUnderLoad keeps the CPUs
// busy; FLOCKER_LOAD_DURATION overrides it (the benchmark runs 10 min).
func loadDuration(t *testing.T) time.Duration {
	d := 90 * time.Second
	if s := os.Getenv("FLOCKER_LOAD_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("FLOCKER_LOAD_DURATION=%q: %v", s, err)
		}
		d = v
	}
	return d
}

// busyLoops starts n shell busy loops (each keeps one CPU busy) and stops
// them, by PID, when the test ends.
func busyLoops(t *testing.T, n int) {
	t.Helper()
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
}

// TestNoFalseFailoverUnderLoad: with a witness and the default timing, a
// serving pair whose every CPU is kept busy by loops of other processes
// (and whose master keeps writing, so snapshots and sends run) must not
// fail over: A never fences, B never promotes, the epoch stays.
func TestNoFalseFailoverUnderLoad(t *testing.T) {
	p := newPair(t, true)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	markA, markB := p.Master.Log.Len(), p.Slave.Log.Len()

	busyLoops(t, runtime.NumCPU())
	deadline := time.Now().Add(loadDuration(t))
	for i := 0; time.Now().Before(deadline); i++ {
		writeFile(t, p.Master, "load.txt", strings.Repeat("x", i%4096))
		time.Sleep(200 * time.Millisecond)
	}
	decisions := func(n *agentpair.Node, mark int) []string {
		var out []string
		for _, r := range n.Log.Records(mark) {
			switch r.Msg() {
			case "failover decision":
				out = append(out, fmt.Sprintf("%s: %s (peer silent %v, witness silent %v)", r.Str("event"), r.Str("note"),
					time.Duration(r.Num("peer_silent")), time.Duration(r.Num("witness_silent"))))
			case "heartbeat late", "heartbeat sent late", "witness reply late":
				out = append(out, fmt.Sprintf("%s %s: %v", r.Str("time"), r.Msg(), time.Duration(r.Num("gap"))))
			}
		}
		return out
	}
	da, db := decisions(p.Master, markA), decisions(p.Slave, markB)
	t.Logf("A's decisions under load: %q", da)
	t.Logf("B's decisions under load: %q", db)
	for _, d := range da {
		if strings.Contains(d, "fencing") {
			t.Errorf("A fenced itself under CPU load: %s", d)
		}
	}
	if st := state(t, p.Slave); st.Role != config.RoleSlave || st.Epoch != e0 {
		t.Errorf("B is %s at epoch %d after the load; want slave at %d", st.Role, st.Epoch, e0)
	}
	if st := state(t, p.Master); st.Role != config.RoleMaster || st.Epoch != e0 {
		t.Errorf("A is %s at epoch %d after the load; want master at %d", st.Role, st.Epoch, e0)
	}
}

