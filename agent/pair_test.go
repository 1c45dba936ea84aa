package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/internal/treesum"
	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport/pki"
)

// These tests run a master and a slave Agent in the test process, talking
// QUIC over loopback, each on its own real zfs-fuse pool. Faults are
// injected by wrapping one ZFS method (the consumer-side interfaces make
// that a few lines). The end-to-end tests in test/e2e run the real binary.

// manualNotifier is a Notifier the test drives: Fire reports a change the
// moment the test has finished writing, so the test knows which snapshot
// holds its writes. The real tiers have their own tests (timer_test.go, the
// notifier packages), and the end-to-end tests run the agent with the timer.
type manualNotifier struct {
	mu      sync.Mutex
	targets map[string]Target
	ch      chan Change
	closed  bool
}

func newManualNotifier() *manualNotifier {
	return &manualNotifier{targets: map[string]Target{}, ch: make(chan Change, 16)}
}

func (n *manualNotifier) Tier() string { return "manual" }
func (n *manualNotifier) Add(_ context.Context, t Target) error {
	if err := checkMounted(t.Mountpoint); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.targets[t.Name] = t
	return nil
}
func (n *manualNotifier) Remove(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.targets, name)
	return nil
}
func (n *manualNotifier) Changes() <-chan Change { return n.ch }
func (n *manualNotifier) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.closed = true
		close(n.ch)
	}
	return nil
}

// Fire flushes the target (as every tier does) and reports a change.
func (n *manualNotifier) Fire(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, tg := range n.targets {
		if err := syncfs(tg.Mountpoint); err != nil {
			t.Fatal(err)
		}
		n.ch <- Change{Time: time.Now(), Dataset: tg.Name, Tier: "manual", Hook: "test"}
	}
}

// faultZFS wraps a ZFS; a non-nil hook replaces one method.
type faultZFS struct {
	ZFS
	send    func(ctx context.Context, snap string, w io.Writer, opts snapshot.SendOptions) (int64, error)
	receive func(ctx context.Context, target string, r io.Reader, opts snapshot.ReceiveOptions) (int64, error)
}

func (f *faultZFS) Send(ctx context.Context, snap string, w io.Writer, opts snapshot.SendOptions) (int64, error) {
	if f.send != nil {
		return f.send(ctx, snap, w, opts)
	}
	return f.ZFS.Send(ctx, snap, w, opts)
}

func (f *faultZFS) Receive(ctx context.Context, target string, r io.Reader, opts snapshot.ReceiveOptions) (int64, error) {
	if f.receive != nil {
		return f.receive(ctx, target, r, opts)
	}
	return f.ZFS.Receive(ctx, target, r, opts)
}

type testNode struct {
	name     string
	role     config.Role
	pool     *rig.Pool
	zfs      string // this node's dataset
	mount    string // where it is (or will be) mounted
	cfg      *config.Config
	cert     tls.Certificate
	z        ZFS
	fault    *faultZFS
	dialect  snapshot.Dialect
	notifier *manualNotifier
	a        *Agent
}

type pairOptions struct {
	slavePoolSize int64
	extra         string // more INI lines, in every config
}

// freePorts picks n free UDP ports on loopback.
func freePorts(t *testing.T, n int) []int {
	var ports []int
	for range n {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
		c.Close()
	}
	return ports
}

// newPair creates a master (alpha, dataset POOL/app with a file) and a
// slave (beta, replica POOL/app not created yet) and their configs.
func newPair(t *testing.T, o pairOptions) (m, s *testNode) {
	t.Helper()
	testutil.RequireRoot(t)
	pa := rigtest.Pool(t, rig.PoolOptions{})
	pb := rigtest.Pool(t, rig.PoolOptions{Size: o.slavePoolSize})
	ds := rigtest.Dataset(t, pa, "app", nil)
	if err := os.WriteFile(filepath.Join(ds.Mountpoint, "hello"), []byte("hello from alpha\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cli := snapshot.NewCLI("", "", rigtest.Logger(t))
	d, err := cli.Detect(ctx)
	testutil.RequireNoError(t, "detecting zfs", err)

	dir := t.TempDir()
	ports := freePorts(t, 2)
	m = &testNode{name: "alpha", role: config.RoleMaster, pool: pa, zfs: ds.Name, mount: ds.Mountpoint}
	s = &testNode{name: "beta", role: config.RoleSlave, pool: pb, zfs: pb.Name + "/app", mount: filepath.Join(pb.Mountpoint, "app")}
	prints := map[string]string{}
	for _, n := range []*testNode{m, s} {
		cr, err := pki.Generate(n.name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := cr.Write(filepath.Join(dir, n.name+".crt"), filepath.Join(dir, n.name+".key")); err != nil {
			t.Fatal(err)
		}
		prints[n.name] = cr.Fingerprint
		n.cert, _, err = pki.LoadKeyPair(filepath.Join(dir, n.name+".crt"), filepath.Join(dir, n.name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		n.dialect = d
		n.z = snapshot.NewWithDialect(cli, d, rigtest.Logger(t).With("node", n.name))
		n.fault = &faultZFS{ZFS: n.z}
	}
	peer := map[*testNode]*testNode{m: s, s: m}
	port := map[*testNode]int{m: ports[0], s: ports[1]}
	for _, n := range []*testNode{m, s} {
		p := peer[n]
		text := fmt.Sprintf(`[node]
name = %s
listen = 127.0.0.1:%d
[peer]
name = %s
address = 127.0.0.1:%d
fingerprint = %s
[tls]
cert = %s.crt
key = %s.key
[dataset "app"]
zfs = %s
%s
[state]
role = %s
epoch = 0
`, n.name, port[n], p.name, port[p], prints[p.name], n.name, n.name, n.zfs, o.extra, n.role)
		path := filepath.Join(dir, n.name+".ini")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		n.cfg, err = config.Load(path)
		testutil.RequireNoError(t, "config", err)
	}
	return m, s
}

// start builds and starts the node's agent; cleanup closes it.
func (n *testNode) start(t *testing.T) {
	t.Helper()
	var nt Notifier
	if n.role == config.RoleMaster {
		n.notifier = newManualNotifier()
		nt = n.notifier
	}
	a, err := New(Options{Config: n.cfg, Cert: n.cert, ZFS: n.fault, Dialect: n.dialect, Notifier: nt,
		Logger: rigtest.Logger(t).With("test_node", n.name)})
	testutil.RequireNoError(t, "agent.New", err)
	if err := a.Start(context.Background()); err != nil {
		a.Close()
		t.Fatalf("starting %s: %v", n.name, err)
	}
	n.a = a
	t.Cleanup(func() { n.stop(t) })
}

func (n *testNode) stop(t *testing.T) {
	if n.a == nil {
		return
	}
	if err := n.a.Close(); err != nil {
		t.Errorf("closing %s: %v", n.name, err)
	}
	n.a = nil
}

func (n *testNode) status() DatasetStatus { return n.a.Status().Datasets[0] }

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSynced waits until the peer holds the master's newest snapshot and
// nothing is dirty or in flight, and returns the master's status then.
func waitSynced(t *testing.T, m *testNode, timeout time.Duration) DatasetStatus {
	t.Helper()
	var st DatasetStatus
	waitFor(t, timeout, "the slave to hold the master's newest snapshot", func() bool {
		st = m.status()
		return st.NewestLocal != nil && st.NewestPeer != nil && st.NewestLocal.GUID == st.NewestPeer.GUID &&
			st.Transfer == nil && st.DirtySince.IsZero()
	})
	return st
}

// fire reports a change and waits until the master has snapshotted it.
func (n *testNode) fire(t *testing.T) {
	t.Helper()
	before := n.status().Snapshots.Taken
	n.notifier.Fire(t)
	waitFor(t, syncTimeout, "the snapshot of the change", func() bool { return n.status().Snapshots.Taken > before })
}

// sameTree compares the master's dataset with the slave's replica.
func sameTree(t *testing.T, m, s *testNode) {
	t.Helper()
	a, err := treesum.Sum(m.mount)
	if err != nil {
		t.Fatal(err)
	}
	b, err := treesum.Sum(s.mount)
	if err != nil {
		t.Fatalf("replica: %v", err)
	}
	if a != b {
		t.Fatalf("replica differs from the master: %s vs %s\nmaster %s:\n%s\nreplica %s:\n%s", b, a, m.mount, listTree(m.mount), s.mount, listTree(s.mount))
	}
}

// writeFiles writes n files of size bytes of random data under dir/sub.
func writeFiles(t *testing.T, dir, sub string, n, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	buf := make([]byte, size)
	for i := range n {
		for j := range buf {
			buf[j] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, sub, fmt.Sprintf("f%04d", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// replicaExists asks zfs whether the slave's dataset exists.
func replicaExists(t *testing.T, s *testNode) bool {
	t.Helper()
	_, err := s.z.ListSnapshots(context.Background(), s.zfs)
	if err != nil && !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("listing the replica: %v", err)
	}
	return err == nil
}

// listTree describes a tree for failure messages.
func listTree(dir string) string {
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", p, err)
			return nil
		}
		if fi, err := d.Info(); err == nil {
			fmt.Fprintf(&b, "  %s %v %d\n", p, fi.Mode(), fi.Size())
		}
		return nil
	})
	return b.String()
}
