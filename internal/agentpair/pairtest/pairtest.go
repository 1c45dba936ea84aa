// Package pairtest is what the end-to-end test packages share: the flocker
// binary built once per package, and a pair of real agents on the rig that
// is torn down with the test.
package pairtest

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

// Main builds the flocker binary into a temporary directory, sets *bin to
// it, runs the package's tests and exits with their status. Call it from
// TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "flocker-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "flocker")
	build := exec.Command("go", "build", "-o", *bin, "github.com/flockerha/flocker/cmd/flocker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building flocker: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// RequireTools fails (in CI) or skips the test when a host-tier tool is
// missing.
func RequireTools(t *testing.T, tools ...string) {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range append([]string{"zfs-fuse", "zfs", "zpool", "nsenter"}, tools...) {
		_, err := exec.LookPath(tool)
		testutil.RequireNoError(t, tool+" (run make setup)", err)
	}
}

// New builds the pair with bin and, unless opts sets [notify], the notify
// settings given; cleanup stops the agents (SIGTERM and wait, before the
// pools go: see agentpair), dumping their logs' tails when the test failed.
func New(t *testing.T, bin string, opts agentpair.Options, notify map[string]string) *agentpair.Pair {
	t.Helper()
	RequireTools(t)
	opts.Bin = bin
	if opts.Logger == nil {
		opts.Logger = rigtest.Logger(t)
	}
	if opts.Settings == nil {
		opts.Settings = map[string]map[string]string{}
	}
	if opts.Settings["notify"] == nil {
		opts.Settings["notify"] = notify
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := agentpair.New(ctx, opts)
	if err != nil {
		t.Fatalf("building the pair: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			KeepLogs(t, "flocker-e2e-logs-"+filepath.Base(t.Name()), p.Nodes())
		}
		if err := p.Close(); err != nil {
			t.Errorf("closing the pair: %v", err)
		}
	})
	return p
}

// Start starts the nodes' agents, failing the test on error.
func Start(t *testing.T, nodes ...*agentpair.Node) {
	t.Helper()
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
}

// WaitRecord waits for a log record of n from mark on, failing the test on
// timeout.
func WaitRecord(t *testing.T, n *agentpair.Node, mark int, timeout time.Duration, what string, match func(agentpair.Record) bool) agentpair.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := n.Log.Wait(ctx, mark, match)
	if err != nil {
		t.Fatalf("%s: no %s within %v", n.Name, what, timeout)
	}
	return r
}

// Msg matches a record by its message.
func Msg(m string) func(agentpair.Record) bool {
	return func(r agentpair.Record) bool { return r.Msg() == m }
}

// WaitSame waits until the replica matches the master, failing the test on
// timeout; it returns how long that took.
func WaitSame(t *testing.T, p *agentpair.Pair, timeout time.Duration) time.Duration {
	t.Helper()
	d, err := p.WaitSame(context.Background(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// KeepLogs is for a failed test's cleanup, before the pair is closed: it
// makes each running agent dump its goroutines into its log (a stuck agent
// shows what it waits on), prints the tail of each node's records and copies
// every run's log to os.TempDir()/dir, which outlives the test.
func KeepLogs(t *testing.T, dir string, nodes []*agentpair.Node) {
	t.Helper()
	keep := filepath.Join(os.TempDir(), dir)
	for _, n := range nodes {
		// The tail first: after the dump it would be the dump's end.
		t.Logf("last log records of %s:\n%s", n.Name, n.Log.Tail(60))
		if n.Running() {
			if err := n.Dump(); err != nil {
				t.Logf("goroutine dump of %s: %v", n.Name, err)
			}
		}
		logs, _ := filepath.Glob(filepath.Join(n.Dir, "agent-*.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil && os.MkdirAll(keep, 0o755) == nil {
				_ = os.WriteFile(filepath.Join(keep, n.Name+"-"+filepath.Base(l)), b, 0o644)
			}
		}
	}
	t.Logf("agent logs (with goroutine dumps of the agents still running) kept in %s", keep)
}
