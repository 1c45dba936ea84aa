// Package e2e runs flocker agents as real processes on the host tier: hosts
// A and B in network namespaces, each agent started from its own INI file
// (written by `flocker init` and `flocker trust`), each node on its own
// zfs-fuse pool.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
)

// bin is the flocker binary built once for the package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flocker-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "flocker")
	build := exec.Command("go", "build", "-o", bin, "github.com/flockerha/flocker/cmd/flocker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building flocker: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// timerInterval is the timer tier's period in these tests (when it is the
// tier forced): 200 ms keeps the tests quick.
const timerInterval = "200ms"

// newPair builds the pair for a test; cleanup stops the agents (dumping
// their logs' tails when the test failed) and removes the rig.
func newPair(t *testing.T, opts agentpair.Options) *agentpair.Pair {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"zfs-fuse", "zfs", "zpool", "nsenter"} {
		_, err := exec.LookPath(tool)
		testutil.RequireNoError(t, tool+" (run make setup)", err)
	}
	opts.Bin = bin
	if opts.Logger == nil {
		opts.Logger = rigtest.Logger(t)
	}
	if opts.Settings == nil {
		opts.Settings = map[string]map[string]string{}
	}
	if opts.Settings["notify"] == nil {
		opts.Settings["notify"] = map[string]string{"interval": timerInterval}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := agentpair.New(ctx, opts)
	if err != nil {
		t.Fatalf("building the pair: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range p.Nodes() {
				t.Logf("last log records of %s:\n%s", n.Name, n.Log.Tail(40))
			}
		}
		if err := p.Close(); err != nil {
			t.Errorf("closing the pair: %v", err)
		}
	})
	return p
}

func start(t *testing.T, nodes ...*agentpair.Node) {
	t.Helper()
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
}

// waitRecord waits for a log record of n from mark on, failing the test on
// timeout.
func waitRecord(t *testing.T, n *agentpair.Node, mark int, timeout time.Duration, what string, match func(agentpair.Record) bool) agentpair.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := n.Log.Wait(ctx, mark, match)
	if err != nil {
		t.Fatalf("%s: no %s within %v", n.Name, what, timeout)
	}
	return r
}

func msg(m string) func(agentpair.Record) bool {
	return func(r agentpair.Record) bool { return r.Msg() == m }
}

func waitSame(t *testing.T, p *agentpair.Pair, timeout time.Duration) time.Duration {
	t.Helper()
	d, err := p.WaitSame(context.Background(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
