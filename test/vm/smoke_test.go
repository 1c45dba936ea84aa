// Package vm_test is the CI smoke test of the VM tier: two qemu guests with
// the stock Debian 6.1 kernel and real OpenZFS 2.3 (built by
// build-images.sh), linked by one Ethernet segment.
package vm_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/vmtest"
)

// TestSmoke boots guests a and b once and checks, as separate subtests, that
// they run the images' flocker, that a full and an incremental zfs send cross
// from a to b intact, and what `flocker probe` finds in the guest kernel.
func TestSmoke(t *testing.T) {
	img := vmtest.RequireImages(t)
	script, err := os.ReadFile("testdata/smoke.sh")
	if err != nil {
		t.Fatal(err)
	}
	pool := []vmtest.Disk{{Serial: "pool0", Size: 1 << 30}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := vmtest.Run(ctx, vmtest.Spec{
		Images:  img,
		Guests:  []vmtest.Guest{{Name: "a", Disks: pool, Out: true}, {Name: "b", Disks: pool, Out: true}},
		Script:  string(script),
		Timeout: 4 * time.Minute,
		Log:     slog.New(slog.NewTextHandler(tWriter{t}, nil)),
	})
	if err != nil {
		if res != nil {
			for _, g := range res.Guests {
				t.Logf("console of %s:\n%s", g.Name, g.Console)
			}
		}
		t.Fatalf("vm run: %v", err)
	}
	t.Logf("pair run: %v, %d attempt(s), zfs %s, kernel %s", time.Since(start).Round(time.Second), res.Attempts, img.ZFSVersion, img.KernelRelease)
	a, b := res.Guest("a"), res.Guest("b")

	t.Run("images", func(t *testing.T) {
		for _, g := range []*vmtest.GuestResult{a, b} {
			sum, _, _ := strings.Cut(string(g.Out["flocker.sha256"]), " ")
			if sum != img.FlockerSHA256 {
				t.Errorf("%s: /usr/bin/flocker sha256 %q, manifest says %q", g.Name, sum, img.FlockerSHA256)
			}
			if got := strings.TrimSpace(string(g.Out["uname"])); got != img.KernelRelease {
				t.Errorf("%s: uname -r = %q, want %q", g.Name, got, img.KernelRelease)
			}
		}
	})

	t.Run("zfs_send_recv", func(t *testing.T) {
		if err := res.Err(); err != nil {
			t.Fatalf("scenario failed: %v", err)
		}
		// What a wrote: s1 has f0 and f1; s2 dropped f0, changed f1, added f2.
		wantFiles := map[string][]string{"s1": {"./f0", "./f1"}, "s2": {"./f1", "./f2"}}
		for _, snap := range []string{"s1", "s2"} {
			sent := parseSums(t, a.Out[snap+".sums"])
			got := parseSums(t, b.Out[snap+".sums"])
			if files := slices.Sorted(maps.Keys(sent)); !slices.Equal(files, wantFiles[snap]) {
				t.Fatalf("%s: a has files %v, want %v", snap, files, wantFiles[snap])
			}
			if !maps.Equal(sent, got) {
				t.Errorf("%s: b's files differ from a's:\na: %v\nb: %v", snap, sent, got)
			}
		}
		if s1, s2 := parseSums(t, a.Out["s1.sums"]), parseSums(t, a.Out["s2.sums"]); s1["./f1"] == s2["./f1"] {
			t.Errorf("f1 has the same checksum in s1 and s2: the change did not reach the incremental stream")
		}
		ga, gb := strings.TrimSpace(string(a.Out["guids"])), strings.TrimSpace(string(b.Out["guids"]))
		if !regexp.MustCompile(`^s1 [0-9]+\ns2 [0-9]+$`).MatchString(ga) || ga != gb {
			t.Errorf("snapshot GUIDs: a %q, b %q; want the same two", ga, gb)
		}
		if got, want := strings.Fields(string(b.Out["snapshots"])), []string{"backup/data@s1", "backup/data@s2"}; !slices.Equal(got, want) {
			t.Errorf("b's snapshots = %v, want %v", got, want)
		}
	})

	// Needs `flocker probe` (issue 2, item 7).
	t.Run("probe", func(t *testing.T) {
		for _, g := range []*vmtest.GuestResult{a, b} {
			checkProbe(t, g, img)
		}
	})
}

// probeReport is the part of `flocker probe --json` this test judges.
type probeReport struct {
	Kernel map[string]json.RawMessage `json:"kernel"`
	Tiers  []struct {
		Name      string `json:"name"`
		Available bool   `json:"available"`
		Reason    string `json:"reason"`
	} `json:"tiers"`
	ZFS struct {
		Dialect string `json:"dialect"`
		Version string `json:"version"`
	} `json:"zfs"`
}

type capability struct {
	Available bool   `json:"available"`
	Reason    string `json:"reason"`
}

func checkProbe(t *testing.T, g *vmtest.GuestResult, img *vmtest.Images) {
	t.Helper()
	rc := strings.TrimSpace(string(g.Out["probe.rc"]))
	if rc != "0" {
		t.Errorf("%s: flocker probe --json exit %q; stderr: %s", g.Name, rc, g.Out["probe.err"])
		return
	}
	var rep probeReport
	if err := json.Unmarshal(g.Out["probe.json"], &rep); err != nil {
		t.Errorf("%s: decoding probe output: %v\n%s", g.Name, err, g.Out["probe.json"])
		return
	}
	for _, name := range []string{"fentry", "kprobe", "lsm"} {
		raw, ok := rep.Kernel[name]
		if !ok {
			t.Errorf("%s: probe has no kernel.%s (has %v)", g.Name, name, slices.Sorted(maps.Keys(rep.Kernel)))
			continue
		}
		var c capability
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Errorf("%s: kernel.%s: %v", g.Name, name, err)
			continue
		}
		if !c.Available {
			t.Errorf("%s: kernel.%s unavailable in the guest: %s", g.Name, name, c.Reason)
		}
	}
	// The eBPF tiers' real programs load and attach in the stock kernel.
	avail := map[string]bool{}
	for _, tier := range rep.Tiers {
		avail[tier.Name] = tier.Available
		if !tier.Available && tier.Name != "fanotify" {
			t.Errorf("%s: notifier tier %s unavailable in the guest: %s", g.Name, tier.Name, tier.Reason)
		}
	}
	for _, name := range []string{"fentry", "kprobe", "tracepoint", "block"} {
		if _, ok := avail[name]; !ok {
			t.Errorf("%s: probe lists no tier %s", g.Name, name)
		}
	}
	if rep.ZFS.Dialect != "openzfs" {
		t.Errorf("%s: zfs dialect %q, want openzfs", g.Name, rep.ZFS.Dialect)
	}
	// The guest runs the zfs-dkms version the images were built from.
	want := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+`).FindString(img.ZFSVersion)
	if !strings.HasPrefix(rep.ZFS.Version, "2.3.") || !strings.HasPrefix(rep.ZFS.Version, want) {
		t.Errorf("%s: zfs version %q, want 2.3.x (%s)", g.Name, rep.ZFS.Version, want)
	}
}

// parseSums reads sha256sum output into path -> checksum.
func parseSums(t *testing.T, data []byte) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) != 2 || len(f[0]) != 64 {
			t.Fatalf("bad checksum line %q", line)
		}
		sums[f[1]] = f[0]
	}
	return sums
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
