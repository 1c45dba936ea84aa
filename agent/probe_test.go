//go:build linux

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/flockerha/flocker/bpf"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/snapshot"
	"golang.org/x/sys/unix"
)

func TestProbeTiers(t *testing.T) {
	have := bpf.Have()
	no := func(why string) Feature { return Feature{Reason: why} }
	allHave := KernelSection{KernelReport: bpf.KernelReport{
		BTF: have, RingBuf: have, TPBTF: have, Tracepoint: have, RawTracepoint: have,
		Fentry: have, Fexit: have, Kprobe: have, LSM: have, BlockTracepoint: have,
	}, Fanotify: have, FanotifyFID: have}

	type want struct {
		avail  bool
		reason string
	}
	for _, tc := range []struct {
		name   string
		change func(*KernelSection)
		want   map[string]want
	}{
		{"everything", func(*KernelSection) {}, map[string]want{
			"fentry": {true, ""}, "kprobe": {true, ""}, "tracepoint": {true, ""},
			"block": {true, ""}, "fanotify": {true, ""}, "timer": {true, ""},
		}},
		{"this host", func(k *KernelSection) {
			k.Fentry, k.Fexit, k.LSM = no("load: EPERM"), no("load: EPERM"), no("load: EPERM")
			k.Kprobe = no("attach: ENOENT")
		}, map[string]want{
			"fentry": {false, "fentry: load: EPERM; fexit: load: EPERM"}, "kprobe": {false, "kprobe: attach: ENOENT"},
			"tracepoint": {true, ""}, "block": {true, ""}, "fanotify": {true, ""}, "timer": {true, ""},
		}},
		{"classic tracepoint alone serves the tier", func(k *KernelSection) { k.TPBTF = no("no BTF") },
			map[string]want{"tracepoint": {true, ""}}},
		{"no tracepoints at all", func(k *KernelSection) { k.TPBTF, k.Tracepoint = no("no BTF"), no("no tracefs") },
			map[string]want{"tracepoint": {false, "tp_btf: no BTF; tracepoint: no tracefs"}}},
		{"no ring buffer", func(k *KernelSection) { k.RingBuf = no("EINVAL") }, map[string]want{
			"fentry": {false, "ringbuf: EINVAL"}, "kprobe": {false, "ringbuf: EINVAL"},
			"tracepoint": {false, "ringbuf: EINVAL"}, "block": {true, ""}, "timer": {true, ""},
		}},
		{"nothing", func(k *KernelSection) { *k = KernelSection{} }, map[string]want{
			"block": {false, "block_tracepoint: "}, "fanotify": {false, "fanotify: "}, "timer": {true, ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := allHave
			tc.change(&k)
			tiers := ProbeTiers(k)
			var names []string
			for _, tier := range tiers {
				names = append(names, tier.Name)
				if w, ok := tc.want[tier.Name]; ok && (tier.Available != w.avail || tier.Reason != w.reason) {
					t.Errorf("%s: got %v %q, want %v %q", tier.Name, tier.Available, tier.Reason, w.avail, w.reason)
				}
			}
			if !slices.Equal(names, Tiers) {
				t.Errorf("tiers %v, want in preference order %v", names, Tiers)
			}
		})
	}
}

// The JSON `flocker probe --json` prints, declared separately from the code's
// types so a renamed or added key fails here. Pointers tell absent from zero.
type jsonFeature struct {
	Available *bool   `json:"available"`
	Reason    *string `json:"reason"`
}

type jsonReport struct {
	Kernel struct {
		Release         *string      `json:"release"`
		BTF             *jsonFeature `json:"btf"`
		RingBuf         *jsonFeature `json:"ringbuf"`
		TPBTF           *jsonFeature `json:"tp_btf"`
		Tracepoint      *jsonFeature `json:"tracepoint"`
		RawTracepoint   *jsonFeature `json:"raw_tracepoint"`
		Fentry          *jsonFeature `json:"fentry"`
		Fexit           *jsonFeature `json:"fexit"`
		Kprobe          *jsonFeature `json:"kprobe"`
		LSM             *jsonFeature `json:"lsm"`
		BlockTracepoint *jsonFeature `json:"block_tracepoint"`
		Fanotify        *jsonFeature `json:"fanotify"`
		FanotifyFID     *jsonFeature `json:"fanotify_fid"`
		Mountpoint      *struct {
			Path *string `json:"path"`
			FSID *bool   `json:"fsid"`
		} `json:"mountpoint"`
	} `json:"kernel"`
	Tiers []struct {
		Name      *string `json:"name"`
		Available *bool   `json:"available"`
		Reason    *string `json:"reason"`
	} `json:"tiers"`
	ZFS struct {
		Dialect  *string `json:"dialect"`
		Version  *string `json:"version"`
		Features *struct {
			ListP              *bool `json:"list_p"`
			Bookmarks          *bool `json:"bookmarks"`
			ResumableReceive   *bool `json:"resumable_receive"`
			Holds              *bool `json:"holds"`
			WrittenProperty    *bool `json:"written_property"`
			SendDryRunParsable *bool `json:"send_dryrun_parsable"`
			HoldsList          *bool `json:"holds_list"`
			MultiSnapshot      *bool `json:"snapshot_multi"`
			DestroyList        *bool `json:"destroy_snapshot_list"`
			SetMultiple        *bool `json:"set_multi"`
			ReceiveO           *bool `json:"receive_o"`
			ReceiveU           *bool `json:"receive_u"`
			SendC              *bool `json:"send_c"`
			SendL              *bool `json:"send_L"`
		} `json:"features"`
		Reason *string `json:"reason"`
	} `json:"zfs"`
	Selection *struct {
		Mountpoint *string `json:"mountpoint"`
		Tier       *string `json:"tier"`
		Refused    []struct {
			Tier   *string `json:"tier"`
			Reason *string `json:"reason"`
		} `json:"refused"`
		Error *string `json:"error"`
	} `json:"selection"`
}

// decodeProbeJSON decodes b strictly into the expected shape (no unknown
// keys) and checks that every expected key is present.
func decodeProbeJSON(t *testing.T, b []byte, withMountpoint bool) jsonReport {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r jsonReport
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decoding the report strictly: %v\n%s", err, b)
	}
	k := r.Kernel
	feats := map[string]*jsonFeature{
		"btf": k.BTF, "ringbuf": k.RingBuf, "tp_btf": k.TPBTF, "tracepoint": k.Tracepoint,
		"raw_tracepoint": k.RawTracepoint, "fentry": k.Fentry, "fexit": k.Fexit, "kprobe": k.Kprobe,
		"lsm": k.LSM, "block_tracepoint": k.BlockTracepoint, "fanotify": k.Fanotify, "fanotify_fid": k.FanotifyFID,
	}
	if k.Release == nil {
		t.Error("kernel.release missing")
	}
	for name, f := range feats {
		if f == nil || f.Available == nil || f.Reason == nil {
			t.Errorf("kernel.%s: missing or incomplete: %+v", name, f)
		}
	}
	if (k.Mountpoint != nil) != withMountpoint || (k.Mountpoint != nil && (k.Mountpoint.Path == nil || k.Mountpoint.FSID == nil)) {
		t.Errorf("kernel.mountpoint: %+v (want present: %v)", k.Mountpoint, withMountpoint)
	}
	if sel := r.Selection; (sel != nil) != withMountpoint || (sel != nil && (sel.Mountpoint == nil || sel.Tier == nil || sel.Refused == nil)) {
		t.Errorf("selection: %+v (want present: %v)", sel, withMountpoint)
	}
	for i, tier := range r.Tiers {
		if tier.Name == nil || tier.Available == nil || tier.Reason == nil {
			t.Errorf("tiers[%d] incomplete", i)
		}
	}
	z := r.ZFS
	if z.Dialect == nil || z.Version == nil || z.Features == nil {
		t.Fatalf("zfs section incomplete")
	}
	f := z.Features
	if f.ListP == nil || f.Bookmarks == nil || f.ResumableReceive == nil || f.Holds == nil || f.WrittenProperty == nil || f.SendDryRunParsable == nil ||
		f.HoldsList == nil || f.MultiSnapshot == nil || f.DestroyList == nil || f.SetMultiple == nil || f.ReceiveO == nil || f.ReceiveU == nil || f.SendC == nil || f.SendL == nil {
		t.Errorf("zfs.features incomplete: %+v", f)
	}
	return r
}

// The whole probe on this host, against its measured facts
// (/work/shared/notes/machine.md): tp_btf yes, fentry and kprobe no with the
// kernel's reason, zfs-fuse with holds and receive -u only.
func TestProbeOnThisHost(t *testing.T) {
	testutil.RequireRoot(t)
	cli := snapshot.NewCLI("", "", testLog(t))
	_, err := cli.Zpool(context.Background(), "list")
	testutil.RequireNoError(t, "zfs tools answering (zfs-fuse daemon running?)", err)

	r, err := Probe(context.Background(), ProbeOptions{ZFS: cli, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	k := r.Kernel
	if !k.TPBTF.Available || !k.RingBuf.Available || !k.Fanotify.Available || !k.FanotifyFID.Available {
		t.Errorf("want tp_btf, ringbuf, fanotify, fanotify_fid available: %+v", k)
	}
	if k.Fentry.Available || k.Fentry.Reason == "" || k.Kprobe.Available || k.Kprobe.Reason == "" {
		t.Errorf("want fentry and kprobe refused with a reason: fentry %+v kprobe %+v", k.Fentry, k.Kprobe)
	}
	if k.Mountpoint != nil {
		t.Errorf("mountpoint reported without being asked: %+v", k.Mountpoint)
	}
	tiers := map[string]Tier{}
	for _, tier := range r.Tiers {
		tiers[tier.Name] = tier
	}
	if tr := tiers["fentry"]; tr.Available || !strings.Contains(tr.Reason, "fentry: "+k.Fentry.Reason) {
		t.Errorf("fentry tier %+v should name fentry's refusal %q", tr, k.Fentry.Reason)
	}
	if tr := tiers["kprobe"]; tr.Available || !strings.Contains(tr.Reason, "kprobe: "+k.Kprobe.Reason) {
		t.Errorf("kprobe tier %+v should name kprobe's refusal %q", tr, k.Kprobe.Reason)
	}
	if !tiers["tracepoint"].Available || !tiers["timer"].Available {
		t.Errorf("tracepoint and timer tiers should be available: %+v", r.Tiers)
	}
	wantZFS := ZFSSection{Dialect: snapshot.DialectZFSFuse, Version: "pool version 23", Features: snapshot.Features{Holds: true, ReceiveNoMount: true}}
	if r.ZFS != wantZFS {
		t.Errorf("zfs %+v, want %+v", r.ZFS, wantZFS)
	}

	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	decodeProbeJSON(t, b, false)

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kernel " + k.Release, "fentry", k.Kprobe.Reason, "notifier tiers", "zfs zfs-fuse (pool version 23)", "holds"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

// Without ZFS the report says why in the zfs section; the probe still succeeds.
func TestProbeWithoutZFS(t *testing.T) {
	r, err := Probe(context.Background(), ProbeOptions{
		ZFS: snapshot.NewCLI("/nonexistent/zfs", "/nonexistent/zpool", testLog(t)),
		Log: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.ZFS.Dialect != DialectNone || !strings.Contains(r.ZFS.Reason, "zfs is not installed") {
		t.Errorf("zfs section %+v: want dialect none with the reason", r.ZFS)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeProbeJSON(t, b, false); got.ZFS.Reason == nil {
		t.Error("zfs.reason missing from the JSON")
	}
}

// A tmpfs has an fsid: both fanotify modes can mark it.
func TestProbeMountpointTmpfs(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("flocker-probe-test", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	r, err := Probe(context.Background(), ProbeOptions{Mountpoint: dir, ZFS: snapshot.NewCLI("", "", testLog(t)), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if mp := r.Kernel.Mountpoint; mp == nil || mp.Path != dir || !mp.FSID {
		t.Errorf("mountpoint %+v: want %s with an fsid", mp, dir)
	}
	if !r.Kernel.Fanotify.Available || !r.Kernel.FanotifyFID.Available {
		t.Errorf("fanotify %+v, fanotify_fid %+v: want both available on tmpfs", r.Kernel.Fanotify, r.Kernel.FanotifyFID)
	}
	// What auto mode picks there: a tier that attached, after every better
	// one was refused with its reason.
	sel := r.Selection
	if sel == nil || sel.Mountpoint != dir || sel.Tier == "" || sel.Error != "" {
		t.Fatalf("selection %+v: want a tier for %s", sel, dir)
	}
	if i := slices.Index(Tiers, sel.Tier); len(sel.Refused) != i {
		t.Errorf("selection %+v: want one refusal per better tier", sel)
	}
	for _, ref := range sel.Refused {
		if ref.Reason == "" {
			t.Errorf("refusal of %s has no reason", ref.Tier)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	decodeProbeJSON(t, b, true)
}

// BenchmarkProbe measures what `flocker probe` does: every kernel check, the
// fanotify checks and ZFS detection. It must stay well under 2 s on this host.
func BenchmarkProbe(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		if _, err := Probe(context.Background(), ProbeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
