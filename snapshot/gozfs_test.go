package snapshot

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v4"
)

// openZFSNoListP is an OpenZFS whose list lacks -p (before 0.7): go-zfs's
// parsing does not hold there.
var openZFSNoListP = Dialect{Name: DialectOpenZFS, Version: "0.6.5", Features: Features{WrittenProperty: true, Holds: true}}

func TestRouteOf(t *testing.T) {
	for _, c := range []struct {
		name         string
		d            Dialect
		pathBinaries bool
		want         backend
	}{
		{"OpenZFS 2.3, PATH's binaries", allFeatures, true, backendGoZFS},
		{"OpenZFS 2.3, other binaries", allFeatures, false, backendExec},
		{"zfs-fuse", zfsFuseDialect, true, backendExec},
		{"OpenZFS without list -p", openZFSNoListP, true, backendExec},
		{"OpenZFS without written", Dialect{Name: DialectOpenZFS, Features: Features{ListParsable: true}}, true, backendExec},
		{"unknown dialect with every feature", Dialect{Name: "other", Features: allFeatures.Features}, true, backendExec},
	} {
		for _, op := range goZFSOps {
			if got := routeOf(op, goZFSFits(c.d), c.pathBinaries); got != c.want {
				t.Errorf("%s: %s runs on %s, want %s", c.name, op, got, c.want)
			}
		}
		// Operations go-zfs has no call for stay on our exec everywhere.
		for _, op := range []string{"get properties", "list snapshots", "hold", "send", "receive", "bookmark", "promote", "inherit property"} {
			if got := routeOf(op, goZFSFits(c.d), c.pathBinaries); got != backendExec {
				t.Errorf("%s: %s runs on %s, want exec", c.name, op, got)
			}
		}
	}
}

// Each operation, in each shape, runs on the backend its dialect calls
// for: the zfs on PATH is a recording script (nothing real can show which
// code ran a command), and the command it saw tells go-zfs's command lines
// from ours.
func TestGoZFSRouting(t *testing.T) {
	ctx := context.Background()
	const ds, snap = "tank/app", "tank/app@s1"
	list := strings.Join(goZFSListArgs(ds), " ")
	type call struct {
		name   string
		run    func(z *ZFS) error
		goOp   string // the go-zfs operation where it fits; "" for exec always
		goCmd  string // the first command go-zfs runs
		cmd    string // the first command our exec runs
		noExec bool   // nothing runs on either backend
	}
	calls := []call{
		{"CreateDataset", func(z *ZFS) error { return z.CreateDataset(ctx, ds, CreateOptions{}) }, goOpCreate, "create " + ds, "create " + ds, false},
		{"CreateDataset -p", func(z *ZFS) error { return z.CreateDataset(ctx, ds, CreateOptions{Parents: true}) }, "", "", "create -p " + ds, false},
		{"Exists dataset", func(z *ZFS) error { _, err := z.Exists(ctx, ds); return err }, goOpExists, list, "get -H -o value createtxg " + ds, false},
		{"Exists bookmark", func(z *ZFS) error { _, err := z.Exists(ctx, ds+"#b"); return err }, "", "", "get -H -o value createtxg " + ds + "#b", false},
		{"Mountpoint", func(z *ZFS) error { _, _, err := z.Mountpoint(ctx, ds); return err }, goOpMountpoint, list, "get -Hp -o name,property,value,source mountpoint,mounted " + ds, false},
		{"Space", func(z *ZFS) error { _, err := z.Space(ctx, ds); return err }, goOpSpace, list, "get -Hp -o name,property,value,source used,available " + ds, false},
		{"Written", func(z *ZFS) error { _, err := z.Written(ctx, ds); return err }, goOpWritten, list, "get -Hp -o name,property,value,source written " + ds, false},
		{"GetProperty", func(z *ZFS) error { _, err := z.GetProperty(ctx, ds, "readonly"); return err }, "", "", "get -Hp -o name,property,value,source readonly " + ds, false},
		{"SetProperty", func(z *ZFS) error { return z.SetProperty(ctx, ds, "readonly", "on") }, goOpSetProperty, "set readonly=on " + ds, "set readonly=on " + ds, false},
		{"SetProperties of two", func(z *ZFS) error {
			return z.SetProperties(ctx, ds, map[string]string{"readonly": "on", "atime": "off"})
		}, "", "", "set atime=off readonly=on " + ds, false},
		{"Snapshot one", func(z *ZFS) error { return z.Snapshot(ctx, snap) }, goOpSnapshot, "snapshot " + snap, "snapshot " + snap, false},
		{"Snapshot two", func(z *ZFS) error { return z.Snapshot(ctx, snap, "tank/db@s1") }, "", "", "snapshot " + snap + " tank/db@s1", false},
		{"DestroySnapshots one", func(z *ZFS) error { return z.DestroySnapshots(ctx, snap) }, goOpDestroySnapshot, "destroy " + snap, "destroy " + snap, false},
		{"DestroySnapshots two of one dataset", func(z *ZFS) error { return z.DestroySnapshots(ctx, snap, ds+"@s2") }, "", "", "destroy " + ds + "@s1,s2", false},
		{"DestroyDataset", func(z *ZFS) error { return z.DestroyDataset(ctx, ds, DestroyOptions{Recursive: true}) }, goOpDestroyDataset, "destroy -r " + ds, "destroy -r " + ds, false},
		{"Rollback", func(z *ZFS) error { return z.Rollback(ctx, snap) }, goOpRollback, "rollback " + snap, "rollback " + snap, false},
		{"Clone", func(z *ZFS) error { return z.Clone(ctx, snap, "tank/stash/app", nil) }, goOpClone, strings.Join(goZFSListArgs("tank/stash"), " "), "clone " + snap + " tank/stash/app", false},
		{"Rename -p", func(z *ZFS) error { return z.Rename(ctx, ds, "tank/stash/app", RenameOptions{Parents: true}) }, goOpRename, "rename " + ds + " tank/stash/app -p", "rename -p " + ds + " tank/stash/app", false},
		{"Mount", func(z *ZFS) error { return z.Mount(ctx, ds) }, goOpMount, "mount " + ds, "mount " + ds, false},
		{"Unmount", func(z *ZFS) error { return z.Unmount(ctx, ds) }, goOpUnmount, "umount " + ds, "unmount " + ds, false},
		{"Pools", func(z *ZFS) error { _, err := z.Pools(ctx); return err }, goOpPools, "list -Ho name", "list -H -o name,health", false},
		{"Promote", func(z *ZFS) error { return z.Promote(ctx, ds) }, "", "", "promote " + ds, false},
		{"ListSnapshots", func(z *ZFS) error { _, err := z.ListSnapshots(ctx, ds); return err }, "", "", "", false},
		{"Send", func(z *ZFS) error { _, err := z.Send(ctx, snap, &bytes.Buffer{}, SendOptions{}); return err }, "", "", "send " + snap, false},
	}
	for _, d := range []Dialect{allFeatures, zfsFuseDialect, openZFSNoListP} {
		fits := goZFSFits(d)
		for _, c := range calls {
			t.Run(d.Name+d.Version+"/"+c.name, func(t *testing.T) {
				z, execs := recordingPathZFS(t, d)
				err := c.run(z)
				if err == nil {
					t.Fatal("the recording zfs fails every command, but the call succeeded")
				}
				log := execs()
				first, _, _ := strings.Cut(log, "\n")
				got := z.goStats.snapshot()
				if fits && c.goOp != "" {
					if got[c.goOp] != 1 || len(got) != 1 {
						t.Errorf("go-zfs calls %v, want one %q", got, c.goOp)
					}
					if first != c.goCmd {
						t.Errorf("first command %q, want go-zfs's %q", first, c.goCmd)
					}
					// go-zfs's failure is our typed error, its stderr parsed.
					if ce := asCmdError(err); ce == nil || !strings.Contains(ce.Stderr, "recorded, not run") {
						t.Errorf("want a *CmdError with the script's stderr, got %v", err)
					}
					return
				}
				if fits && c.name == "DestroySnapshots two of one dataset" {
					// The list form failed: each is retried alone, through go-zfs.
					if got[goOpDestroySnapshot] != 2 || len(got) != 1 {
						t.Errorf("go-zfs calls %v, want two retries of %q", got, goOpDestroySnapshot)
					}
				} else if len(got) != 0 {
					t.Errorf("go-zfs ran %v on %s", got, d.Name)
				}
				// Our exec's command lines depend on the features; they are
				// checked on the full OpenZFS set.
				if d.Features == allFeatures.Features && c.cmd != "" && first != c.cmd {
					t.Errorf("first command %q, want ours %q", first, c.cmd)
				}
			})
		}
	}
}

// go-zfs's failure goes through our stderr parser into the typed errors.
func TestGoZFSTypedErrors(t *testing.T) {
	z, _ := recordingZFSBody(t, allFeatures, true, "echo \"cannot open 'tank/app': dataset does not exist\" >&2\nexit 1")
	ctx := context.Background()
	err := z.DestroyDataset(ctx, "tank/app", DestroyOptions{})
	var ze *ZFSError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &ze) || ze.Name != "tank/app" || ze.Op != "destroy" || ze.Cmd == nil || ze.Cmd.ExitCode != 1 {
		t.Errorf("want ErrNotFound naming tank/app, got %#v", err)
	}
	if ze != nil && ze.Cmd != nil && (filepath.Base(ze.Cmd.Path) != "zfs" || strings.Join(ze.Cmd.Args, " ") != "destroy tank/app") {
		t.Errorf("command %s %v, want zfs destroy tank/app", ze.Cmd.Path, ze.Cmd.Args)
	}
	if ok, err := z.Exists(ctx, "tank/app"); ok || err != nil {
		t.Errorf("Exists of a missing dataset: %v %v", ok, err)
	}
	if z.goStats.snapshot()[goOpExists] != 1 {
		t.Errorf("Exists did not run through go-zfs: %v", z.goStats.snapshot())
	}
}

// go-zfs indexes its output unchecked: `zfs get` printing nothing panics in
// it, which the adapter turns into an error instead of a crash.
func TestGoZFSPanicIsAnError(t *testing.T) {
	fields := strings.Join([]string{"tank/app", "-", "1", "1", "/tank/app", "off", "filesystem", "-", "0", "1", "0", "1", "1"}, "\t")
	z, _ := recordingZFSBody(t, allFeatures, true, `case "$1" in list) printf '`+fields+`\n';; esac
exit 0`)
	_, _, err := z.Mountpoint(context.Background(), "tank/app")
	if err == nil || !strings.Contains(err.Error(), "go-zfs panicked") {
		t.Fatalf("want the panic as an error, got %v", err)
	}
}

// A go-zfs call that hangs: the caller gets its context's error at once,
// and the command, which ignores SIGTERM (as one stuck in a dead daemon
// might), is killed by go-zfs's Runner after the limit and the grace. A
// real zfs cannot be made to hang on purpose: the script stands in.
func TestGoZFSHungCallAbandoned(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	z, _ := recordingZFSBody(t, allFeatures, true, "echo $$ >"+pidFile+"\ntrap '' TERM\nexec sleep 60")
	logs := captureCLILog(z)
	// Short bounds for the test, then the adapter's own again.
	gozfs.SetRunner(&gozfs.Runner{Timeout: time.Second, Grace: 500 * time.Millisecond})
	t.Cleanup(func() { gozfs.SetRunner(&gozfs.Runner{Timeout: goZFSChildLimit, Grace: goZFSGrace}) })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := z.Rollback(ctx, "tank/app@s1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
	if n := z.goStats.abandoned.Load(); n != 1 {
		t.Errorf("%d abandoned calls, want 1", n)
	}
	var pid int
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, _ := os.ReadFile(pidFile)
		if pid, _ = strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake zfs never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitAbandonedEnded(t, z, logs, 60*time.Second)
	// Reaped by go-zfs's Wait: the pid is gone, killed by SIGKILL (it
	// ignored SIGTERM).
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the hung zfs (pid %d) is still there: %v", pid, err)
	}
	if l := logs.String(); !strings.Contains(l, "abandoned go-zfs call ended") || !strings.Contains(l, "signal: killed") {
		t.Errorf("want the abandoned call's end logged with its kill:\n%s", l)
	}
	// Past its deadline a call may be stuck in a hung pool: a warning.
	for _, msg := range []string{`level=WARN msg="go-zfs call abandoned`, `level=WARN msg="abandoned go-zfs call ended"`} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("want %s in the logs:\n%s", msg, logs.String())
		}
	}
}

// A go-zfs call whose caller is cancelled (the agent stopping, a role
// change) is left to finish, and both records of it are info, not
// warnings: an orderly stop warns of nothing. The script stands in for a
// zfs destroy that takes a while.
func TestGoZFSCallLeftOnCancelIsInfo(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	z, _ := recordingZFSBody(t, allFeatures, true, "touch "+started+"\nsleep 1\nexit 0")
	logs := captureCLILog(z)

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(started); err == nil {
				break
			}
		}
		cancel()
	}()
	err := z.Rollback(ctx, "tank/app@s1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want the cancel, got %v", err)
	}
	waitAbandonedEnded(t, z, logs, 30*time.Second)
	l := logs.String()
	for _, msg := range []string{`level=INFO msg="go-zfs call abandoned`, `level=INFO msg="abandoned go-zfs call ended"`} {
		if !strings.Contains(l, msg) {
			t.Errorf("want %s in the logs:\n%s", msg, l)
		}
	}
	if strings.Contains(l, "level=WARN") {
		t.Errorf("a cancelled call logged a warning:\n%s", l)
	}
}

// captureCLILog sends the adapter's exec log, debug records included, to a
// buffer the test reads.
func captureCLILog(z *ZFS) *syncBuffer {
	logs := &syncBuffer{}
	z.cli.log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return logs
}

// waitAbandonedEnded waits until no abandoned go-zfs call of z runs.
func waitAbandonedEnded(t *testing.T, z *ZFS, logs *syncBuffer, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); z.goStats.abandoned.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the abandoned call is still running after %v; logs:\n%s", d, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the log writes of several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
