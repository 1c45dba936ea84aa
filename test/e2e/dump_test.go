package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
)

// A failed test's cleanup asks the agents for their goroutines
// (pairtest.KeepLogs): the dump must land in the run's log file.
func TestAgentDumpsGoroutinesIntoItsLog(t *testing.T) {
	p := newPair(t, agentpair.Options{})
	start(t, p.Master)
	waitRecord(t, p.Master, 0, time.Minute, "agent started", msg("agent started"))
	if err := p.Master.Dump(); err != nil {
		t.Fatal(err)
	}
	if p.Master.Running() {
		t.Fatal("agent still running after the dump")
	}
	b, err := os.ReadFile(filepath.Join(p.Master.Dir, "agent-1.log"))
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if !strings.Contains(log, "SIGQUIT") || !strings.Contains(log, "goroutine ") || !strings.Contains(log, "main.main") {
		t.Fatalf("no goroutine dump in the agent's log; its end:\n%s", log[max(0, len(log)-2000):])
	}
}
