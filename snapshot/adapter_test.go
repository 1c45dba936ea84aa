package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordingZFS returns an adapter whose zfs and zpool are a script that
// appends its arguments to a log file and fails; and a function returning
// the log. The script is a real process, so "nothing in the log" means
// "nothing was executed". The adapter is given the script's path, so it
// never routes to go-zfs (which runs zfs from PATH); see recordingPathZFS.
func recordingZFS(t *testing.T, d Dialect) (*ZFS, func() string) {
	t.Helper()
	return recordingZFSBody(t, d, false, "echo 'recorded, not run' >&2\nexit 1")
}

// recordingPathZFS is recordingZFS with the script put first in PATH as
// zfs and zpool, and the adapter given no paths: where the dialect fits,
// the operations go-zfs serves run through go-zfs, on the script.
func recordingPathZFS(t *testing.T, d Dialect) (*ZFS, func() string) {
	t.Helper()
	return recordingZFSBody(t, d, true, "echo 'recorded, not run' >&2\nexit 1")
}

// recordingZFSBody writes the recording script with body after the
// recording line.
func recordingZFSBody(t *testing.T, d Dialect, onPath bool, body string) (*ZFS, func() string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "exec.log")
	script := filepath.Join(dir, "zfs")
	text := "#!/bin/sh\nprintf '%s\\n' \"$*\" >>" + log + "\n" + body + "\n"
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	cli := NewCLI(script, script, testLog(t))
	if onPath {
		if err := os.Symlink(script, filepath.Join(dir, "zpool")); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		cli = NewCLI("", "", testLog(t))
	}
	return NewWithDialect(cli, d, testLog(t)), func() string {
		b, err := os.ReadFile(log)
		if errors.Is(err, os.ErrNotExist) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// Names with shell syntax, option syntax or characters ZFS forbids are
// refused by every operation before anything is executed, by our exec or
// by go-zfs.
func TestBadNamesRejectedBeforeExec(t *testing.T) {
	t.Run("exec", func(t *testing.T) {
		z, execs := recordingZFS(t, allFeatures)
		if z.useGoZFS(goOpSnapshot) {
			t.Fatal("an adapter given the script's path routes to go-zfs")
		}
		testBadNamesRejected(t, z, execs)
	})
	t.Run("go-zfs", func(t *testing.T) {
		z, execs := recordingPathZFS(t, allFeatures)
		if !z.useGoZFS(goOpSnapshot) {
			t.Fatal("an adapter on PATH's zfs with an OpenZFS dialect does not route to go-zfs")
		}
		testBadNamesRejected(t, z, execs)
		if calls := z.goStats.snapshot(); calls[goOpSnapshot] != 1 || len(calls) != 1 {
			t.Errorf("go-zfs calls %v, want the one good snapshot", calls)
		}
	})
}

func testBadNamesRejected(t *testing.T, z *ZFS, execs func() string) {
	ctx := context.Background()
	const ds, snap = "tank/app", "tank/app@s1"
	badDatasets := []string{"-R", "tank/-x", "tank/a;rm -rf /", "tank/$(id)", "tank/a b", "tank/a\nb", "tank/`x`", "tank/a|b", "tank/a&b", "tank/a>b", "", "/tank/app", "tank/a'b", "tank/a\"b"}
	badSnapshots := []string{"tank/app@-r", "tank/app@a;b", "-x@s", "tank/app", "tank/app@$(id)", "tank/app@a b"}
	type call struct {
		name string
		run  func() error
	}
	var calls []call
	for _, bad := range badDatasets {
		calls = append(calls,
			call{"CreateDataset", func() error { return z.CreateDataset(ctx, bad, CreateOptions{}) }},
			call{"Exists", func() error { _, err := z.Exists(ctx, bad); return err }},
			call{"DestroyDataset", func() error { return z.DestroyDataset(ctx, bad, DestroyOptions{Recursive: true}) }},
			call{"Rename from", func() error { return z.Rename(ctx, bad, ds, RenameOptions{}) }},
			call{"Rename to", func() error { return z.Rename(ctx, ds, bad, RenameOptions{}) }},
			call{"Clone target", func() error { return z.Clone(ctx, snap, bad, nil) }},
			call{"Promote", func() error { return z.Promote(ctx, bad) }},
			call{"Mount", func() error { return z.Mount(ctx, bad) }},
			call{"Unmount", func() error { return z.Unmount(ctx, bad) }},
			call{"Mountpoint", func() error { _, _, err := z.Mountpoint(ctx, bad); return err }},
			call{"GetProperties", func() error { _, err := z.GetProperties(ctx, bad, "readonly"); return err }},
			call{"SetProperties", func() error { return z.SetProperty(ctx, bad, "readonly", "on") }},
			call{"InheritProperty", func() error { return z.InheritProperty(ctx, bad, "flocker:epoch") }},
			call{"Written", func() error { _, err := z.Written(ctx, bad); return err }},
			call{"Head", func() error { _, err := z.Head(ctx, bad); return err }},
			call{"Space", func() error { _, err := z.Space(ctx, bad); return err }},
			call{"ListSnapshots", func() error { _, err := z.ListSnapshots(ctx, bad); return err }},
			call{"Holds", func() error { _, err := z.Holds(ctx, bad); return err }},
			call{"ListBookmarks", func() error { _, err := z.ListBookmarks(ctx, bad); return err }},
			call{"Receive", func() error { _, err := z.Receive(ctx, bad, strings.NewReader("x"), ReceiveOptions{}); return err }},
			call{"ResumeToken", func() error { _, err := z.ResumeToken(ctx, bad); return err }},
			call{"AbortReceive", func() error { return z.AbortReceive(ctx, bad) }},
		)
	}
	for _, bad := range badSnapshots {
		calls = append(calls,
			call{"Snapshot", func() error { return z.Snapshot(ctx, snap, bad) }},
			call{"GetSnapshots", func() error { _, err := z.GetSnapshots(ctx, snap, bad); return err }},
			call{"DestroySnapshots", func() error { return z.DestroySnapshots(ctx, snap, bad) }},
			call{"Rollback", func() error { return z.Rollback(ctx, bad) }},
			call{"RollbackDestroying", func() error { return z.RollbackDestroying(ctx, snap, []string{bad}) }},
			call{"Hold", func() error { return z.Hold(ctx, "flocker", snap, bad) }},
			call{"Release", func() error { return z.Release(ctx, "flocker", bad) }},
			call{"Clone origin", func() error { return z.Clone(ctx, bad, ds, nil) }},
			call{"CreateBookmark", func() error { return z.CreateBookmark(ctx, bad, "tank/app#b") }},
			call{"Send", func() error { _, err := z.Send(ctx, bad, &bytes.Buffer{}, SendOptions{}); return err }},
			call{"Send from", func() error { _, err := z.Send(ctx, snap, &bytes.Buffer{}, SendOptions{From: bad}); return err }},
			call{"EstimateSend", func() error { _, err := z.EstimateSend(ctx, bad, SendOptions{}); return err }},
		)
	}
	calls = append(calls,
		call{"Hold tag", func() error { return z.Hold(ctx, "-r", snap) }},
		call{"Release tag", func() error { return z.Release(ctx, "a;b", snap) }},
		call{"CreateDataset property", func() error {
			return z.CreateDataset(ctx, ds, CreateOptions{Properties: map[string]string{"-o": "x"}})
		}},
		call{"CreateDataset value", func() error {
			return z.CreateDataset(ctx, ds, CreateOptions{Properties: map[string]string{"flocker:epoch": "1\n2"}})
		}},
		call{"SetProperties value", func() error { return z.SetProperty(ctx, ds, "flocker:note", "a\tb") }},
		call{"GetProperties property", func() error { _, err := z.GetProperties(ctx, ds, "used", "-H"); return err }},
		call{"Rename snapshot across datasets", func() error { return z.Rename(ctx, snap, "tank/other@s1", RenameOptions{}) }},
		call{"CreateBookmark name", func() error { return z.CreateBookmark(ctx, snap, "tank/app#-x") }},
		call{"DestroyBookmark", func() error { return z.DestroyBookmark(ctx, "tank/app@s1") }},
		call{"Send from bookmark", func() error {
			_, err := z.Send(ctx, snap, &bytes.Buffer{}, SendOptions{From: "tank/app#;x"})
			return err
		}},
		call{"SendResume token", func() error { _, err := z.SendResume(ctx, "-t", &bytes.Buffer{}); return err }},
		call{"SendResume token chars", func() error { _, err := z.SendResume(ctx, "1-ab;cd", &bytes.Buffer{}); return err }},
		call{"EstimateResume token", func() error { _, err := z.EstimateResume(ctx, "1-$(id)"); return err }},
		call{"Receive property", func() error {
			_, err := z.Receive(ctx, ds, strings.NewReader("x"), ReceiveOptions{Properties: map[string]string{"Readonly": "on"}})
			return err
		}},
	)
	for _, c := range calls {
		err := c.run()
		var ne *NameError
		if !errors.As(err, &ne) && !strings.Contains(errString(err), "applies to file systems") && !strings.Contains(errString(err), "can only be renamed within") {
			t.Errorf("%s: want a name error, got %v", c.name, err)
		}
	}
	if log := execs(); log != "" {
		t.Fatalf("bad names reached an exec:\n%s", log)
	}
	// The recorder works: a good name runs it, once, with the argument list
	// as given (no shell between).
	if err := z.Snapshot(ctx, "tank/app@ok"); err == nil {
		t.Fatal("the recording zfs fails every command, but Snapshot succeeded")
	}
	if log := execs(); log != "snapshot tank/app@ok\n" {
		t.Fatalf("exec log %q, want one snapshot", log)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// On a dialect without a feature, the call says so and runs nothing.
func TestUnsupportedRunsNothing(t *testing.T) {
	z, execs := recordingZFS(t, zfsFuseDialect)
	ctx := context.Background()
	const ds, snap, token = "tank/app", "tank/app@s2", "1-abc-def"
	calls := map[string]func() error{
		"EstimateSend":   func() error { _, err := z.EstimateSend(ctx, snap, SendOptions{}); return err },
		"EstimateResume": func() error { _, err := z.EstimateResume(ctx, token); return err },
		"SendResume":     func() error { _, err := z.SendResume(ctx, token, &bytes.Buffer{}); return err },
		"Send -c":        func() error { _, err := z.Send(ctx, snap, &bytes.Buffer{}, SendOptions{Compressed: true}); return err },
		"Send -L":        func() error { _, err := z.Send(ctx, snap, &bytes.Buffer{}, SendOptions{LargeBlocks: true}); return err },
		"Send from bookmark": func() error {
			_, err := z.Send(ctx, snap, &bytes.Buffer{}, SendOptions{From: "tank/app#b1"})
			return err
		},
		"Receive -s": func() error {
			_, err := z.Receive(ctx, ds, strings.NewReader(""), ReceiveOptions{Resumable: true})
			return err
		},
		"Receive -o": func() error {
			_, err := z.Receive(ctx, ds, strings.NewReader(""), ReceiveOptions{Properties: map[string]string{"readonly": "on"}})
			return err
		},
		"CreateBookmark":  func() error { return z.CreateBookmark(ctx, snap, "tank/app#b2") },
		"ListBookmarks":   func() error { _, err := z.ListBookmarks(ctx, ds); return err },
		"DestroyBookmark": func() error { return z.DestroyBookmark(ctx, "tank/app#b2") },
		"ResumeToken":     func() error { _, err := z.ResumeToken(ctx, ds); return err },
		"AbortReceive":    func() error { return z.AbortReceive(ctx, ds) },
		"Written":         func() error { _, err := z.Written(ctx, ds); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: want ErrUnsupported, got %v", name, err)
		}
	}
	if h, err := z.Head(ctx, ds); h != HeadUnknown || err != nil {
		t.Errorf("Head without the written property: %v %v, want unknown and no error", h, err)
	}
	noHolds, holdExecs := recordingZFS(t, Dialect{Name: "none"})
	if err := noHolds.Hold(ctx, "flocker", snap); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Hold without holds: %v", err)
	}
	if log := execs() + holdExecs(); log != "" {
		t.Fatalf("unsupported calls ran:\n%s", log)
	}
}

func TestSnapshotBatches(t *testing.T) {
	got := snapshotBatches([]string{"p/a@1", "p/b@1", "p/a@2", "p/c@1", "p/a@3", "p/b@2"})
	want := [][]string{{"p/a@1", "p/b@1"}, {"p/a@2", "p/c@1"}, {"p/a@3", "p/b@2"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batches %v, want %v", got, want)
	}
}

func TestParseMountinfo(t *testing.T) {
	// Lines as the kernel writes them: zfs-fuse mounts (fuse.zfs), an
	// OpenZFS one (zfs), a space escaped as \040, and other file systems.
	info := `44 27 0:41 / /tmp/rig/m1 rw,relatime - fuse.zfs pool1 rw,user_id=0,group_id=0,default_permissions,allow_other
54 44 0:46 / /tmp/rig/m1/app rw,relatime - fuse.zfs pool1/app rw,user_id=0,group_id=0,default_permissions,allow_other
60 1 0:50 / /tank/my\040data rw,noatime shared:30 - zfs tank/my-data rw,xattr,noacl
61 1 0:51 / /tank/my\040data/db rw,noatime shared:31 master:2 - zfs tank/my-data/db rw,xattr,noacl
22 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw
70 22 0:60 / /tmp/rig/m1/app/sub rw - tmpfs tmpfs rw
`
	mounts, err := parseZFSMounts(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 4 || mounts[2].Mountpoint != "/tank/my data" || mounts[2].Dataset != "tank/my-data" {
		t.Fatalf("mounts %+v", mounts)
	}
	for path, want := range map[string]string{
		"/tmp/rig/m1":              "pool1",
		"/tmp/rig/m1/app":          "pool1/app",
		"/tmp/rig/m1/app/x/y":      "pool1/app",
		"/tmp/rig/m1/apps":         "pool1",
		"/tank/my data/db/t.ibd":   "tank/my-data/db",
		"/tank/my data/dbx":        "tank/my-data",
		"/tmp/rig":                 "",
		"/tank/my":                 "",
		"/tmp/rig/m1/app/sub/file": "pool1/app", // tmpfs on top is not ZFS: the ZFS below counts
	} {
		m, ok := datasetForPath(mounts, path)
		if m.Dataset != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", path, m.Dataset, ok, want)
		}
	}
	if _, err := parseZFSMounts(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("a malformed line was accepted")
	}
	if got := unescapeOctal(`a\040b\134c\999\04`); got != `a b\c\999\04` {
		t.Errorf("unescapeOctal = %q", got)
	}
}

func TestParseEstimate(t *testing.T) {
	// Each capture.sh run has its own numbers: the expected size is the last
	// field of the stream line ("full"/"incremental"), read independently.
	for _, file := range []string{"send_estimate.out", "send_estimate_full.out", "send_estimate_resume.out"} {
		b, err := os.ReadFile(filepath.Join("testdata", "stderr", DialectOpenZFS, file))
		if err != nil {
			t.Fatal(err)
		}
		var want int64 = -1
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) >= 3 && (f[0] == "full" || f[0] == "incremental") {
				fmt.Sscan(f[len(f)-1], &want)
			}
		}
		if n, err := parseEstimate("estimate", "x", string(b)); n != want || want <= 0 || err != nil {
			t.Errorf("%s: %d %v, want %d", file, n, err, want)
		}
	}
	if _, err := parseEstimate("estimate", "x", "full\ta@b\t12\n"); err == nil {
		t.Error("no size line accepted")
	}
	if _, err := parseEstimate("estimate", "x", "size\t-3\n"); err == nil {
		t.Error("negative size accepted")
	}
}

func TestParseResume(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "stderr", DialectOpenZFS, "send_estimate_resume.out"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseResume("read", "x", string(b))
	want := Resume{ToGUID: 0x41b049d2b6870b0b, ToName: "cap1/app@s3", Bytes: 0x503de0, Remaining: 5260816}
	if err != nil || r != want {
		t.Errorf("captured output: %+v %v, want %+v", r, err, want)
	}
	// An incremental's token names its source too (nvlist_print's layout,
	// as in the capture above).
	inc := "resume token contents:\nnvlist version: 0\n\tfromguid = 0x10\n\tobject = 0x3\n\toffset = 0x0\n" +
		"\tbytes = 0x2000\n\ttoguid = 0x20\n\ttoname = tank/app@b\nincremental\ttank/app@a\ttank/app@b\t4096\nsize\t4096\n"
	r, err = parseResume("read", "x", inc)
	if want := (Resume{ToGUID: 0x20, FromGUID: 0x10, ToName: "tank/app@b", Bytes: 0x2000, Remaining: 4096}); err != nil || r != want {
		t.Errorf("incremental: %+v %v, want %+v", r, err, want)
	}
	for _, bad := range []string{
		"size\t12\n", // no contents
		"resume token contents:\n\ttoguid = 0xzz\n\ttoname = a@b\nsize\t1\n",
		"resume token contents:\n\ttoguid = 0x1\n\ttoname = a@b\n", // no size
	} {
		if r, err := parseResume("read", "x", bad); err == nil {
			t.Errorf("%q accepted: %+v", bad, r)
		}
	}
}

// The parsers of list/get/holds output, on what OpenZFS printed in
// capture.sh's run and on zfs-fuse's get -Hp form.
func TestParseListings(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "stderr", DialectOpenZFS, "list_bookmarks.out"))
	if err != nil {
		t.Fatal(err)
	}
	marks, err := parseBookmarkList(string(b), "cap1/app")
	var guid, txg uint64
	fmt.Sscanf(strings.Fields(string(b))[1]+" "+strings.Fields(string(b))[2], "%d %d", &guid, &txg)
	if err != nil || len(marks) != 1 || marks[0] != (Bookmark{Name: "cap1/app#b2", GUID: guid, CreateTXG: txg}) || guid == 0 {
		t.Errorf("bookmarks %+v %v, want cap1/app#b2 %d %d", marks, err, guid, txg)
	}
	b, err = os.ReadFile(filepath.Join("testdata", "stderr", DialectOpenZFS, "holds_list.out"))
	if err != nil {
		t.Fatal(err)
	}
	tags, err := parseHolds(string(b))
	if err != nil || len(tags) != 1 || strings.Join(tags["cap1/app@s1"], ",") != "flocker" {
		t.Errorf("holds %v %v", tags, err)
	}
	get := "p/a\tguid\t432805257615270463\np/a\tcreatetxg\t7\np/a\tcreation\t1795266056\n" +
		"p/a@s2\tguid\t10305146605061679964\np/a@s2\tcreatetxg\t13\np/a@s2\tcreation\t1795266056\n" +
		"p/a/child@s9\tguid\t5\np/a/child@s9\tcreatetxg\t20\np/a/child@s9\tcreation\t1795266057\n"
	snaps, err := parseSnapshotGet(get, "p/a@")
	if err != nil || len(snaps) != 1 || snaps[0].Name != "p/a@s2" || snaps[0].GUID != 10305146605061679964 || snaps[0].CreateTXG != 13 || snaps[0].Creation.Unix() != 1795266056 {
		t.Errorf("snapshots %+v %v", snaps, err)
	}
	if _, err := parseSnapshotGet("p/a@s\tguid\t1\n", ""); err == nil {
		t.Error("a snapshot missing createtxg and creation was accepted")
	}
	if _, err := parseSnapshotGet("p/a@s\tguid\t8.94E\np/a@s\tcreatetxg\t1\np/a@s\tcreation\t1\n", ""); err == nil {
		t.Error("a human-readable guid was accepted")
	}
	if _, err := parseSnapshotList("p/b@x\t1\t2\t3\n", "p/a"); err == nil {
		t.Error("another dataset's snapshot was accepted")
	}
}
