//go:build linux

// Package agent is the flocker daemon and the host checks it depends on.
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flockerha/flocker/bpf"
	"github.com/flockerha/flocker/snapshot"
)

// ProbeReport is what `flocker probe` prints: the kernel's capabilities, the
// notifier tiers they allow, and the ZFS dialect.
type ProbeReport struct {
	Kernel KernelSection `json:"kernel"`
	Tiers  []Tier        `json:"tiers"`
	ZFS    ZFSSection    `json:"zfs"`
	// Selection is what auto mode picks for the --mountpoint, present only
	// when one was given.
	Selection *SelectionSection `json:"selection,omitempty"`
}

// SelectionSection is the tier that loaded and attached for a mountpoint in
// auto mode, and why each better tier was refused: the features above say
// what the kernel offers, this says what actually works there.
type SelectionSection struct {
	Mountpoint string    `json:"mountpoint"`
	Tier       string    `json:"tier"` // empty when none could watch it
	Refused    []Refusal `json:"refused"`
	Error      string    `json:"error,omitempty"` // why no tier could
}

// KernelSection is the BPF probe's findings plus the fanotify ones.
type KernelSection struct {
	bpf.KernelReport
	Fanotify    Feature         `json:"fanotify"`
	FanotifyFID Feature         `json:"fanotify_fid"`
	Mountpoint  *MountpointInfo `json:"mountpoint,omitempty"`
}

// MountpointInfo describes the --mountpoint the fanotify checks marked.
type MountpointInfo struct {
	Path string `json:"path"`
	FSID bool   `json:"fsid"`
}

// Tier is one notifier tier and whether this kernel offers what it needs.
type Tier struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Reason    string `json:"reason"`
}

// ZFSSection is the detected dialect; Reason says why there is none.
type ZFSSection struct {
	Dialect  string            `json:"dialect"`
	Version  string            `json:"version"`
	Features snapshot.Features `json:"features"`
	Reason   string            `json:"reason,omitempty"`
}

// DialectNone is the zfs section's dialect when no usable ZFS answered.
const DialectNone = "none"

// ProbeOptions configures Probe.
type ProbeOptions struct {
	// Mountpoint, when set, is the filesystem the fanotify checks mark and
	// whose fsid is reported; otherwise they mark "/".
	Mountpoint string
	ZFS        *snapshot.CLI // nil: zfs and zpool from PATH
	Log        *slog.Logger  // nil discards
}

// Bounds for the checks that wait on other processes. Healthy, the fanotify
// checks take microseconds and ZFS detection 3-4 zfs runs (about 30 ms here,
// under 1 s in the TCG guests at 0.1-0.17 s per run); a FUSE or zfs-fuse
// daemon that hangs would otherwise hang the probe with it.
const (
	mountpointTimeout = 3 * time.Second
	zfsTimeout        = 10 * time.Second
)

// Probe runs every check. It fails only when a check could not run at all
// (the mountpoint cannot be examined, the embedded BPF object is unusable);
// missing features and an absent ZFS are results. A mountpoint that does not
// exist fails with an error matching fs.ErrNotExist.
func Probe(ctx context.Context, opts ProbeOptions) (ProbeReport, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli := opts.ZFS
	if cli == nil {
		cli = snapshot.NewCLI("", "", log)
	}

	// ZFS detection is a few process runs: overlap it with the kernel checks.
	// Every return below waits for it, cancelled first on failure.
	zctx, zcancel := context.WithTimeout(ctx, zfsTimeout)
	defer zcancel()
	zfsDone := make(chan ZFSSection, 1)
	go func() { zfsDone <- detectZFS(zctx, cli) }()
	abandon := func(err error) (ProbeReport, error) {
		zcancel()
		<-zfsDone
		return ProbeReport{}, err
	}

	// The mountpoint first: a bad path fails before any BPF work.
	path := opts.Mountpoint
	if path == "" {
		path = "/"
	}
	fctx, cancel := context.WithTimeout(ctx, mountpointTimeout)
	fan, err := ProbeFanotify(fctx, path)
	cancel()
	if err != nil {
		return abandon(err)
	}

	k, err := bpf.ProbeKernel(bpf.ProbeOptions{Log: log})
	if err != nil {
		return abandon(err)
	}
	r := ProbeReport{Kernel: KernelSection{KernelReport: k, Fanotify: fan.Fanotify, FanotifyFID: fan.FanotifyFID}}
	if opts.Mountpoint != "" {
		r.Kernel.Mountpoint = &MountpointInfo{Path: fan.Path, FSID: fan.FSID}
	}

	r.Tiers = verifyEBPFTiers(ProbeTiers(r.Kernel), log)
	if opts.Mountpoint != "" {
		r.Selection = probeSelection(ctx, opts.Mountpoint, log)
	}
	r.ZFS = <-zfsDone
	return r, nil
}

// probeSelection runs the auto selection for path and undoes it.
func probeSelection(ctx context.Context, path string, log *slog.Logger) *SelectionSection {
	sel := &SelectionSection{Mountpoint: path, Refused: []Refusal{}}
	w, err := NewWatcher(WatcherOptions{Log: log})
	if err != nil {
		sel.Error = err.Error()
		return sel
	}
	defer w.Close()
	actx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	st, err := w.Watch(actx, Target{Name: path, Mountpoint: path})
	if err != nil {
		sel.Error = bpf.OneLine(err.Error())
		return sel
	}
	sel.Tier = st.Tier
	if st.Refused != nil {
		sel.Refused = st.Refused
	}
	return sel
}

func detectZFS(ctx context.Context, cli *snapshot.CLI) ZFSSection {
	d, err := cli.Detect(ctx)
	if err != nil {
		return ZFSSection{Dialect: DialectNone, Reason: bpf.OneLine(err.Error())}
	}
	s := ZFSSection{Dialect: d.Name, Version: d.Version, Features: d.Features}
	if s.Version == "" && d.PoolVersion > 0 {
		s.Version = fmt.Sprintf("pool version %d", d.PoolVersion)
	}
	return s
}

// ProbeTiers derives, in the order of Tiers, which notifier tiers the kernel
// features allow. A tier's reason names each missing feature with the
// kernel's error. (Loading the notifier's own programs refines this later.)
func ProbeTiers(k KernelSection) []Tier {
	tier := func(name string, missing ...[]string) Tier {
		var all []string
		for _, m := range missing {
			all = append(all, m...)
		}
		return Tier{Name: name, Available: len(all) == 0, Reason: strings.Join(all, "; ")}
	}
	ringbuf := lacks("ringbuf", k.RingBuf)
	// Either tracepoint flavour serves the tracepoint tier (tp_btf is cheaper),
	// so it lacks one only when both are missing.
	var tracepoint []string
	if !k.TPBTF.Available && !k.Tracepoint.Available {
		tracepoint = append(lacks("tp_btf", k.TPBTF), lacks("tracepoint", k.Tracepoint)...)
	}
	return []Tier{
		tier(TierFentry, lacks("fentry", k.Fentry), lacks("fexit", k.Fexit), ringbuf),
		tier(TierKprobe, lacks("kprobe", k.Kprobe), ringbuf),
		tier(TierTracepoint, tracepoint, ringbuf),
		tier(TierBlock, lacks("block_tracepoint", k.BlockTracepoint)),
		tier(TierFanotify, lacks("fanotify", k.Fanotify)),
		tier(TierTimer), // needs nothing: the safety net is always there
	}
}

// verifyEBPFTiers loads and attaches the real notifier programs of each
// eBPF tier the kernel's features allow, and detaches them again: a tier is
// available only when all its required programs load and attach. (A tier
// the features rule out keeps that reason: its programs would fail the
// same way.)
func verifyEBPFTiers(tiers []Tier, log *slog.Logger) []Tier {
	for i, t := range tiers {
		switch t.Name {
		case TierFentry, TierKprobe, TierTracepoint, TierBlock:
		default:
			continue
		}
		if !t.Available {
			continue
		}
		start := time.Now()
		bt, err := bpf.LoadTier(bpf.TierOptions{Tier: t.Name, Log: log})
		log.Debug("notifier tier programs", "tier", t.Name, "took", time.Since(start), "err", err)
		if err != nil {
			tiers[i].Available = false
			var te *bpf.TierError
			if errors.As(err, &te) {
				tiers[i].Reason = "notifier programs: " + te.Summary()
			} else {
				tiers[i].Reason = "notifier programs: " + bpf.OneLine(err.Error())
			}
			continue
		}
		if err := bt.Close(); err != nil {
			log.Warn("detaching probe of notifier tier", "tier", t.Name, "err", err)
		}
	}
	return tiers
}

// lacks is "name: reason" when f is missing, else nothing.
func lacks(name string, f Feature) []string {
	if f.Available {
		return nil
	}
	return []string{name + ": " + f.Reason}
}

// WriteText prints the report as tables for a person.
func (r ProbeReport) WriteText(w io.Writer) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintf(tw, "  %s\n", strings.Join(cells, "\t")) }
	k := r.Kernel
	fmt.Fprintf(tw, "kernel %s\n", k.Release)
	row("FEATURE", "AVAILABLE", "REASON")
	for _, f := range []struct {
		name string
		f    Feature
	}{
		{"btf", k.BTF}, {"ringbuf", k.RingBuf}, {"tp_btf", k.TPBTF}, {"tracepoint", k.Tracepoint},
		{"raw_tracepoint", k.RawTracepoint}, {"fentry", k.Fentry}, {"fexit", k.Fexit},
		{"kprobe", k.Kprobe}, {"lsm", k.LSM}, {"block_tracepoint", k.BlockTracepoint},
		{"fanotify", k.Fanotify}, {"fanotify_fid", k.FanotifyFID},
	} {
		row(f.name, yesNo(f.f.Available), f.f.Reason)
	}
	if mp := k.Mountpoint; mp != nil {
		row("mountpoint", mp.Path, "fsid: "+yesNo(mp.FSID))
	}

	fmt.Fprintln(tw, "\nnotifier tiers (best first)")
	row("TIER", "AVAILABLE", "REASON")
	for _, t := range r.Tiers {
		row(t.Name, yesNo(t.Available), t.Reason)
	}

	if sel := r.Selection; sel != nil {
		fmt.Fprintf(tw, "\nauto selection for %s: %s\n", sel.Mountpoint, orNone(sel.Tier))
		if sel.Error != "" {
			row(sel.Error)
		}
		if len(sel.Refused) > 0 {
			row("REFUSED", "REASON")
			for _, ref := range sel.Refused {
				row(ref.Tier, ref.Reason)
			}
		}
	}

	z := r.ZFS
	fmt.Fprintf(tw, "\nzfs %s", z.Dialect)
	if z.Version != "" {
		fmt.Fprintf(tw, " (%s)", z.Version)
	}
	fmt.Fprintln(tw)
	if z.Reason != "" {
		row(z.Reason)
		return flushTrimmed(w, tw, &buf)
	}
	row("FEATURE", "AVAILABLE")
	for _, x := range z.Features.Flags() {
		row(x.Name, yesNo(x.Available))
	}
	return flushTrimmed(w, tw, &buf)
}

// flushTrimmed writes the table without the padding tabwriter leaves after a
// row's last cell when that cell is empty.
func flushTrimmed(w io.Writer, tw *tabwriter.Writer, buf *bytes.Buffer) error {
	if err := tw.Flush(); err != nil {
		return err
	}
	var out strings.Builder
	for line := range strings.Lines(buf.String()) {
		out.WriteString(strings.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	_, err := io.WriteString(w, out.String())
	return err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
