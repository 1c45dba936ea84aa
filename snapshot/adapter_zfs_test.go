package snapshot

// Tests of the adapter against real ZFS: zfs-fuse pools on sparse files on
// this host, and, run by TestOpenZFSInGuest, OpenZFS 2.3 in a qemu guest.
// The same tests run on both; what a dialect lacks is asserted as
// ErrUnsupported with no command run, and what only OpenZFS has runs there.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
)

// testPool creates a pool on a sparse file for the test and destroys it at
// cleanup (plain `zpool destroy`, retried while busy: never forced).
func testPool(t *testing.T, size int64) *rig.Pool {
	t.Helper()
	testutil.RequireRoot(t)
	if os.Getenv(kernelZFSEnv) == "" {
		return rigtest.Pool(t, rig.PoolOptions{Size: size})
	}
	p, err := rig.CreatePool(context.Background(), rig.PoolOptions{Size: size, Logger: rigtest.Logger(t)})
	if err != nil {
		t.Fatalf("creating pool: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("destroying pool %s: %v", p.Name, err)
		}
	})
	return p
}

// execRecorder is a slog handler that keeps the argument lists of the zfs
// commands the CLI logs, so tests can count real executions.
type execRecorder struct {
	slog.Handler
	mu   *sync.Mutex
	cmds *[]string
}

func (h execRecorder) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "zfs command" || r.Message == "zfs stream" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "args" {
				h.mu.Lock()
				*h.cmds = append(*h.cmds, fmt.Sprint(a.Value.Any()))
				h.mu.Unlock()
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, r)
}

func (h execRecorder) WithAttrs(a []slog.Attr) slog.Handler {
	return execRecorder{h.Handler.WithAttrs(a), h.mu, h.cmds}
}

func (h execRecorder) WithGroup(n string) slog.Handler {
	return execRecorder{h.Handler.WithGroup(n), h.mu, h.cmds}
}

type execs struct {
	mu   sync.Mutex
	cmds []string
}

// since returns the commands run after the first n.
func (e *execs) since(n int) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.cmds[n:])
}

func (e *execs) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.cmds)
}

// testZFS detects the dialect and returns the adapter with its exec record.
func testZFS(t *testing.T) (*ZFS, *execs) {
	t.Helper()
	testutil.RequireRoot(t)
	e := &execs{}
	log := slog.New(execRecorder{testLog(t).Handler(), &e.mu, &e.cmds})
	z, err := New(context.Background(), NewCLI("", "", log), log)
	testutil.RequireNoError(t, "detecting the zfs dialect", err)
	t.Logf("dialect %+v", z.Dialect())
	return z, e
}

// writeRandom writes size random bytes to dir/name (closed at return, so
// the pool is not kept busy).
func writeRandom(t *testing.T, dir, name string, size int) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// treeSums maps each regular file under dir to its sha256.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		sums[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func equalSums(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, what string, err error, kinds ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, kinds)
	}
	for _, k := range kinds {
		if !errors.Is(err, k) {
			t.Fatalf("%s: %v; want errors.Is %v", what, err, k)
		}
	}
}

// mountpoint returns where a dataset is mounted.
func mountpoint(t *testing.T, z *ZFS, ds string) string {
	t.Helper()
	mp, mounted, err := z.Mountpoint(context.Background(), ds)
	mustOK(t, "mountpoint of "+ds, err)
	if !mounted {
		t.Fatalf("%s is not mounted", ds)
	}
	return mp
}

func nameList(snaps []Snapshot) []string {
	names := make([]string, len(snaps))
	for i, s := range snaps {
		names[i] = s.Name
	}
	return names
}

// streamOf sends snapshot into memory (test streams are a few MiB).
func streamOf(t *testing.T, z *ZFS, snapshot string, opts SendOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := z.Send(context.Background(), snapshot, &buf, opts)
	mustOK(t, "send "+snapshot, err)
	if n != int64(buf.Len()) || n == 0 {
		t.Fatalf("send %s: reported %d bytes, wrote %d", snapshot, n, buf.Len())
	}
	return buf.Bytes()
}

// TestZFSAdapter runs every operation against two real pools.
func TestZFSAdapter(t *testing.T) {
	p1 := testPool(t, 256<<20)
	p2 := testPool(t, 256<<20)
	z, ex := testZFS(t)
	f := z.Dialect().Features
	ctx := context.Background()

	t.Run("datasets", func(t *testing.T) {
		ds := p1.Name + "/props"
		mustOK(t, "create", z.CreateDataset(ctx, ds, CreateOptions{Properties: map[string]string{
			"flocker:epoch": "7", "canmount": "on", "atime": "off",
		}}))
		wantErr(t, "create again", z.CreateDataset(ctx, ds, CreateOptions{}), ErrExists)
		wantErr(t, "create without parent", z.CreateDataset(ctx, p1.Name+"/nope/x", CreateOptions{}), ErrNotFound)
		mustOK(t, "create with parents", z.CreateDataset(ctx, p1.Name+"/deep/er/x", CreateOptions{Parents: true}))

		got, err := z.GetProperties(ctx, ds, "flocker:epoch", "readonly", "canmount", "atime", "flocker:unset", "used")
		mustOK(t, "get", err)
		if got["flocker:epoch"] != (Property{"7", "local"}) || got["atime"].Value != "off" || got["readonly"].Value != "off" || got["flocker:unset"].IsSet() {
			t.Errorf("properties %+v", got)
		}
		if ro, err := got["readonly"].On(); ro || err != nil {
			t.Errorf("readonly.On() = %v, %v", ro, err)
		}
		if used, err := got["used"].Uint(); used == 0 || err != nil {
			t.Errorf("used = %d, %v (want parsable bytes)", used, err)
		}
		_, err = z.GetProperties(ctx, p1.Name+"/missing", "used")
		wantErr(t, "get of a missing dataset", err, ErrNotFound)
		var ze *ZFSError
		if !errors.As(err, &ze) || ze.Name != p1.Name+"/missing" || ze.Op != "get properties" {
			t.Errorf("error should name the dataset: %#v", err)
		}

		n := ex.count()
		mustOK(t, "set", z.SetProperties(ctx, ds, map[string]string{"readonly": "on", "flocker:epoch": "8", "flocker:role": "slave"}))
		if want := map[bool]int{true: 1, false: 3}[f.SetMultiple]; len(ex.since(n)) != want {
			t.Errorf("set of 3 properties ran %v, want %d command(s)", ex.since(n), want)
		}
		got, err = z.GetProperties(ctx, ds, "readonly", "flocker:epoch", "flocker:role")
		mustOK(t, "get after set", err)
		if got["flocker:epoch"].Value != "8" || got["flocker:role"].Value != "slave" {
			t.Errorf("after set: %+v", got)
		}
		switch ro := got["readonly"]; {
		case ro == Property{"on", "local"}:
		case ro == Property{"off", "temporary"} && z.Dialect().Name == DialectZFSFuse:
			// zfs-fuse reports the FUSE mount's rw (see GetProperties);
			// the property must still be enforced.
			err := os.WriteFile(filepath.Join(mountpoint(t, z, ds), "x"), nil, 0o644)
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("readonly=on but a write gave %v, want EROFS", err)
			}
		default:
			t.Errorf("readonly after set: %+v", ro)
		}
		wantErr(t, "set a bad value", z.SetProperty(ctx, ds, "readonly", "maybe"), ErrBadProperty)
		mustOK(t, "inherit", z.InheritProperty(ctx, ds, "flocker:role"))
		if p, err := z.GetProperty(ctx, ds, "flocker:role"); err != nil || p.IsSet() {
			t.Errorf("after inherit: %+v %v", p, err)
		}
		mustOK(t, "readonly off", z.SetProperty(ctx, ds, "readonly", "off"))

		for name, want := range map[string]bool{ds: true, p1.Name: true, ds + "x": false, p1.Name + "/nope/x": false} {
			if ok, err := z.Exists(ctx, name); ok != want || err != nil {
				t.Errorf("Exists(%s) = %v, %v; want %v", name, ok, err, want)
			}
		}

		mp := mountpoint(t, z, ds)
		if mp != p1.Mountpoint+"/props" {
			t.Errorf("mountpoint %q, want %q", mp, p1.Mountpoint+"/props")
		}
		mustOK(t, "mkdir", os.MkdirAll(filepath.Join(mp, "a", "b"), 0o755))
		writeRandom(t, mp, "a/b/file", 1000)
		m, err := DatasetForPath(filepath.Join(mp, "a", "b", "file"))
		if err != nil || m.Dataset != ds || m.Mountpoint != mp {
			t.Errorf("DatasetForPath = %+v, %v; want %s at %s", m, err, ds, mp)
		}
		if m, err := DatasetForPath(p1.Mountpoint); err != nil || m.Dataset != p1.Name {
			t.Errorf("DatasetForPath(pool root) = %+v, %v", m, err)
		}

		mustOK(t, "unmount", z.Unmount(ctx, ds))
		wantErr(t, "unmount again", z.Unmount(ctx, ds), ErrNotMounted)
		if _, mounted, err := z.Mountpoint(ctx, ds); mounted || err != nil {
			t.Errorf("after unmount: mounted %v, %v", mounted, err)
		}
		mustOK(t, "mount", z.Mount(ctx, ds))
		wantErr(t, "mount again", z.Mount(ctx, ds), ErrMounted)

		// Renaming a mounted file system into a new parent (zfs-fuse may
		// refuse while mounted; Rename then unmounts and remounts).
		moved := p1.Name + "/stash/props-7"
		mustOK(t, "rename", z.Rename(ctx, ds, moved, RenameOptions{Parents: true}))
		if ok, _ := z.Exists(ctx, ds); ok {
			t.Errorf("%s still exists after the rename", ds)
		}
		if sums := treeSums(t, mountpoint(t, z, moved)); len(sums) != 1 || sums["a/b/file"] == "" {
			t.Errorf("after rename the file is not at the new mountpoint: %v", sums)
		}
		wantErr(t, "rename onto an existing dataset", z.Rename(ctx, moved, p1.Name+"/deep", RenameOptions{}), ErrExists)

		// Clone and promote, the stash's tools.
		mustOK(t, "snapshot", z.Snapshot(ctx, moved+"@base"))
		clone := p1.Name + "/clone"
		mustOK(t, "clone", z.Clone(ctx, moved+"@base", clone, map[string]string{"flocker:stash": "yes"}))
		// No parents are made (go-zfs's clone passes -p: the adapter checks).
		wantErr(t, "clone into a missing parent", z.Clone(ctx, moved+"@base", p1.Name+"/nope/clone", nil), ErrNotFound)
		if ok, err := z.Exists(ctx, p1.Name+"/nope"); ok || err != nil {
			t.Errorf("a refused clone made its parent: %v %v", ok, err)
		}
		if p, err := z.GetProperty(ctx, clone, "origin"); err != nil || p.Value != moved+"@base" {
			t.Errorf("clone origin %+v %v", p, err)
		}
		wantErr(t, "destroy the origin snapshot", z.DestroySnapshots(ctx, moved+"@base"), ErrHasDependents)
		mustOK(t, "promote", z.Promote(ctx, clone))
		if p, err := z.GetProperty(ctx, moved, "origin"); err != nil || p.Value != clone+"@base" {
			t.Errorf("after promote, the former origin's origin is %+v %v; want %s@base", p, err, clone)
		}
		wantErr(t, "destroy with snapshots, not recursive", z.DestroyDataset(ctx, clone, DestroyOptions{}), ErrHasDependents)
		mustOK(t, "destroy the former origin", z.DestroyDataset(ctx, moved, DestroyOptions{}))
		mustOK(t, "destroy recursive", z.DestroyDataset(ctx, clone, DestroyOptions{Recursive: true}))
		if ok, _ := z.Exists(ctx, clone); ok {
			t.Error("clone still exists after a recursive destroy")
		}
		wantErr(t, "destroy a missing dataset", z.DestroyDataset(ctx, clone, DestroyOptions{}), ErrNotFound)
	})

	t.Run("snapshots", func(t *testing.T) {
		a, b := p1.Name+"/snap-a", p1.Name+"/snap-b"
		mustOK(t, "create a", z.CreateDataset(ctx, a, CreateOptions{}))
		mustOK(t, "create b", z.CreateDataset(ctx, b, CreateOptions{}))
		mustOK(t, "create a child", z.CreateDataset(ctx, a+"/child", CreateOptions{}))
		mustOK(t, "child snapshot", z.Snapshot(ctx, a+"/child@c1"))
		before := time.Now().Add(-2 * time.Second)
		writeRandom(t, mountpoint(t, z, a), "f1", 4096)
		n := ex.count()
		mustOK(t, "snapshot three", z.Snapshot(ctx, a+"@flocker-1-1", b+"@flocker-1-1", a+"@flocker-1-2"))
		// OpenZFS takes one snapshot per dataset per command: a@1 and b@1
		// together, then a@2.
		if want := map[bool]int{true: 2, false: 3}[f.MultiSnapshot]; len(ex.since(n)) != want {
			t.Errorf("snapshot of 3 ran %v, want %d command(s)", ex.since(n), want)
		}
		wantErr(t, "snapshot exists", z.Snapshot(ctx, a+"@flocker-1-1"), ErrExists)
		wantErr(t, "snapshot of a missing dataset", z.Snapshot(ctx, p1.Name+"/none@s"), ErrNotFound)

		n = ex.count()
		snaps, err := z.ListSnapshots(ctx, a)
		mustOK(t, "list", err)
		if len(ex.since(n)) != 1 {
			t.Errorf("list ran %v, want one command", ex.since(n))
		}
		if got := nameList(snaps); !slices.Equal(got, []string{a + "@flocker-1-1", a + "@flocker-1-2"}) {
			t.Fatalf("snapshots of %s: %v (children's and other datasets' must not be listed)", a, got)
		}
		for i, s := range snaps {
			if s.GUID == 0 || s.CreateTXG == 0 || s.Creation.Before(before) || s.Creation.After(time.Now().Add(2*time.Second)) {
				t.Errorf("snapshot %d: %+v", i, s)
			}
			if i > 0 && s.CreateTXG < snaps[i-1].CreateTXG {
				t.Errorf("not ordered by createtxg: %+v", snaps)
			}
		}
		if snaps[0].GUID == snaps[1].GUID {
			t.Error("two snapshots share a GUID")
		}
		got, err := z.GetSnapshots(ctx, a+"@flocker-1-2", a+"@flocker-1-1")
		mustOK(t, "get snapshots", err)
		if len(got) != 2 || got[0] != snaps[1] || got[1] != snaps[0] {
			t.Errorf("GetSnapshots = %+v, want %+v reversed", got, snaps)
		}
		if empty, err := z.ListSnapshots(ctx, b+"/none"); err == nil || len(empty) != 0 {
			t.Errorf("list of a missing dataset: %v %v", empty, err)
		}

		// A batch destroy with one held snapshot: the held one stays, the
		// others go, and the error names the held one.
		mustOK(t, "hold", z.Hold(ctx, "flocker", a+"@flocker-1-1"))
		n = ex.count()
		err = z.DestroySnapshots(ctx, a+"@flocker-1-1", a+"@flocker-1-2", b+"@flocker-1-1")
		wantErr(t, "destroy with a held snapshot", err, ErrBusy)
		if f.DestroySnapshotList && !errors.Is(err, ErrHeld) {
			t.Errorf("OpenZFS says the snapshot is held: %v", err)
		}
		var ze *ZFSError
		if !errors.As(err, &ze) || ze.Name != a+"@flocker-1-1" || strings.Count(err.Error(), "\n") != 0 {
			t.Errorf("one error, naming the held snapshot: %v", err)
		}
		// zfs-fuse: one per snapshot. OpenZFS: a@1,2 refused as a whole,
		// then a@1 and a@2 alone, then b@1.
		if want := map[bool]int{true: 4, false: 3}[f.DestroySnapshotList]; len(ex.since(n)) != want {
			t.Errorf("destroy of 3 snapshots in 2 datasets ran %v, want %d command(s)", ex.since(n), want)
		}
		snaps, err = z.ListSnapshots(ctx, a)
		mustOK(t, "list after destroy", err)
		if got := nameList(snaps); !slices.Equal(got, []string{a + "@flocker-1-1"}) {
			t.Errorf("after the destroy %s has %v, want only the held snapshot", a, got)
		}
		if bs, _ := z.ListSnapshots(ctx, b); len(bs) != 0 {
			t.Errorf("%s still has %v", b, nameList(bs))
		}
		mustOK(t, "release", z.Release(ctx, "flocker", a+"@flocker-1-1"))
		mustOK(t, "destroy after release", z.DestroySnapshots(ctx, a+"@flocker-1-1"))
		wantErr(t, "destroy a missing snapshot", z.DestroySnapshots(ctx, a+"@flocker-1-1"), ErrNotFound)
	})

	t.Run("holds", func(t *testing.T) {
		ds := p1.Name + "/holds"
		mustOK(t, "create", z.CreateDataset(ctx, ds, CreateOptions{}))
		mustOK(t, "snapshots", z.Snapshot(ctx, ds+"@s1", ds+"@s2", ds+"@s3"))
		mustOK(t, "hold two", z.Hold(ctx, "flocker", ds+"@s1", ds+"@s2"))
		mustOK(t, "operator's hold", z.Hold(ctx, "operator", ds+"@s2"))
		wantErr(t, "hold again", z.Hold(ctx, "flocker", ds+"@s1"), ErrHoldExists)
		wantErr(t, "hold a missing snapshot", z.Hold(ctx, "flocker", ds+"@nope"), ErrNotFound)
		wantErr(t, "destroy a held snapshot", z.DestroySnapshots(ctx, ds+"@s2"), ErrBusy)

		n := ex.count()
		held, err := z.Holds(ctx, ds)
		mustOK(t, "holds", err)
		if want := map[bool]int{true: 2, false: 1}[f.HoldsList]; len(ex.since(n)) != want {
			t.Errorf("holds ran %v, want %d command(s)", ex.since(n), want)
		}
		want := []SnapshotHolds{{Snapshot: ds + "@s1", Count: 1}, {Snapshot: ds + "@s2", Count: 2}}
		if f.HoldsList {
			want[0].Tags, want[1].Tags = []string{"flocker"}, []string{"flocker", "operator"}
		}
		if fmt.Sprint(held) != fmt.Sprint(want) || (held[0].Tags == nil) != !f.HoldsList {
			t.Errorf("holds %+v, want %+v", held, want)
		}
		wantErr(t, "release a tag that is not there", z.Release(ctx, "flocker", ds+"@s3"), ErrNoSuchHold)
		mustOK(t, "release", z.Release(ctx, "flocker", ds+"@s1", ds+"@s2"))
		mustOK(t, "release operator's", z.Release(ctx, "operator", ds+"@s2"))
		if held, err := z.Holds(ctx, ds); err != nil || len(held) != 0 {
			t.Errorf("after release: %+v %v", held, err)
		}
	})

	t.Run("rollback", func(t *testing.T) {
		ds := p1.Name + "/rb"
		mustOK(t, "create", z.CreateDataset(ctx, ds, CreateOptions{}))
		mp := mountpoint(t, z, ds)
		writeRandom(t, mp, "kept", 1000)
		mustOK(t, "s1", z.Snapshot(ctx, ds+"@s1"))
		writeRandom(t, mp, "discarded", 1000)
		mustOK(t, "rollback to the newest", z.Rollback(ctx, ds+"@s1"))
		if _, err := os.Stat(filepath.Join(mp, "discarded")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a file written after s1 survived the rollback: %v", err)
		}
		mustOK(t, "s2 s3", z.Snapshot(ctx, ds+"@s2", ds+"@s3"))
		wantErr(t, "rollback past newer snapshots", z.Rollback(ctx, ds+"@s1"), ErrNewerSnapshots)
		wantErr(t, "rollback destroying fewer than it would", z.RollbackDestroying(ctx, ds+"@s1", []string{ds + "@s2"}), ErrNewerSnapshots)
		if snaps, _ := z.ListSnapshots(ctx, ds); len(snaps) != 3 {
			t.Fatalf("a refused rollback changed the snapshots: %v", nameList(snaps))
		}
		mustOK(t, "rollback destroying s2 and s3", z.RollbackDestroying(ctx, ds+"@s1", []string{ds + "@s3", ds + "@s2"}))
		if snaps, _ := z.ListSnapshots(ctx, ds); !slices.Equal(nameList(snaps), []string{ds + "@s1"}) {
			t.Errorf("after the rollback: %v", nameList(snaps))
		}
		if sums := treeSums(t, mp); len(sums) != 1 || sums["kept"] == "" {
			t.Errorf("after the rollback the files are %v", sums)
		}
		wantErr(t, "rollback to a missing snapshot", z.RollbackDestroying(ctx, ds+"@nope", nil), ErrNotFound)
	})

	t.Run("send_receive", func(t *testing.T) {
		src, dst := p1.Name+"/app", p2.Name+"/replica"
		mustOK(t, "create", z.CreateDataset(ctx, src, CreateOptions{}))
		mp := mountpoint(t, z, src)
		writeRandom(t, mp, "f1", 3<<20)
		writeRandom(t, mp, "f2", 100<<10)
		mustOK(t, "s1", z.Snapshot(ctx, src+"@s1"))
		want1 := treeSums(t, mp)

		// Full, straight from send to receive through a pipe, as over the wire.
		pr, pw := io.Pipe()
		sent := make(chan error, 1)
		var sentBytes int64
		go func() {
			var err error
			sentBytes, err = z.Send(ctx, src+"@s1", pw, SendOptions{})
			pw.CloseWithError(err)
			sent <- err
		}()
		// A replica must not change between receives (even an atime update
		// makes the next incremental fail): received unmounted where the
		// dialect can, made readonly, then mounted.
		opts := ReceiveOptions{NoMount: f.ReceiveNoMount}
		if f.ReceiveProperties {
			opts.Properties = map[string]string{"readonly": "on"}
		}
		got, err := z.Receive(ctx, dst, pr, opts)
		mustOK(t, "receive full", err)
		mustOK(t, "send full", <-sent)
		if got != sentBytes || got < 3<<20 {
			t.Errorf("received %d bytes, sent %d", got, sentBytes)
		}
		if _, mounted, err := z.Mountpoint(ctx, dst); err != nil || mounted != !f.ReceiveNoMount {
			t.Errorf("after receive (-u: %v): mounted %v, %v", f.ReceiveNoMount, mounted, err)
		}
		if !f.ReceiveProperties {
			mustOK(t, "readonly", z.SetProperty(ctx, dst, "readonly", "on"))
		}
		if f.ReceiveNoMount {
			mustOK(t, "mount the replica", z.Mount(ctx, dst))
		}
		if sums := treeSums(t, mountpoint(t, z, dst)); !equalSums(sums, want1) {
			t.Errorf("replica after s1: %v, want %v", sums, want1)
		}

		// Incremental, with an intermediate snapshot carried by -I.
		writeRandom(t, mp, "f3", 1<<20)
		mustOK(t, "s2", z.Snapshot(ctx, src+"@s2"))
		mustOK(t, "rm", os.Remove(filepath.Join(mp, "f2")))
		writeRandom(t, mp, "f1", 2<<20)
		mustOK(t, "s3", z.Snapshot(ctx, src+"@s3"))
		want3 := treeSums(t, mp)
		stream := streamOf(t, z, src+"@s3", SendOptions{From: src + "@s1", Intermediates: true})
		if _, err := z.Receive(ctx, dst, bytes.NewReader(stream), ReceiveOptions{}); err != nil {
			t.Fatalf("receive incremental: %v", err)
		}
		if sums := treeSums(t, mountpoint(t, z, dst)); !equalSums(sums, want3) {
			t.Errorf("replica after s3: %v, want %v", sums, want3)
		}
		srcSnaps, _ := z.ListSnapshots(ctx, src)
		dstSnaps, _ := z.ListSnapshots(ctx, dst)
		if len(srcSnaps) != 3 || len(dstSnaps) != 3 {
			t.Fatalf("snapshots: source %v, replica %v", nameList(srcSnaps), nameList(dstSnaps))
		}
		for i := range srcSnaps {
			if srcSnaps[i].GUID != dstSnaps[i].GUID || srcSnaps[i].ShortName() != dstSnaps[i].ShortName() {
				t.Errorf("snapshot %d: source %+v, replica %+v (GUIDs must match)", i, srcSnaps[i], dstSnaps[i])
			}
		}
		if plan := PlanReplication(srcSnaps, dstSnaps); plan.Action != ActNothing {
			t.Errorf("planner on the real lists: %v, want nothing to do", plan)
		}

		_, err = z.Receive(ctx, dst, bytes.NewReader(streamOf(t, z, src+"@s1", SendOptions{})), ReceiveOptions{})
		wantErr(t, "receive a full stream onto the replica", err, ErrExists)
		_, err = z.Send(ctx, src+"@s1", io.Discard, SendOptions{From: src + "@s3"})
		wantErr(t, "send from a later snapshot", err, ErrNotEarlier)
		_, err = z.Send(ctx, src+"@nope", io.Discard, SendOptions{})
		wantErr(t, "send a missing snapshot", err, ErrNotFound)

		// An incremental from a snapshot the replica does not have. (From
		// one it has but that is not its newest, OpenZFS says "modified
		// since most recent snapshot", zfs-fuse "does not match".)
		mustOK(t, "s4", z.Snapshot(ctx, src+"@s4"))
		mustOK(t, "s5", z.Snapshot(ctx, src+"@s5"))
		stale := streamOf(t, z, src+"@s5", SendOptions{From: src + "@s4"})
		_, err = z.Receive(ctx, dst, bytes.NewReader(stale), ReceiveOptions{})
		wantErr(t, "receive an incremental from s4 onto s3", err, ErrIncrementalMismatch)
		var ze *ZFSError
		if !errors.As(err, &ze) || ze.Name != dst {
			t.Errorf("mismatch should name the replica: %v", err)
		}

		// A replica written to refuses the next incremental.
		next := streamOf(t, z, src+"@s4", SendOptions{From: src + "@s3"})
		mustOK(t, "replica writable", z.SetProperty(ctx, dst, "readonly", "off"))
		writeRandom(t, mountpoint(t, z, dst), "local-change", 1000)
		_, err = z.Receive(ctx, dst, bytes.NewReader(next), ReceiveOptions{})
		wantErr(t, "receive onto a modified replica", err, ErrDestinationModified)
		mustOK(t, "discard the change", z.Rollback(ctx, dst+"@s3"))
		mustOK(t, "readonly again", z.SetProperty(ctx, dst, "readonly", "on"))
		_, err = z.Receive(ctx, dst, bytes.NewReader(next), ReceiveOptions{})
		mustOK(t, "receive after the rollback", err)
	})

	t.Run("bad_streams", func(t *testing.T) {
		src := p1.Name + "/bad"
		mustOK(t, "create", z.CreateDataset(ctx, src, CreateOptions{}))
		mp := mountpoint(t, z, src)
		writeRandom(t, mp, "f1", 2<<20)
		mustOK(t, "s1", z.Snapshot(ctx, src+"@s1"))
		writeRandom(t, mp, "f2", 2<<20)
		mustOK(t, "s2", z.Snapshot(ctx, src+"@s2"))
		full := streamOf(t, z, src+"@s1", SendOptions{})
		incr := streamOf(t, z, src+"@s2", SendOptions{From: src + "@s1"})
		flip := func(b []byte) []byte {
			c := bytes.Clone(b)
			for i := len(c) / 2; i < len(c)/2+512; i++ {
				c[i] ^= 0xff
			}
			return c
		}
		errBoom := errors.New("connection reset by the test")

		dst := p2.Name + "/bad"
		for name, r := range map[string]io.Reader{
			"truncated": bytes.NewReader(full[:len(full)/2]),
			"corrupted": bytes.NewReader(flip(full)),
			"empty":     bytes.NewReader(nil),
			"garbage":   bytes.NewReader(bytes.Repeat([]byte("not a stream "), 1000)),
			"failing":   io.MultiReader(bytes.NewReader(full[:len(full)/2]), iotestErrReader{errBoom}),
		} {
			_, err := z.Receive(ctx, dst, r, ReceiveOptions{})
			wantErr(t, "full "+name, err, ErrBadStream)
			if name == "failing" && !errors.Is(err, errBoom) {
				t.Errorf("the reader's error is missing: %v", err)
			}
			if ok, err := z.Exists(ctx, dst); ok || err != nil {
				t.Fatalf("after a %s full stream %s exists (%v): a half-received dataset", name, dst, err)
			}
		}

		mustOK(t, "receive s1", func() error { _, err := z.Receive(ctx, dst, bytes.NewReader(full), ReceiveOptions{}); return err }())
		mustOK(t, "readonly", z.SetProperty(ctx, dst, "readonly", "on"))
		before, _ := z.ListSnapshots(ctx, dst)
		for name, r := range map[string]io.Reader{
			"truncated": bytes.NewReader(incr[:len(incr)/2]),
			"corrupted": bytes.NewReader(flip(incr)),
		} {
			_, err := z.Receive(ctx, dst, r, ReceiveOptions{})
			wantErr(t, "incremental "+name, err, ErrBadStream)
			after, _ := z.ListSnapshots(ctx, dst)
			if !slices.Equal(after, before) {
				t.Fatalf("after a %s incremental the replica's snapshots changed: %v", name, nameList(after))
			}
		}
		_, err := z.Receive(ctx, dst, bytes.NewReader(incr), ReceiveOptions{})
		mustOK(t, "the intact incremental after the bad ones", err)
	})

	t.Run("cancel", func(t *testing.T) {
		src := p1.Name + "/cancel"
		mustOK(t, "create", z.CreateDataset(ctx, src, CreateOptions{}))
		writeRandom(t, mountpoint(t, z, src), "f1", 4<<20)
		mustOK(t, "s1", z.Snapshot(ctx, src+"@s1"))
		full := streamOf(t, z, src+"@s1", SendOptions{})

		// A receive whose peer stalls halfway, cancelled: it returns, and
		// nothing of the new dataset is left.
		dst := p2.Name + "/cancel"
		pr, pw := io.Pipe()
		defer pw.Close()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := z.Receive(rctx, dst, pr, ReceiveOptions{})
			done <- err
		}()
		if _, err := pw.Write(full[:len(full)/2]); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-done:
			wantErr(t, "cancelled receive", err, context.Canceled)
		case <-time.After(2 * defaultStreamKillDelay):
			t.Fatal("a cancelled receive did not return")
		}
		if ok, err := z.Exists(ctx, dst); ok || err != nil {
			t.Errorf("after a cancelled receive %s exists (%v)", dst, err)
		}

		// A send whose writer fails: zfs stops, the writer's error is returned.
		errFull := errors.New("peer gone")
		n, err := z.Send(ctx, src+"@s1", &failingWriter{after: 1 << 20, err: errFull}, SendOptions{})
		wantErr(t, "send into a failing writer", err, errFull)
		if n < 1<<20 || n > int64(len(full)) {
			t.Errorf("send reported %d bytes into a writer that failed after %d", n, 1<<20)
		}
		if pids := zfsProcesses(t, "send", src+"@s1"); len(pids) != 0 {
			t.Errorf("zfs send still running after Send returned: %v", pids)
		}

		// A send cancelled while its reader is slow.
		sctx, scancel := context.WithCancel(ctx)
		spr, spw := io.Pipe()
		sdone := make(chan error, 1)
		go func() {
			_, err := z.Send(sctx, src+"@s1", spw, SendOptions{})
			sdone <- err
		}()
		if _, err := io.ReadFull(spr, make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		scancel()
		select {
		case err := <-sdone:
			wantErr(t, "cancelled send", err, context.Canceled)
		case <-time.After(2 * defaultStreamKillDelay):
			t.Fatal("a cancelled send did not return")
		}
		spr.Close()
	})

	t.Run("backpressure", func(t *testing.T) {
		src := p1.Name + "/bp"
		mustOK(t, "create", z.CreateDataset(ctx, src, CreateOptions{}))
		writeRandom(t, mountpoint(t, z, src), "big", 16<<20)
		mustOK(t, "s1", z.Snapshot(ctx, src+"@s1"))
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		var n int64
		go func() {
			var err error
			n, err = z.Send(ctx, src+"@s1", pw, SendOptions{})
			pw.CloseWithError(err)
			done <- err
		}()
		if _, err := io.ReadFull(pr, make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		// The reader pauses: zfs must wait for it (pipe back-pressure), not
		// finish into a buffer.
		time.Sleep(time.Second)
		if pids := zfsProcesses(t, "send", src+"@s1"); len(pids) != 1 {
			t.Errorf("while the reader paused, zfs send processes: %v, want one still running", pids)
		}
		select {
		case err := <-done:
			t.Fatalf("Send finished while its reader paused after 1 MiB of 16: %v", err)
		default:
		}
		rest, err := io.Copy(io.Discard, pr)
		mustOK(t, "read the rest", err)
		mustOK(t, "send", <-done)
		if n != rest+1<<20 || n < 16<<20 {
			t.Errorf("send reported %d bytes, the reader got %d", n, rest+1<<20)
		}
	})

	t.Run("pools", func(t *testing.T) {
		pools, err := z.Pools(ctx)
		mustOK(t, "pools", err)
		found := 0
		for _, p := range pools {
			if p.Name == p1.Name || p.Name == p2.Name {
				found++
				if p.Health != "ONLINE" {
					t.Errorf("pool %+v", p)
				}
			}
		}
		if found != 2 {
			t.Errorf("pools %+v lack %s and %s", pools, p1.Name, p2.Name)
		}
		s, err := z.Space(ctx, p1.Name)
		if err != nil || s.Available == 0 || s.Used == 0 || s.Available > 256<<20 {
			t.Errorf("space of %s: %+v %v", p1.Name, s, err)
		}
	})

	// What only some dialects have: run where detected, asserted absent
	// (ErrUnsupported, nothing run) elsewhere.
	t.Run("written", func(t *testing.T) {
		ds := p1.Name + "/written"
		mustOK(t, "create", z.CreateDataset(ctx, ds, CreateOptions{}))
		mustOK(t, "s1", z.Snapshot(ctx, ds+"@s1"))
		if !f.WrittenProperty {
			n := ex.count()
			h, err := z.Head(ctx, ds)
			_, werr := z.Written(ctx, ds)
			if h != HeadUnknown || err != nil || !errors.Is(werr, ErrUnsupported) || ex.count() != n {
				t.Errorf("without written: head %v %v, written %v, ran %v", h, err, werr, ex.since(n))
			}
			return
		}
		if w, err := z.Written(ctx, ds); w != 0 || err != nil {
			t.Errorf("written right after a snapshot: %d %v", w, err)
		}
		if h, err := z.Head(ctx, ds); h != HeadClean || err != nil {
			t.Errorf("head right after a snapshot: %v %v", h, err)
		}
		writeRandom(t, mountpoint(t, z, ds), "f", 1<<20)
		// The written property counts what reached disk: wait for the txg.
		deadline := time.Now().Add(30 * time.Second)
		for {
			w, err := z.Written(ctx, ds)
			mustOK(t, "written", err)
			if w > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("written stayed 0 after a 1 MiB write")
			}
			time.Sleep(200 * time.Millisecond)
		}
		if h, err := z.Head(ctx, ds); h != HeadChanged || err != nil {
			t.Errorf("head after a write: %v %v", h, err)
		}
	})

	t.Run("estimate", func(t *testing.T) {
		ds := p1.Name + "/estimate"
		mustOK(t, "create", z.CreateDataset(ctx, ds, CreateOptions{}))
		writeRandom(t, mountpoint(t, z, ds), "f", 4<<20)
		mustOK(t, "s1", z.Snapshot(ctx, ds+"@s1"))
		writeRandom(t, mountpoint(t, z, ds), "g", 2<<20)
		mustOK(t, "s2", z.Snapshot(ctx, ds+"@s2"))
		if !f.SendDryRunParsable {
			n := ex.count()
			_, err := z.EstimateSend(ctx, ds+"@s1", SendOptions{})
			if !errors.Is(err, ErrUnsupported) || ex.count() != n {
				t.Errorf("estimate without send -nP: %v, ran %v", err, ex.since(n))
			}
			return
		}
		for _, o := range []SendOptions{{}, {From: ds + "@s1"}} {
			snap := map[bool]string{true: ds + "@s1", false: ds + "@s2"}[o.From == ""]
			est, err := z.EstimateSend(ctx, snap, o)
			mustOK(t, "estimate", err)
			actual, err := z.Send(ctx, snap, io.Discard, o)
			mustOK(t, "send", err)
			// -nP estimates from block counts, the stream adds headers.
			if est <= 0 || est < actual/2 || est > actual*2 {
				t.Errorf("estimate %d for a stream of %d bytes (%+v)", est, actual, o)
			}
			t.Logf("estimate %d, actual %d (%+v)", est, actual, o)
		}
	})

	t.Run("bookmarks", func(t *testing.T) {
		src, dst := p1.Name+"/bm", p2.Name+"/bm"
		mustOK(t, "create", z.CreateDataset(ctx, src, CreateOptions{}))
		mustOK(t, "s1", z.Snapshot(ctx, src+"@s1"))
		if !f.Bookmarks {
			n := ex.count()
			_, lerr := z.ListBookmarks(ctx, src)
			if err := z.CreateBookmark(ctx, src+"@s1", src+"#b1"); !errors.Is(err, ErrUnsupported) || !errors.Is(lerr, ErrUnsupported) || ex.count() != n {
				t.Errorf("bookmarks without the feature: %v %v, ran %v", err, lerr, ex.since(n))
			}
			return
		}
		mustOK(t, "bookmark", z.CreateBookmark(ctx, src+"@s1", src+"#b1"))
		wantErr(t, "bookmark again", z.CreateBookmark(ctx, src+"@s1", src+"#b1"), ErrExists)
		wantErr(t, "bookmark of a missing snapshot", z.CreateBookmark(ctx, src+"@nope", src+"#b9"), ErrNotFound)
		marks, err := z.ListBookmarks(ctx, src)
		mustOK(t, "list bookmarks", err)
		s1, _ := z.GetSnapshots(ctx, src+"@s1")
		if len(marks) != 1 || marks[0] != (Bookmark{Name: src + "#b1", GUID: s1[0].GUID, CreateTXG: s1[0].CreateTXG}) {
			t.Fatalf("bookmarks %+v, want b1 with s1's GUID and txg %+v", marks, s1)
		}
		_, err = z.Receive(ctx, dst, bytes.NewReader(streamOf(t, z, src+"@s1", SendOptions{})), ReceiveOptions{Properties: map[string]string{"readonly": "on"}})
		mustOK(t, "receive s1", err)

		// The base snapshot pruned, the bookmark still starts the incremental.
		writeRandom(t, mountpoint(t, z, src), "f", 1<<20)
		mustOK(t, "s2", z.Snapshot(ctx, src+"@s2"))
		mustOK(t, "prune s1", z.DestroySnapshots(ctx, src+"@s1"))
		local, _ := z.ListSnapshots(ctx, src)
		peer, _ := z.ListSnapshots(ctx, dst)
		plan := PlanReplication(local, peer, marks...)
		if plan.Action != ActIncremental || plan.Base.Local != src+"#b1" {
			t.Fatalf("plan on the real lists: %v, want an incremental from the bookmark", plan)
		}
		_, err = z.Send(ctx, src+"@s2", io.Discard, SendOptions{From: src + "#b1", Intermediates: true})
		if err == nil {
			t.Error("-I from a bookmark was accepted")
		}
		_, err = z.Receive(ctx, dst, bytes.NewReader(streamOf(t, z, src+"@s2", SendOptions{From: plan.Base.Local})), ReceiveOptions{})
		mustOK(t, "receive the incremental from the bookmark", err)
		if sums, want := treeSums(t, mountpoint(t, z, dst)), treeSums(t, mountpoint(t, z, src)); !equalSums(sums, want) {
			t.Errorf("replica %v, source %v", sums, want)
		}
		mustOK(t, "destroy bookmark", z.DestroyBookmark(ctx, src+"#b1"))
		wantErr(t, "destroy it again", z.DestroyBookmark(ctx, src+"#b1"), ErrNotFound)
		if marks, err := z.ListBookmarks(ctx, src); len(marks) != 0 || err != nil {
			t.Errorf("after destroy: %+v %v", marks, err)
		}
	})

	t.Run("resumable", func(t *testing.T) {
		src := p1.Name + "/resume"
		mustOK(t, "create", z.CreateDataset(ctx, src, CreateOptions{}))
		writeRandom(t, mountpoint(t, z, src), "f", 6<<20)
		mustOK(t, "s1", z.Snapshot(ctx, src+"@s1"))
		full := streamOf(t, z, src+"@s1", SendOptions{})
		want := treeSums(t, mountpoint(t, z, src))
		dst := p2.Name + "/resume"
		if !f.ResumableReceive {
			n := ex.count()
			_, rerr := z.Receive(ctx, dst, bytes.NewReader(full), ReceiveOptions{Resumable: true})
			_, terr := z.ResumeToken(ctx, dst)
			if !errors.Is(rerr, ErrUnsupported) || !errors.Is(terr, ErrUnsupported) || ex.count() != n {
				t.Errorf("resume without the feature: %v %v, ran %v", rerr, terr, ex.since(n))
			}
			return
		}
		// A truncated stream keeps its partial state and offers the token.
		_, err := z.Receive(ctx, dst, bytes.NewReader(full[:len(full)/2]), ReceiveOptions{Resumable: true})
		wantErr(t, "truncated resumable receive", err, ErrResumable, ErrBadStream)
		var ze *ZFSError
		if !errors.As(err, &ze) || ze.Token == "" {
			t.Fatalf("no token in %#v", err)
		}
		token, err := z.ResumeToken(ctx, dst)
		if err != nil || token != ze.Token {
			t.Fatalf("receive_resume_token %q %v, the error offered %q", token, err, ze.Token)
		}
		_, err = z.Receive(ctx, dst, bytes.NewReader(full), ReceiveOptions{})
		wantErr(t, "a full stream onto partial state", err, ErrExists)
		rest, err := z.EstimateResume(ctx, token)
		mustOK(t, "estimate resume", err)
		if rest <= 0 || rest >= int64(len(full)) {
			t.Errorf("resume estimate %d of a %d-byte stream half received", rest, len(full))
		}
		// The sender reads which snapshot the token continues.
		info, err := z.ResumeInfo(ctx, token)
		mustOK(t, "resume info", err)
		s1, err := z.GetSnapshots(ctx, src+"@s1")
		mustOK(t, "get s1", err)
		if info.ToGUID != s1[0].GUID || info.ToName != src+"@s1" || info.FromGUID != 0 || info.Bytes <= 0 || info.Remaining != rest {
			t.Errorf("resume info %+v; want s1 (guid %d) from nothing, %d bytes left", info, s1[0].GUID, rest)
		}
		_, err = z.SendResume(ctx, "1-"+strings.Repeat("0", 40), io.Discard)
		wantErr(t, "send -t with a bogus token", err, ErrResumeTokenInvalid)
		resumed := streamOfResume(t, z, token)
		if int64(len(resumed)) >= int64(len(full)) {
			t.Errorf("the resumed stream (%d bytes) is not shorter than the full one (%d)", len(resumed), len(full))
		}
		_, err = z.Receive(ctx, dst, bytes.NewReader(resumed), ReceiveOptions{Resumable: true})
		mustOK(t, "receive the resumed stream", err)
		if token, _ := z.ResumeToken(ctx, dst); token != "" {
			t.Errorf("token %q left after the resume completed", token)
		}
		if sums := treeSums(t, mountpoint(t, z, dst)); !equalSums(sums, want) {
			t.Errorf("resumed replica %v, want %v", sums, want)
		}

		// A receive killed halfway (cancelled while its peer stalls) keeps
		// the token too; aborting it leaves nothing.
		dst2 := p2.Name + "/resume2"
		pr, pw := io.Pipe()
		defer pw.Close()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := z.Receive(rctx, dst2, pr, ReceiveOptions{Resumable: true})
			done <- err
		}()
		if _, err := pw.Write(full[:len(full)/2]); err != nil {
			t.Fatal(err)
		}
		cancel()
		wantErr(t, "cancelled resumable receive", <-done, context.Canceled)
		token, err = z.ResumeToken(ctx, dst2)
		if err != nil || token == "" {
			t.Fatalf("after a killed resumable receive: token %q %v", token, err)
		}
		mustOK(t, "abort", z.AbortReceive(ctx, dst2))
		// The aborted full receive took its new dataset with it.
		wantErr(t, "abort again", z.AbortReceive(ctx, dst2), ErrNotFound)
		if ok, err := z.Exists(ctx, dst2); ok || err != nil {
			t.Errorf("after abort %s exists (%v)", dst2, err)
		}

		// Partial state of an incremental blocks a plain receive until aborted.
		writeRandom(t, mountpoint(t, z, src), "g", 4<<20)
		mustOK(t, "s2", z.Snapshot(ctx, src+"@s2"))
		incr := streamOf(t, z, src+"@s2", SendOptions{From: src + "@s1"})
		// Reading the replica above touched atimes: discard that, as a
		// replica would, and keep it from changing again.
		mustOK(t, "rollback the replica", z.Rollback(ctx, dst+"@s1"))
		mustOK(t, "readonly", z.SetProperty(ctx, dst, "readonly", "on"))
		_, err = z.Receive(ctx, dst, bytes.NewReader(incr[:len(incr)/2]), ReceiveOptions{Resumable: true})
		wantErr(t, "truncated resumable incremental", err, ErrResumable)
		_, err = z.Receive(ctx, dst, bytes.NewReader(incr), ReceiveOptions{})
		wantErr(t, "plain receive onto partial state", err, ErrReceiveStatePresent)
		mustOK(t, "abort the incremental", z.AbortReceive(ctx, dst))
		wantErr(t, "abort with nothing to abort", z.AbortReceive(ctx, dst), ErrNoReceiveState)
		_, err = z.Receive(ctx, dst, bytes.NewReader(incr), ReceiveOptions{})
		mustOK(t, "receive the incremental after abort", err)
	})

	// The subtests above ran every go-zfs-backed operation through go-zfs
	// where it fits (OpenZFS in the guest), and none on zfs-fuse.
	t.Run("gozfs_routing", func(t *testing.T) {
		calls := z.goStats.snapshot()
		t.Logf("go-zfs calls: %v", calls)
		if !goZFSFits(z.Dialect()) {
			if len(calls) != 0 {
				t.Errorf("go-zfs ran %v on %s", calls, z.Dialect().Name)
			}
			return
		}
		if !z.pathBinaries {
			t.Fatal("the adapter runs PATH's zfs but does not know it")
		}
		for _, op := range goZFSOps {
			if calls[op] == 0 {
				t.Errorf("%s never ran through go-zfs", op)
			}
		}
		if n := z.goStats.abandoned.Load(); n != 0 {
			t.Errorf("%d go-zfs calls abandoned", n)
		}
		// Measured, not asserted: one snapshot through go-zfs (snapshot,
		// then go-zfs's re-read) against our exec (snapshot alone).
		ds := p1.Name + "/timing"
		mustOK(t, "create", z.CreateDataset(ctx, ds, CreateOptions{}))
		viaExec := *z
		viaExec.pathBinaries = false
		const rounds = 20
		took := map[string][]time.Duration{}
		for i := range rounds {
			for name, a := range map[string]*ZFS{"go-zfs": z, "exec": &viaExec} {
				start := time.Now()
				mustOK(t, "snapshot", a.Snapshot(ctx, fmt.Sprintf("%s@%s-%d", ds, name, i)))
				took[name] = append(took[name], time.Since(start))
			}
		}
		for name, d := range took {
			slices.Sort(d)
			t.Logf("one snapshot via %s: median %v, max %v over %d", name, d[rounds/2], d[rounds-1], rounds)
		}
	})
}

// streamOfResume sends the rest of a resumable stream into memory.
func streamOfResume(t *testing.T, z *ZFS, token string) []byte {
	t.Helper()
	var buf bytes.Buffer
	_, err := z.SendResume(context.Background(), token, &buf)
	mustOK(t, "send -t", err)
	return buf.Bytes()
}

// A full pool: a big receive and a create are refused with ErrPoolFull, and
// the refused receive leaves nothing behind.
func TestZFSPoolFull(t *testing.T) {
	big := testPool(t, 256<<20)
	small := testPool(t, rig.MinPoolSize)
	z, _ := testZFS(t)
	ctx := context.Background()
	src := big.Name + "/big"
	mustOK(t, "create", z.CreateDataset(ctx, src, CreateOptions{}))
	for i := range 6 {
		writeRandom(t, mountpoint(t, z, src), fmt.Sprintf("f%d", i), 10<<20)
	}
	mustOK(t, "snapshot", z.Snapshot(ctx, src+"@s1"))
	space, err := z.Space(ctx, small.Name)
	mustOK(t, "space", err)
	t.Logf("small pool: %+v", space)

	pr, pw := io.Pipe()
	go func() {
		_, err := z.Send(ctx, src+"@s1", pw, SendOptions{})
		pw.CloseWithError(err)
	}()
	_, err = z.Receive(ctx, small.Name+"/r", pr, ReceiveOptions{})
	pr.CloseWithError(errors.New("receive ended"))
	wantErr(t, "receive 60 MiB into a small pool", err, ErrPoolFull)
	if ok, err := z.Exists(ctx, small.Name+"/r"); ok || err != nil {
		t.Errorf("after the refused receive %s/r exists (%v)", small.Name, err)
	}

	// Fill it with files until the pool refuses a write.
	var werr error
	for i := 0; werr == nil && i < 100; i++ {
		b := make([]byte, 4<<20)
		rand.Read(b)
		werr = os.WriteFile(filepath.Join(small.Mountpoint, fmt.Sprintf("fill%d", i)), b, 0o644)
	}
	if werr == nil {
		t.Fatal("100 writes of 4 MiB fitted in a 64 MiB pool")
	}
	t.Logf("filling stopped: %v", werr)
	wantErr(t, "create in a full pool", z.CreateDataset(ctx, small.Name+"/more", CreateOptions{}), ErrPoolFull)
}

// iotestErrReader returns err on every Read.
type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// failingWriter accepts after bytes, then fails.
type failingWriter struct {
	after int
	n     int
	err   error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.after {
		k := max(w.after-w.n, 0)
		w.n += k
		return k, w.err
	}
	w.n += len(p)
	return len(p), nil
}

// zfsProcesses returns the PIDs of running `zfs VERB ... TARGET` commands.
func zfsProcesses(t *testing.T, verb, target string) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		// zfs-fuse's zfs splits its snapshot argument in place: its
		// cmdline shows "zfs send pool/ds snap" for pool/ds@snap.
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		joined := strings.Join(args[min(2, len(args)):], "@")
		if len(args) >= 3 && filepath.Base(args[0]) == "zfs" && args[1] == verb && strings.HasSuffix(joined, target) {
			pids = append(pids, pid)
		}
	}
	return pids
}
