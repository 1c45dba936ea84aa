package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/ackcheck"
	"github.com/flockerha/flocker/internal/agentpair"
)

// TestMasterPoolFull: another dataset fills the master's pool. Writes the
// file system refuses are not acknowledged; writes that still fit cannot be
// snapshotted, which the master reports (out of space) while it keeps
// running and retrying; once space is freed every acknowledged write
// reaches the replica. (test/e2e has the slave's pool full.)
func TestMasterPoolFull(t *testing.T) {
	p := newPair(t, agentpair.Options{MasterPoolSize: 64 << 20}) // zfs-fuse's smallest pool: ~27 MiB usable
	l := ackcheck.New(p.Master.Mountpoint, "w")
	writeN(t, l, 10, 4096)
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	filler, err := p.Master.Pool.CreateDataset(ctx, "filler", nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := fill(filler.Mountpoint, "fill", 1<<20, 200)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the pool: %d MiB written, then %v; want ENOSPC", n, err)
	}
	t.Logf("pool full after %d MiB of filler", n)
	// Small writes into the full pool: some may still fit in the slop.
	refused := 0
	for range 20 {
		if _, err := l.Write(8 << 10); err != nil {
			refused++
		}
	}
	t.Logf("%d of 20 writes refused by the full pool", refused)
	if refused == 0 {
		t.Fatal("no write was refused: the pool was not full")
	}
	// Acknowledged writes that cannot be snapshotted: with the master
	// stopped, free a MiB, write into it, and fill the pool again. ZFS
	// cannot snapshot them while the pool is full: the restarted master
	// reports it and retries; they replicate once space is back.
	if err := p.Master.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(filler.Mountpoint, "fill0000")); err != nil {
		t.Fatal(err)
	}
	pending := 0
	for deadline := time.Now().Add(syncTimeout); pending < 4; {
		if _, err := l.Write(8 << 10); err == nil {
			pending++
		} else if time.Now().After(deadline) {
			t.Fatalf("no write fits after freeing a MiB: %v", err)
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if _, err := fill(filler.Mountpoint, "refill", 16<<10, 1000); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the pool again: %v, want ENOSPC", err)
	}
	mark := p.Master.Log.Len()
	start(t, p.Master)
	r := waitRecord(t, p.Master, mark, syncTimeout, "the master's out-of-space report", func(r agentpair.Record) bool {
		return r.Msg() == "snapshot failed" && strings.Contains(r.Str("err"), "out of space")
	})
	t.Logf("%d acknowledged writes pending; master: %s: %s (retry in %v)", pending, r.Msg(), r.Str("err"), time.Duration(r.Num("retry_in")))
	t.Logf("master logged %d failed snapshots while full", p.Master.Log.Count(mark, msg("snapshot failed")))
	for _, n := range p.Nodes() {
		if !n.Running() {
			t.Fatalf("%s: agent exited over the full pool", n.Name)
		}
	}

	// The filler dataset has no snapshots: its files are the space.
	for _, e := range mustReadDir(t, filler.Mountpoint) {
		if err := os.Remove(filepath.Join(filler.Mountpoint, e.Name())); err != nil {
			t.Fatalf("freeing space: %v", err)
		}
	}
	// Space comes back as zfs-fuse commits the frees: retry the first write.
	deadline := time.Now().Add(syncTimeout)
	for {
		if _, err := l.Write(4096); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("writes still refused after freeing the filler: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	writeN(t, l, 10, 4096)
	waitSame(t, p, syncTimeout)
	account(t, l, p)
}

// fill writes files PREFIXNNNN of size bytes into dir until the file
// system refuses one (at most max files) and returns how many fit and the
// error.
func fill(dir, prefix string, size, max int) (int, error) {
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8) // not all zeros: zfs-fuse compresses nothing, but be sure
	}
	for i := range max {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s%04d", prefix, i)))
		if err != nil {
			return i, err
		}
		_, err = f.Write(buf)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return i, err
		}
	}
	return max, nil
}

func mustReadDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// snapshots lists a dataset's snapshots, oldest first.
func snapshots(t *testing.T, dataset string) []string {
	t.Helper()
	out, err := zfs("list", "-H", "-t", "snapshot", "-o", "name", "-s", "createtxg", "-r", dataset)
	if err != nil {
		t.Fatalf("listing snapshots of %s: %v\n%s", dataset, err, out)
	}
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, dataset+"@") {
			names = append(names, l)
		}
	}
	return names
}

func short(snap string) string { return snap[strings.IndexByte(snap, '@')+1:] }

// TestBehindTheAgentsBack: an operator destroys or rolls back snapshots by
// hand. The master's held snapshot (the replication base, or the previous
// one while the hold moves) is on the replica, and destroying it, or
// rolling back across it, is refused by ZFS. The newest replicated snapshot
// destroyed on the master, and the replica rolled back by hand, are each
// detected at the next transfer: replication resumes incrementally from an
// older common snapshot, or stops with the conflict reported; never a
// silent loss.
func TestBehindTheAgentsBack(t *testing.T) {
	p := newPair(t, agentpair.Options{})
	l := ackcheck.New(p.Master.Mountpoint, "w")
	writeN(t, l, 5, 4096)
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)
	for range 3 {
		writeN(t, l, 5, 4096)
		waitSame(t, p, syncTimeout)
	}
	// Quiet the master (no new snapshots to race with) while we look.
	if err := p.Master.Stop(); err != nil {
		t.Fatal(err)
	}
	replica := snapshots(t, p.Slave.Dataset)
	if len(replica) < 3 {
		t.Fatalf("replica holds %v: want at least three snapshots", replica)
	}
	held := heldSnapshots(t, p.Master.Dataset)
	t.Logf("master holds %v; replica has %v", held, replica)
	if len(held) == 0 {
		t.Fatal("no snapshot on the master is held")
	}
	base := held[len(held)-1]
	if !contains(replica, p.Slave.Dataset+"@"+short(base)) {
		t.Fatalf("the held snapshot %s is not on the replica", base)
	}

	t.Run("destroy the held base", func(t *testing.T) {
		out, err := zfs("destroy", base)
		if err == nil {
			t.Fatalf("zfs destroy %s succeeded", base)
		}
		t.Logf("zfs destroy %s: %s", base, out)
	})
	account(t, l, p)

	// Whatever else an operator destroys, the agents notice at the next
	// transfer: the content arrives, or a conflict is reported.
	resumed := func(t *testing.T, what string, marks [2]int) {
		t.Helper()
		writeN(t, l, 5, 4096)
		conflict := func(r agentpair.Record) bool {
			return r.Msg() == "replication stopped: conflict (not resolved automatically)"
		}
		ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
		defer cancel()
		for ctx.Err() == nil {
			if same, _, _, _ := p.Same(); same {
				r := waitRecord(t, p.Master, marks[0], syncTimeout, "replicated", msg("replicated"))
				t.Logf("after %s: %s transfer to %s", what, r.Str("kind"), r.Str("target"))
				if r.Str("kind") == "full" {
					t.Errorf("after %s the replica was resent in full", what)
				}
				account(t, l, p)
				return
			}
			if p.Master.Log.Count(marks[0], conflict) > 0 {
				r := waitRecord(t, p.Master, marks[0], time.Second, "conflict", conflict)
				t.Logf("after %s: detected, replication stopped: %s", what, r.Str("conflict"))
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("after %s: neither replicated nor a conflict reported within %v", what, syncTimeout)
	}

	t.Run("destroy the newest replicated snapshot on the master", func(t *testing.T) {
		newest := p.Master.Dataset + "@" + short(replica[len(replica)-1])
		if newest == base {
			// Held (the hold had moved before the stop): refused like the base.
			if _, err := zfs("destroy", newest); err == nil {
				t.Fatalf("zfs destroy %s succeeded", newest)
			}
			return
		}
		if out, err := zfs("destroy", newest); err != nil {
			list, _ := zfs("list", "-t", "snapshot", "-o", "name,userrefs", "-r", p.Master.Dataset)
			t.Fatalf("zfs destroy %s: %v\n%s\n%s", newest, err, out, list)
		}
		marks := [2]int{p.Master.Log.Len(), p.Slave.Log.Len()}
		start(t, p.Master)
		resumed(t, "destroying "+short(newest), marks)
	})
	t.Run("roll back the master across the base", func(t *testing.T) {
		if err := p.Master.Stop(); err != nil {
			t.Fatal(err)
		}
		// The last subtest's transfer moved the hold to a newer base.
		held := heldSnapshots(t, p.Master.Dataset)
		if len(held) == 0 {
			t.Fatal("no snapshot on the master is held")
		}
		base := held[len(held)-1]
		before := snapshots(t, p.Master.Dataset)
		out, err := zfs("rollback", "-r", before[0])
		if err == nil {
			t.Fatalf("zfs rollback -r %s succeeded across the held base %s", before[0], base)
		}
		after := snapshots(t, p.Master.Dataset)
		// zfs-fuse destroys the later snapshots that are not held before it
		// meets the held one and refuses: the rollback itself is refused,
		// the live data and the base stay.
		t.Logf("zfs rollback -r %s: %s; snapshots %d before, %d after; base %s", before[0], out, len(before), len(after), short(base))
		if !contains(after, base) {
			t.Fatalf("the base %s is gone", base)
		}
		marks := [2]int{p.Master.Log.Len(), p.Slave.Log.Len()}
		start(t, p.Master)
		resumed(t, "the refused rollback", marks)
	})
	t.Run("roll back the replica", func(t *testing.T) {
		// The slave agent is stopped so the replica is not mid-receive; the
		// rollback destroys the replica's newest snapshots.
		if err := p.Slave.Stop(); err != nil {
			t.Fatal(err)
		}
		now := snapshots(t, p.Slave.Dataset)
		to := now[len(now)-2]
		if out, err := zfs("rollback", "-r", to); err != nil {
			// When the slave stashed a divergence of its own after the
			// master's rollback (timing), the stash is a clone of a
			// snapshot the rollback would destroy: ZFS refuses, nothing
			// changes.
			if !strings.Contains(out, "clones of previous snapshots exist") {
				t.Fatalf("zfs rollback -r %s on the replica: %v\n%s", to, err, out)
			}
			if after := snapshots(t, p.Slave.Dataset); !slices.Equal(after, now) {
				t.Fatalf("refused rollback changed the replica's snapshots: %v -> %v", now, after)
			}
			t.Logf("zfs rollback -r %s refused (a stash clones a later snapshot): %s", to, out)
		}
		marks := [2]int{p.Master.Log.Len(), p.Slave.Log.Len()}
		start(t, p.Slave)
		if !p.Master.Running() {
			start(t, p.Master)
		}
		resumed(t, "rolling the replica back to "+short(to), marks)
	})
}

// heldSnapshots lists a dataset's snapshots that carry a hold, oldest
// first.
func heldSnapshots(t *testing.T, dataset string) []string {
	t.Helper()
	var held []string
	for _, s := range snapshots(t, dataset) {
		if out, err := zfs("get", "-H", "-o", "value", "userrefs", s); err != nil {
			t.Fatalf("userrefs of %s: %v\n%s", s, err, out)
		} else if out != "0" {
			held = append(held, s)
		}
	}
	return held
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hangingZFS writes a zfs stand-in for the agents: it runs the real zfs,
// except that `zfs SUBCOMMAND` hangs (until killed) while the flag file
// exists. A shell script is fine here: it is a test fixture that passes
// its arguments on unchanged ("$@"), never through a shell line.
func hangingZFS(t *testing.T, subcommand string) (bin, flag string) {
	t.Helper()
	real, err := exec.LookPath("zfs")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, flag = filepath.Join(dir, "zfs"), filepath.Join(dir, "hang")
	script := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = %s ] && [ -e %s ]; then exec sleep 3600; fi\nexec %s \"$@\"\n", subcommand, flag, real)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, flag
}

// TestZFSHangs: `zfs snapshot` hangs on the master. The agent kills it
// after --zfs-timeout, logs the timeout and retries; writes acknowledged
// meanwhile reach the replica once zfs answers again.
func TestZFSHangs(t *testing.T) {
	zfsBin, flag := hangingZFS(t, "snapshot")
	p := newPair(t, agentpair.Options{AgentArgs: []string{"--zfs", zfsBin, "--zfs-timeout", "10s"}})
	l := ackcheck.New(p.Master.Mountpoint, "w")
	writeN(t, l, 5, 4096)
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)

	mark := p.Master.Log.Len()
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	writeN(t, l, 5, 4096)
	timedOut := func(r agentpair.Record) bool {
		return r.Msg() == "snapshot failed" && strings.Contains(r.Str("err"), "timed out")
	}
	first := waitRecord(t, p.Master, mark, syncTimeout, "a snapshot that timed out", timedOut)
	t.Logf("master: %s: %s (retry in %v)", first.Msg(), first.Str("err"), time.Duration(first.Num("retry_in")))
	// Retried, and it times out again while zfs still hangs.
	for deadline := time.Now().Add(syncTimeout); p.Master.Log.Count(mark, timedOut) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("no second timed-out snapshot within %v", syncTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !p.Master.Running() {
		t.Fatal("the master agent exited over a hung zfs")
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p, syncTimeout)
	account(t, l, p)
}
