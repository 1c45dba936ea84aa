package faults

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/vmtest"
	"github.com/flockerha/flocker/snapshot"
)

// TestClockJumps steps the wall clock of each agent's machine a day
// forward, two days back and a day forward again, 15 s apart, first on the
// master, then on the slave, while the master takes a synced write every
// half second. It runs in two OpenZFS qemu guests (internal/vmtest), whose
// clocks are theirs: the host's clock, which other tests share, is never
// touched. Failure detection runs on the monotonic clock, so: no failover
// (both keep role and epoch 0), replication goes on (one full transfer,
// then incrementals only, and every file written reaches the replica),
// snapshot names stay unique with sequence numbers increasing in creation
// order, and retention keeps the replication base (held) and the newest
// snapshot on both sides.
func TestClockJumps(t *testing.T) {
	img := vmtest.RequireImages(t)
	script, err := os.ReadFile("testdata/clockjump.sh")
	if err != nil {
		t.Fatal(err)
	}
	files, prints := vmtest.PairCredentials(t)
	ip := map[string]string{"a": "192.0.2.11", "b": "192.0.2.12"}
	zfs := map[string]string{"a": "tank/app", "b": "backup/app"}
	role := map[string]string{"a": "master", "b": "slave"}
	peer := map[string]string{"a": "b", "b": "a"}
	for _, n := range []string{"a", "b"} {
		// Timing loosened for software-emulated guests on a busy host (a
		// zfs snapshot took 9 s at load 18): a detector that read the wall
		// clock would still trip on a step of a day.
		files[n+".ini"] = fmt.Appendf(nil, `[node]
name = %s
listen = %s:7946
[peer]
name = %s
address = %s:7946
fingerprint = %s
[dataset "app"]
zfs = %s
[notify]
mode = auto
interval = 200ms
[failover]
heartbeat = 1s
timeout = 30s
[state]
role = %s
epoch = 0
`, n, ip[n], peer[n], ip[peer[n]], prints[peer[n]], zfs[n], role[n])
	}
	pool := []vmtest.Disk{{Serial: "pool0", Size: 1 << 30}}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := vmtest.Run(ctx, vmtest.Spec{
		Images:  img,
		Guests:  []vmtest.Guest{{Name: "a", Disks: pool, Out: true}, {Name: "b", Disks: pool, Out: true}},
		Script:  string(script),
		Files:   files,
		Timeout: 15 * time.Minute,
		Log:     slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		if res != nil {
			for _, g := range res.Guests {
				t.Logf("console of %s:\n%s", g.Name, g.Console)
			}
		}
		t.Fatalf("vm run: %v", err)
	}
	t.Logf("pair run: %v, %d attempt(s), zfs %s", time.Since(start).Round(time.Second), res.Attempts, img.ZFSVersion)
	a, b := res.Guest("a"), res.Guest("b")
	defer func() {
		if t.Failed() {
			keep := filepath.Join(os.TempDir(), "flocker-clockjump-"+time.Now().UTC().Format("20060102T150405"))
			for _, g := range []*vmtest.GuestResult{a, b} {
				for name, data := range g.Out {
					if os.MkdirAll(keep, 0o755) == nil {
						_ = os.WriteFile(filepath.Join(keep, g.Name+"-"+name), data, 0o644)
					}
				}
			}
			t.Logf("the guests' /out files are kept in %s", keep)
			for _, g := range []*vmtest.GuestResult{a, b} {
				log := string(g.Out["agent.log"])
				t.Logf("%s console:\n%s\nagent log (tail):\n%s", g.Name, g.Console, log[max(0, len(log)-6000):])
			}
		}
	}()
	if err := res.Err(); err != nil {
		t.Fatalf("scenario failed: %v", err)
	}
	for _, g := range []*vmtest.GuestResult{a, b} {
		t.Logf("%s: clock steps (seconds, then the clock after): %s", g.Name, strings.ReplaceAll(strings.TrimSpace(string(g.Out["jumps"])), "\n", "; "))
		if n := strings.Count(string(g.Out["jumps"]), "\n"); n != 3 {
			t.Errorf("%s stepped its clock %d times, want 3", g.Name, n)
		}
		if rc := string(g.Out["agent.rc"]); rc != "0\n" {
			t.Errorf("%s: agent exit %q", g.Name, rc)
		}
		log := string(g.Out["agent.log"])
		if strings.Contains(log, `"msg":"failover decision"`) && (strings.Contains(log, "confirmed dead") || strings.Contains(log, "fencing")) {
			t.Errorf("%s: a failover decision was taken", g.Name)
		}
		t.Logf("%s: %d failover decisions logged, %d pruning rounds", g.Name,
			strings.Count(log, `"msg":"failover decision"`), strings.Count(log, `"msg":"pruned snapshots"`))
	}
	for g, want := range map[*vmtest.GuestResult]string{a: "role = master\nepoch = 0", b: "role = slave\nepoch = 0"} {
		if !strings.Contains(string(g.Out["final.ini"]), want) {
			t.Errorf("%s's final state is not %q:\n%s", g.Name, want, g.Out["final.ini"])
		}
	}
	// Every file a wrote (synced) reached b.
	la, lb := string(a.Out["listing"]), string(b.Out["listing"])
	writes := strings.Count(la, "w-")
	t.Logf("a wrote %d files through the jumps", writes)
	if writes < 20 || la != lb {
		t.Errorf("a's listing (%d writes) and b's differ or are too short:\na: %q\nb: %q", writes, la, lb)
	}
	var full, incr int
	for _, l := range strings.Split(string(a.Out["agent.log"]), "\n") {
		if strings.Contains(l, `"msg":"transfer started"`) {
			switch {
			case strings.Contains(l, `"kind":"full"`):
				full++
			case strings.Contains(l, `"kind":"incremental"`):
				incr++
			}
		}
	}
	t.Logf("a started %d full and %d incremental transfers", full, incr)
	if full != 1 || incr == 0 {
		t.Errorf("a started %d full and %d incremental transfers; want one full, then incrementals", full, incr)
	}
	snapsA := checkSnapshots(t, "a", string(a.Out["snaps"]))
	snapsB := checkSnapshots(t, "b", string(b.Out["snaps"]))
	if len(snapsA) == 0 || len(snapsB) == 0 {
		t.Fatal("no snapshots left")
	}
	// The scenario records both lists once a's newest snapshot is on b.
	if newest := snapsA[len(snapsA)-1]; snapsB[len(snapsB)-1] != newest {
		t.Errorf("a's newest snapshot %s is not b's newest (b has %v)", newest, snapsB)
	}
	// Retention: what was snapshotted while a's clock ran a day ahead is
	// dated in the future and kept until the clock catches up; what was
	// snapshotted a day behind is thinned to one per hour. Neither touches
	// the held base or the newest snapshot.
	t.Logf("a's snapshots dated after its final clock: %d; b's: %d", future(string(a.Out["snaps"])), future(string(b.Out["snaps"])))
	if h := strings.TrimSpace(string(a.Out["holds"])); h == "" {
		t.Error("no snapshot on a is held: the replication base is unprotected")
	} else {
		t.Logf("a's holds: %s", strings.ReplaceAll(h, "\n", "; "))
	}
}

// checkSnapshots parses `zfs list -H -p -o name,createtxg,creation -s
// createtxg` and checks that flocker's names are unique and that their
// (epoch, seq) increase in creation order; it returns the short names.
func checkSnapshots(t *testing.T, guest, list string) []string {
	t.Helper()
	var names []string
	var last snapshot.FlockerName
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		short := f[0][strings.IndexByte(f[0], '@')+1:]
		n, err := snapshot.ParseFlockerName(short)
		if err != nil {
			continue // not flocker's
		}
		if seen[short] {
			t.Errorf("%s: snapshot name %s twice", guest, short)
		}
		seen[short] = true
		if len(names) > 0 && (n.Epoch < last.Epoch || n.Epoch == last.Epoch && n.Seq <= last.Seq) {
			t.Errorf("%s: %s created after %s", guest, short, last)
		}
		last = n
		names = append(names, short)
		if _, err := strconv.ParseInt(f[2], 10, 64); err != nil {
			t.Errorf("%s: creation of %s: %q", guest, short, f[2])
		}
	}
	t.Logf("%s: %d flocker snapshots after the jumps, %s .. %s", guest, len(names), first(names), last)
	return names
}

// future counts the snapshots of a `zfs list -p ... name,createtxg,creation`
// listing whose creation is after the newest one's.
func future(list string) int {
	var times []int64
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			if v, err := strconv.ParseInt(f[2], 10, 64); err == nil {
				times = append(times, v)
			}
		}
	}
	n := 0
	for _, v := range times {
		if len(times) > 0 && v > times[len(times)-1] {
			n++
		}
	}
	return n
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
