// Package faults is the standing fault suite of the host tier: real flocker
// agents (started from their INI files as real processes, each in its netns
// host on its own zfs-fuse pool) are killed, starved of space, lied to by
// zfs, cut apart (internal/chaos: a pulled cable, nftables drops both ways
// and one way, with and without a witness), have their hooks killed and are
// fed hostile input, and each test reports writes acknowledged against
// writes found afterwards (internal/ackcheck). Clock jumps run in OpenZFS
// qemu guests (internal/vmtest), whose clocks may be stepped. The soak is
// test/soak.
package faults

import (
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
	"github.com/flockerha/flocker/internal/agentpair/pairtest"
	"github.com/flockerha/flocker/internal/chaos"
	"github.com/flockerha/flocker/internal/treesum"
)

// bin is the flocker binary built once for the package.
var bin string

func TestMain(m *testing.M) { pairtest.Main(m, &bin) }

// Generous bounds: six test packages share two cores and one zfs-fuse
// daemon. They bound waiting; nothing asserts speed.
const (
	firstSyncTimeout = 3 * time.Minute
	syncTimeout      = 2 * time.Minute
)

// newPair builds the pair with the timer tier at 200 ms (forced: auto
// picks the tracepoint tier on this host), torn down with the test.
func newPair(t *testing.T, opts agentpair.Options) *agentpair.Pair {
	t.Helper()
	return pairtest.New(t, bin, opts, map[string]string{"mode": "timer", "interval": "200ms"})
}

var (
	start      = pairtest.Start
	waitRecord = pairtest.WaitRecord
	msg        = pairtest.Msg
	waitSame   = pairtest.WaitSame
)

// account checks every acknowledged write of l in the replica and logs the
// report; any write lost or torn fails the test.
func account(t *testing.T, l *ackcheck.Ledger, p *agentpair.Pair) {
	t.Helper()
	// zfs-fuse unmounts the replica for a moment around a receive: its
	// mountpoint then shows the parent file system. Only the mounted
	// replica counts, and a check that raced an unmount is taken again.
	var r ackcheck.Report
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if chaos.MountedAt(p.Slave.Dataset, p.Slave.Mountpoint) {
			var err error
			if r, err = l.Check(p.Slave.Mountpoint); err != nil {
				t.Fatal(err)
			}
			if r.OK() && chaos.MountedAt(p.Slave.Dataset, p.Slave.Mountpoint) {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
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
