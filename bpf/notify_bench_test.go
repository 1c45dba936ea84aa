//go:build linux

package bpf

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/flockerha/flocker/internal/testutil"
	"golang.org/x/sys/unix"
)

// BenchDirEnv names a mounted filesystem BenchmarkPwriteOverhead tracks
// instead of a fresh tmpfs (the VM benchmark uses an OpenZFS dataset).
const BenchDirEnv = "FLOCKER_BENCH_DIR"

// Benchmark protocol: each round writes N 16-byte pwrites with no probes,
// then loads the tier and writes as many to the tracked and to an untracked
// filesystem, then unloads it; medians over R rounds. The no-probe baseline
// is measured in every round, beside the tier, so a busy machine's drift
// hits both. The environment can shrink N and R (the TCG guests are 10-50
// times slower): FLOCKER_BENCH_WRITES, FLOCKER_BENCH_ROUNDS, and
// FLOCKER_BENCH_EVENT_WRITES for the event counts.
var (
	benchWrites      = envInt("FLOCKER_BENCH_WRITES", 200_000)
	benchRounds      = envInt("FLOCKER_BENCH_ROUNDS", 7)
	benchEventWrites = envInt("FLOCKER_BENCH_EVENT_WRITES", 1_000_000)
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type benchConfig struct {
	name string
	opts TierOptions
	// empty, instead of a tier, attaches the probe object's empty program
	// to the same hook: what the hook costs before any logic.
	empty string
}

var benchConfigs = []benchConfig{
	{name: "empty-tp_btf-sys_exit", empty: "probe_tp_btf"},
	{name: "tracepoint", opts: TierOptions{Tier: TierTracepoint, Variant: VariantTPBTF}},
	{name: "tracepoint-no-fast-path", opts: TierOptions{Tier: TierTracepoint, Variant: VariantTPBTF, NoFastPath: true}},
	{name: "raw_syscalls", opts: TierOptions{Tier: TierTracepoint, Variant: VariantRawSyscalls}},
	{name: "empty-fexit-vfs_write", empty: "probe_fexit"},
	{name: "fentry", opts: TierOptions{Tier: TierFentry}},
	{name: "kprobe", opts: TierOptions{Tier: TierKprobe}},
}

// attachEmpty attaches one of the probe object's empty programs.
func attachEmpty(name string) (io.Closer, error) {
	spec, err := loadProbe()
	if err != nil {
		return nil, err
	}
	p := &prober{spec: spec, cache: kernelBTF, log: slog.New(slog.DiscardHandler)}
	prog, err := p.load(name)
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	at := ebpf.AttachTraceRawTp
	if name == "probe_fexit" {
		at = ebpf.AttachTraceFExit
	}
	return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: at})
}

// attachConfig loads what cfg measures and adds the tracked filesystem.
func attachConfig(cfg benchConfig, dev uint32, dir string) (io.Closer, error) {
	if cfg.empty != "" {
		return attachEmpty(cfg.empty)
	}
	tier, err := LoadTier(cfg.opts)
	if err != nil {
		return nil, err
	}
	if _, err := tier.AddTarget(Target{Devs: []uint32{dev}, Mountpoints: []string{dir}}); err != nil {
		tier.Close()
		return nil, err
	}
	return tier, nil
}

// pwriteNs is the mean cost of n 16-byte pwrites to f.
func pwriteNs(b *testing.B, f *os.File, n int) float64 {
	buf := make([]byte, 16)
	fd := int(f.Fd())
	start := time.Now()
	for i := range n {
		if _, err := unix.Pwrite(fd, buf, int64(i%256)*16); err != nil {
			b.Fatal(err)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPwriteOverhead reports, per tier that loads here, the median ns
// per 16-byte pwrite without probes, with the tier attached on the tracked
// filesystem (its flag set: the steady state while a snapshot is pending)
// and on an untracked one, the differences, and events per million writes
// with the flag held and with a reader re-arming after every event.
// Tiers this kernel refuses are logged and left out.
func BenchmarkPwriteOverhead(b *testing.B) {
	testutil.RequireRoot(b)
	tracked := os.Getenv(BenchDirEnv)
	if tracked == "" {
		tracked = tmpfs(b)
	}
	untracked := tmpfs(b)
	ft := benchFile(b, tracked)
	fu := benchFile(b, untracked)
	dev := kernelDev(b, tracked)
	for _, cfg := range benchConfigs {
		probe, err := attachConfig(cfg, dev, tracked)
		if err != nil {
			b.Logf("%s: not measured: %v", cfg.name, err)
			continue
		}
		probe.Close()
		b.Run(cfg.name, func(b *testing.B) {
			for b.Loop() {
				var base, tr, un []float64
				for range benchRounds {
					base = append(base, pwriteNs(b, ft, benchWrites))
					tier, err := attachConfig(cfg, dev, tracked)
					if err != nil {
						b.Fatal(err)
					}
					pwriteNs(b, ft, 1) // dirty the flag: steady state
					tr = append(tr, pwriteNs(b, ft, benchWrites))
					un = append(un, pwriteNs(b, fu, benchWrites))
					tier.Close()
				}
				b.ReportMetric(median(base), "ns/pwrite-no-probe")
				b.ReportMetric(median(tr), "ns/pwrite-tracked")
				b.ReportMetric(median(un), "ns/pwrite-untracked")
				b.ReportMetric(median(tr)-median(base), "ns-added/pwrite-tracked")
				b.ReportMetric(median(un)-median(base), "ns-added/pwrite-untracked")
				if cfg.empty != "" {
					continue
				}
				if ns, runs, ok := bpfTimePerWrite(b, cfg, dev, tracked, ft); ok {
					b.ReportMetric(ns, "ns-in-bpf/pwrite-tracked")
					b.ReportMetric(runs, "bpf-runs/pwrite-tracked")
				}
				held, rearmed := eventsPerMillion(b, cfg.opts, dev, tracked, ft)
				b.ReportMetric(held, "events/dirty-period")
				b.ReportMetric(rearmed, "events/1M-pwrites-rearmed")
			}
		})
	}
}

func benchFile(b *testing.B, dir string) *os.File {
	f, err := os.OpenFile(filepath.Join(dir, "flocker-bench"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		f.Close()
		os.Remove(f.Name())
	})
	return f
}

// eventsPerMillion counts the events of benchEventWrites pwrites with the
// flag armed once and then held (one dirty period: want one), and, per
// million pwrites, with a reader that re-arms at every event (at most one
// event per write; fewer, the slower the reader).
func eventsPerMillion(b *testing.B, opts TierOptions, dev uint32, dir string, f *os.File) (held, rearmed float64) {
	n := benchEventWrites
	count := func(rearm bool) int64 {
		tier, err := LoadTier(opts)
		if err != nil {
			b.Fatal(err)
		}
		defer tier.Close()
		id, err := tier.AddTarget(Target{Devs: []uint32{dev}, Mountpoints: []string{dir}})
		if err != nil {
			b.Fatal(err)
		}
		var events atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, err := tier.ReadEvent(); err != nil {
					return
				}
				events.Add(1)
				if rearm {
					tier.Arm(id)
				}
			}
		}()
		pwriteNs(b, f, n)
		time.Sleep(100 * time.Millisecond) // let the reader drain
		tier.Close()
		<-done
		return events.Load() + int64(tier.Lost(id))
	}
	// Held: one dirty period however many writes, so not scaled.
	return float64(count(false)), float64(count(true)) * 1e6 / float64(n)
}

// bpfTimePerWrite is the tier's programs' run time, as the kernel counts it
// with BPF statistics on, during tracked writes, per write: steadier than
// wall-clock differences on a noisy machine, but it leaves out what the
// hook costs outside the program (the syscall slow path of a sys_exit
// tracepoint, the fexit trampoline), and for the tracepoint tier it counts
// every process's system calls meanwhile. Statistics cost time themselves,
// so they are on only for this pass.
func bpfTimePerWrite(b *testing.B, cfg benchConfig, dev uint32, dir string, f *os.File) (ns, runs float64, ok bool) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Logf("no BPF run-time statistics: %v", err)
		return 0, 0, false
	}
	defer stats.Close()
	c, err := attachConfig(cfg, dev, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	t := c.(*Tier)
	pwriteNs(b, f, 1)
	var v, r []float64
	for range benchRounds {
		n0, rt0 := t.RunStats()
		pwriteNs(b, f, benchWrites)
		n1, rt1 := t.RunStats()
		v = append(v, float64(rt1-rt0)/float64(benchWrites))
		r = append(r, float64(n1-n0)/float64(benchWrites))
	}
	return median(v), median(r), true
}
