// Package faults is the standing fault suite of the host tier: real flocker
// agents (started from their INI files as real processes, each in its netns
// host on its own zfs-fuse pool) are killed, starved of space, lied to by
// zfs and fed hostile input, and each test reports writes acknowledged
// against writes found afterwards (internal/ackcheck). Faults that need
// failover (partitions with a winner, the soak) come with issue 5.
package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/ackcheck"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/internal/treesum"
)

// bin is the flocker binary built once for the package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flocker-faults-bin-")
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

// Generous bounds: six test packages share two cores and one zfs-fuse
// daemon. They bound waiting; nothing asserts speed.
const (
	firstSyncTimeout = 3 * time.Minute
	syncTimeout      = 2 * time.Minute
)

// newPair builds the pair with the timer tier at 200 ms; cleanup stops the
// agents (SIGTERM and wait, before the pools go: see agentpair) and dumps
// their logs' tails when the test failed.
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
		// Forced: auto now picks the tracepoint tier on this host.
		opts.Settings["notify"] = map[string]string{"mode": "timer", "interval": "200ms"}
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

func waitSame(t *testing.T, p *agentpair.Pair, timeout time.Duration) {
	t.Helper()
	if _, err := p.WaitSame(context.Background(), timeout); err != nil {
		t.Fatal(err)
	}
}

// account checks every acknowledged write of l in the replica and logs the
// report; any write lost or torn fails the test.
func account(t *testing.T, l *ackcheck.Ledger, p *agentpair.Pair) {
	t.Helper()
	r, err := l.Check(p.Slave.Mountpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", r)
	if !r.OK() {
		t.Errorf("acknowledged writes missing from the replica: %s", r)
	}
}

// writeN makes n acknowledged writes of size bytes.
func writeN(t *testing.T, l *ackcheck.Ledger, n, size int) {
	t.Helper()
	for range n {
		if _, err := l.Write(size); err != nil {
			t.Fatal(err)
		}
	}
}

// writeRandom writes n files of size random bytes under dir: data that
// does not compress, to make transfers long enough to cut.
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

// waitNoProcesses waits until nothing runs in n's namespace: a killed
// agent's zfs child finishes once its pipe ends.
func waitNoProcesses(t *testing.T, n *agentpair.Node) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(n.Host.NS.Processes()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: processes %v still running a minute after the agent died", n.Name, n.Host.NS.Processes())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replicaSum is the replica's tree checksum, waiting (up to timeout) for
// it to be readable: the slave may have it unmounted for a moment.
func waitReplicaSum(t *testing.T, p *agentpair.Pair, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = treesum.Sum(p.Slave.Mountpoint); err == nil && got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("replica is not at its last good snapshot: sum %s (%v), want %s", got, err, want)
}

// zfs runs a zfs command (the zfs-fuse socket works from any namespace).
func zfs(args ...string) (string, error) {
	out, err := exec.Command("zfs", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
