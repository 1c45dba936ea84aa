package faults

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/agentpair/pairtest"
	"github.com/flockerha/flocker/internal/chaos"
	"github.com/flockerha/flocker/internal/failpair"
	"github.com/flockerha/flocker/internal/rig/rigtest"
)

// Bounds of the failover-pair tests: generous, nothing asserts speed.
const (
	serveTimeout  = 90 * time.Second
	settleTimeout = 3 * time.Minute
)

// newFailPair builds a pair with the service, the floating address and,
// when witness is set, the witness; torn down with the test, keeping the
// agents' logs when it failed.
func newFailPair(t *testing.T, witness bool) *failpair.Pair {
	t.Helper()
	pairtest.RequireTools(t, "busybox", "nft")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := failpair.New(ctx, failpair.Options{
		Bin: bin, Witness: witness, Logger: rigtest.Logger(t),
		Settings: map[string]map[string]string{"notify": {"mode": "timer", "interval": "200ms"}},
	})
	if err != nil {
		t.Fatalf("building the pair: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			pairtest.KeepLogs(t, "flocker-faults-logs-"+filepath.Base(t.Name()), p.Nodes())
		}
		if err := p.Close(); err != nil {
			t.Errorf("closing the pair: %v", err)
		}
	})
	return p
}

// startServing starts both agents and waits until the pair has settled
// with A serving C.
func startServing(t *testing.T, p *failpair.Pair) chaos.Settled {
	t.Helper()
	for _, n := range []*agentpair.Node{p.Slave, p.Master} {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return waitSettled(t, p)
}

// waitSettled waits for one master serving and an identical replica.
func waitSettled(t *testing.T, p *failpair.Pair) chaos.Settled {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	s, err := chaos.WaitSettled(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
