package failover

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flockerha/flocker/agent/config"
)

// zfsGet reads a property's value and source.
func zfsGet(t *testing.T, ds, prop string) (value, source string) {
	t.Helper()
	out, err := exec.Command("zfs", "get", "-H", "-o", "value,source", prop, ds).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs get %s %s: %v: %s", prop, ds, err, out)
	}
	v, s, _ := strings.Cut(strings.TrimSpace(string(out)), "\t")
	return v, s
}

// TestStashOwnMountpoint: A's dataset has a local mountpoint. A is cut
// off and writes alone while B takes over; when A returns, its divergent
// history is stashed. The stash must not keep A's mountpoint: the base put
// back under A's dataset name takes the original path (so the service and
// replication find the dataset there), the stash its own.
func TestStashOwnMountpoint(t *testing.T) {
	p := newPair(t, false)
	orig := p.Master.Mountpoint
	if out, err := exec.Command("zfs", "set", "mountpoint="+orig, p.Master.Dataset).CombinedOutput(); err != nil {
		t.Fatalf("setting a local mountpoint: %v: %s", err, out)
	}
	if v, src := zfsGet(t, p.Master.Dataset, "mountpoint"); v != orig || src != "local" {
		t.Fatalf("mountpoint of %s is %s (%s); want %s, local", p.Master.Dataset, v, src, orig)
	}
	b, mark := cutMasterWhileItWrites(t, p)
	if err := p.Master.Host.LinkUp(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.Master, config.RoleSlave, b.Epoch, serveTimeout)
	waitRecordMsg(t, p.Master, mark, "dataset reset to the divergence base; replication resumes from it", serveTimeout)
	list := stashes(t, p.Master)
	if len(list) != 1 {
		t.Fatalf("stashes on A: %v; want one", list)
	}
	stash := list[0]
	smp, _ := zfsGet(t, stash, "mountpoint")
	if smp == orig {
		t.Fatalf("stash %s sits on the original mountpoint %s", stash, orig)
	}
	if b, err := os.ReadFile(filepath.Join(smp, "a-only.txt")); err != nil || string(b) != "acknowledged by A alone\n" {
		t.Fatalf("stash %s at %s lacks a-only.txt (%v, %q)", stash, smp, err, b)
	}
	if v, src := zfsGet(t, p.Master.Dataset, "mountpoint"); v != orig || src != "local" {
		t.Fatalf("A's dataset after the stash: mountpoint %s (%s); want %s, local", v, src, orig)
	}
	// Replication from B lands at the original path.
	writeFile(t, p.Slave, "b-after.txt", "written on B after the heal\n")
	waitFile(t, p.Master, "b-after.txt", "written on B after the heal\n", syncTimeout)
	if _, err := os.Stat(filepath.Join(orig, "a-only.txt")); !os.IsNotExist(err) {
		t.Fatalf("A's dataset at %s still has a-only.txt (err %v): it should follow B", orig, err)
	}
	t.Logf("stash %s mounted at %s; %s stays at %s", stash, smp, p.Master.Dataset, orig)
}
