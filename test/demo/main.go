// Command demo is `make demo`: two flocker hosts on this machine, built with
// the same rig and agent harness the end-to-end tests use (network
// namespaces, zfs-fuse pools, one agent process per host). It shows only
// what flocker does today and says plainly what it does not yet.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/logging"
	"github.com/flockerha/flocker/internal/rig"
)

func main() {
	bin := flag.String("flocker", "bin/flocker", "the flocker binary to run on each host")
	verbose := flag.Bool("v", false, "show the rig's own log")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logging.Discard()
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := run(ctx, os.Stdout, *bin, log); err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, bin string, log *slog.Logger) (err error) {
	bin, err = filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("flocker binary: %w (run make build)", err)
	}
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(out, "\n[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
		if err == nil {
			fmt.Fprintf(out, "\n[%5.1fs] cleaned up: agents stopped, namespaces, pools and files removed\n", time.Since(start).Seconds())
		}
	}()

	step("kernel filesystems and the zfs-fuse daemon")
	if err := rig.EnsureKernelFS(); err != nil {
		return err
	}
	z, err := rig.EnsureZFS(ctx, rig.ZFSOptions{Logger: log})
	if err != nil {
		return err
	}
	closers = append(closers, z.Close)
	if z.Started() {
		fmt.Fprintf(out, "  started zfs-fuse (pid %d); it stops again at the end\n", z.PID())
	} else {
		fmt.Fprintln(out, "  zfs-fuse was already running and answers")
	}

	step("two hosts: one zfs-fuse pool each, network namespaces a and b (and client c) on one L2 segment;")
	fmt.Fprintln(out, "  each host configured with flocker init, then flocker trust with the other's fingerprint")
	p, err := agentpair.New(ctx, agentpair.Options{Bin: bin, Logger: log, Settings: map[string]map[string]string{
		"notify": {"mode": demoTier},
	}})
	if err != nil {
		return err
	}
	closers = append(closers, p.Close)
	for _, n := range p.Nodes() {
		fmt.Fprintf(out, "  %-5s (%s) on host %s %s: dataset %s\n", n.Name, n.Role, n.Host.Name, n.Addr, n.Dataset)
		fmt.Fprintf(out, "        key, certificate and config in %s\n        fingerprint %s\n", n.Dir, n.Fingerprint)
	}
	fmt.Fprintf(out, "  (beta's replica %s does not exist yet: the first transfer creates it)\n", p.Slave.Dataset)
	for _, n := range p.Nodes() {
		res, err := n.Flocker(ctx, "check", "--config", n.Config)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  flocker check on %s:\n%s", n.Name, indent(res, "    "))
	}

	step("flocker probe on alpha: what this kernel and this ZFS offer flocker")
	res, err := p.Master.Flocker(ctx, "probe", "--json", "--mountpoint", p.Master.Mountpoint)
	if err != nil {
		return err
	}
	summary, err := summarizeProbe(res)
	if err != nil {
		return fmt.Errorf("probe on alpha: %w", err)
	}
	fmt.Fprint(out, indent(summary, "  "))

	step("alpha writes some files, then both agents start (flocker agent --config ..., one process per host)")
	if err := writeDemoFiles(p.Master.Mountpoint); err != nil {
		return err
	}
	for _, n := range []*agentpair.Node{p.Slave, p.Master} {
		if err := n.Start(); err != nil {
			return err
		}
	}
	first, err := p.WaitSame(ctx, 2*time.Minute)
	if err != nil {
		return err
	}
	r, err := p.Slave.Log.WaitMsg(ctx, 0, "received") // the first receive is the full stream
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  first sync: a full send of %s (%.0f bytes) over QUIC; beta's replica identical after %v\n",
		r.Str("target"), r.Num("bytes"), first.Round(time.Millisecond))
	fmt.Fprintf(out, "  (identical = same tree checksum of alpha's %s and beta's %s)\n", p.Master.Mountpoint, p.Slave.Mountpoint)

	step("write on alpha, read it back on beta's replica: the lag, measured from write() returning")
	var lags []time.Duration
	for i := range 5 {
		name := fmt.Sprintf("note-%d.txt", i)
		content := fmt.Sprintf("note %d written on alpha at %s\n", i, time.Now().Format(time.RFC3339Nano))
		t0 := time.Now()
		if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, name), []byte(content), 0o644); err != nil {
			return err
		}
		lag, err := waitFile(ctx, filepath.Join(p.Slave.Mountpoint, name), content, t0)
		if err != nil {
			return err
		}
		lags = append(lags, lag)
		fmt.Fprintf(out, "  %s: visible in beta's replica after %v\n", name, lag.Round(time.Millisecond))
		time.Sleep(300 * time.Millisecond)
	}
	slices.Sort(lags)
	fmt.Fprintf(out, "  write-to-replica lag: median %v, max %v over %d writes\n", lags[len(lags)/2].Round(time.Millisecond),
		lags[len(lags)-1].Round(time.Millisecond), len(lags))
	fmt.Fprintf(out, "  alpha learns of each write from the %s eBPF tier, forced in its config ([notify] mode = %s):\n", demoTier, demoTier)
	fmt.Fprintln(out, "  the automatic choice of the best tier (mode = auto) is not wired into the agent yet; auto runs the timer")
	if _, err := p.WaitSame(ctx, time.Minute); err != nil {
		return err
	}
	var cycle []float64
	for _, r := range p.Master.Log.Records(0) {
		if r.Msg() == "replicated" && r.Str("kind") == "incremental" {
			cycle = append(cycle, r.Num("lag_ms"))
		}
	}
	taken := p.Master.Log.Count(0, func(r agentpair.Record) bool { return r.Msg() == "snapshot taken" })
	fmt.Fprintf(out, "  alpha so far: %d snapshots taken, %d incremental transfers acknowledged by beta\n", taken, len(cycle))
	if len(cycle) > 0 {
		slices.Sort(cycle)
		fmt.Fprintf(out, "  alpha's own log: from the notifier's change report to beta's ack, median %.0f ms, max %.0f ms\n",
			cycle[len(cycle)/2], cycle[len(cycle)-1])
	}

	step("stopping both agents (SIGTERM: an orderly stop)")
	for _, n := range p.Nodes() {
		if err := n.Stop(); err != nil {
			return fmt.Errorf("stopping %s: %w", n.Name, err)
		}
		fmt.Fprintf(out, "  %s stopped, exit 0\n", n.Name)
	}

	step("not shown yet, because it is not built yet in the agent: failover with the floating address,")
	fmt.Fprintln(out, "  status and metrics, the automatic notifier tier choice. The demo grows as they land.")
	return nil
}

// demoTier is alpha's notifier tier: the best eBPF tier this development
// kernel loads (it refuses fentry and kprobes).
const demoTier = "tracepoint"

func writeDemoFiles(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "docs"), 0o755); err != nil {
		return err
	}
	for i := range 20 {
		text := strings.Repeat(fmt.Sprintf("line %d of file %d\n", i, i), 200)
		if err := os.WriteFile(filepath.Join(dir, "docs", fmt.Sprintf("file-%02d.txt", i)), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// waitFile polls until path holds content and returns the time since t0.
func waitFile(ctx context.Context, path, content string, t0 time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if b, err := os.ReadFile(path); err == nil && string(b) == content {
			return time.Since(t0), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s did not reach beta's replica: %w", path, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

type probeReport struct {
	Kernel struct {
		Release string `json:"release"`
	} `json:"kernel"`
	Tiers []struct {
		Name      string `json:"name"`
		Available bool   `json:"available"`
		Reason    string `json:"reason"`
	} `json:"tiers"`
	ZFS struct {
		Dialect  string          `json:"dialect"`
		Version  string          `json:"version"`
		Features map[string]bool `json:"features"`
	} `json:"zfs"`
}

func summarizeProbe(raw string) (string, error) {
	var r probeReport
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return "", fmt.Errorf("decoding probe JSON: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s; ZFS %s (%s)\n", r.Kernel.Release, r.ZFS.Dialect, r.ZFS.Version)
	for _, t := range r.Tiers {
		if t.Available {
			fmt.Fprintf(&b, "  tier %-10s available\n", t.Name)
		} else {
			fmt.Fprintf(&b, "  tier %-10s refused: %s\n", t.Name, firstLine(t.Reason, 90))
		}
	}
	var have, lack []string
	for f, ok := range r.ZFS.Features {
		if ok {
			have = append(have, f)
		} else {
			lack = append(lack, f)
		}
	}
	fmt.Fprintf(&b, "  zfs features present: %s; absent: %s\n", strings.Join(slices.Sorted(slices.Values(have)), ", "), strings.Join(slices.Sorted(slices.Values(lack)), ", "))
	return b.String(), nil
}

func firstLine(s string, max int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}
