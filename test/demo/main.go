// Command demo is `make demo`: two flocker hosts on this machine, built with
// the same harness the failover tests use (internal/failpair on
// internal/agentpair: network namespaces, zfs-fuse pools, one agent process
// per host, a service behind a floating address, client C). It tells the
// whole story: replication and its lag, host A killed, C served by B, A
// back and demoted with its divergent write stashed, status from both
// sides; every figure it prints is measured in this run. With -vm it tells
// the same story on two OpenZFS qemu guests (internal/vmdemo).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/demotext"
	"github.com/flockerha/flocker/internal/failpair"
	"github.com/flockerha/flocker/internal/logging"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/vmdemo"
	"github.com/flockerha/flocker/internal/vmtest"
)

func main() {
	bin := flag.String("flocker", "bin/flocker", "the flocker binary to run on each host")
	verbose := flag.Bool("v", false, "show the rig's own log")
	vm := flag.Bool("vm", false, "tell the story on two OpenZFS qemu guests (make vm-images first)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logging.Discard()
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if *vm {
		img, err := vmtest.FindImages()
		if err == nil {
			_, err = vmdemo.Run(ctx, os.Stdout, vmdemo.Options{Images: img, Log: log})
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Stdout, *bin, log); err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, bin string, log *slog.Logger) (err error) {
	bin, err = filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("flocker binary: %w (run make build)", err)
	}
	out := &demotext.SyncWriter{W: w} // client C's loop prints from its own goroutine
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
			fmt.Fprintf(out, "\n[%5.1fs] cleaned up: agents stopped (SIGTERM, waited), services stopped, namespaces, pools and files removed\n", time.Since(start).Seconds())
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
	p, err := failpair.New(ctx, failpair.Options{Bin: bin, Logger: log, Witness: true, Settings: map[string]map[string]string{
		"notify":   {"mode": demoTier},
		"failover": {"timeout": demoTimeout},
	}})
	if err != nil {
		return err
	}
	closers = append(closers, func() error {
		if err != nil { // the agents' own words say why
			for _, n := range p.Nodes() {
				fmt.Fprintf(out, "\nlast log records of %s:\n%s\n", n.Name, n.Log.Tail(40))
			}
		}
		return p.Close()
	})
	for _, n := range p.Nodes() {
		fmt.Fprintf(out, "  %-5s (%s) on host %s %s: dataset %s\n", n.Name, n.Role, n.Host.Name, n.Addr, n.Dataset)
		fmt.Fprintf(out, "        key, certificate and config in %s\n        fingerprint %s\n", n.Dir, n.Fingerprint)
	}
	fmt.Fprintf(out, "  the service: busybox httpd on port %d serving the dataset, started by the dataset's start hook\n", failpair.Port)
	fmt.Fprintf(out, "  on the master only, behind the floating address %v that the master holds\n", p.VIP)
	for _, n := range p.Nodes() {
		res, err := n.Flocker(ctx, "check", "--config", n.Config)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  flocker check on %s:\n%s", n.Name, demotext.Indent(res, "    "))
	}

	step("flocker probe on alpha: what this kernel and this ZFS offer flocker")
	res, err := p.Master.Flocker(ctx, "probe", "--json", "--mountpoint", p.Master.Mountpoint)
	if err != nil {
		return err
	}
	summary, err := demotext.SummarizeProbe(res)
	if err != nil {
		return fmt.Errorf("probe on alpha: %w", err)
	}
	fmt.Fprint(out, demotext.Indent(summary, "  "))

	step("alpha writes some files, then both agents start (flocker agent --config ..., one process per host)")
	if err := writeDemoFiles(p.Master.Mountpoint); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, servedFile), []byte(servedBefore), 0o644); err != nil {
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
	fmt.Fprintf(out, "  first sync: a full send of %s (%s) over QUIC; beta's replica identical after %v\n",
		r.Str("target"), demotext.Human(r.Num("bytes")), first.Round(time.Millisecond))
	fmt.Fprintf(out, "  (identical = same tree checksum of alpha's %s and beta's %s)\n", p.Master.Mountpoint, p.Slave.Mountpoint)
	served, err := waitServed(ctx, p, servedFile, servedBefore)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  alpha holds %v and its start hook started the service: C is served %s\n", p.VIP, served)

	step("client C requests %s through %v every %v from now on (it prints only changes)", servedFile, p.VIP, clientEvery)
	c := demotext.StartClient(ctx, out, start, clientEvery, func(context.Context) (string, error) {
		return p.Get(servedFile, time.Second)
	})
	closers = append(closers, func() error { c.Stop(); return nil })

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
	lagMedian, lagMax := lags[len(lags)/2], lags[len(lags)-1]
	fmt.Fprintf(out, "  write-to-replica lag: median %v, max %v over %d writes\n", lagMedian.Round(time.Millisecond),
		lagMax.Round(time.Millisecond), len(lags))
	fmt.Fprintf(out, "  alpha learns of each write from the %s eBPF tier ([notify] mode = %s in its config)\n", demoTier, demoTier)
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
	before, err := p.Get("note-4.txt", time.Second)
	if err != nil {
		return fmt.Errorf("client C reading note-4.txt from alpha: %w", err)
	}

	aBefore, err := config.Load(p.Master.Config)
	if err != nil {
		return err
	}
	step("host a loses power: its cable is pulled and every process in its namespace killed (agent, zfs, httpd)")
	markB := p.Slave.Log.Len()
	fctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	killed := time.Now() // MeasureFailover kills first thing
	took, err := p.MeasureFailover(fctx, servedFile, servedBefore)
	cancel()
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	for _, r := range p.Slave.Log.Records(markB) {
		if r.Msg() != "failover decision" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, r.Str("time"))
		if err != nil {
			return fmt.Errorf("beta's log: %w", err)
		}
		fmt.Fprintf(out, "  beta's log, %v after the kill: %s\n", at.Sub(killed).Round(time.Millisecond), r.Str("note"))
	}
	bState, err := waitRole(ctx, p.Slave, config.RoleMaster, aBefore.State.Epoch+1)
	if err != nil {
		return err
	}
	if h, err := p.Holders(); err != nil || !slices.Contains(h, p.Slave.Name) {
		return fmt.Errorf("beta does not hold %v after the failover (holders %v, err %v)", p.VIP, h, err)
	}
	fmt.Fprintf(out, "  beta is master at epoch %d and holds %v; failover took %v (kill -> C's first answer from beta)\n",
		bState.Epoch, p.VIP, took.Round(time.Millisecond))
	after, err := p.Get("note-4.txt", time.Second)
	if err != nil {
		return fmt.Errorf("client C reading note-4.txt from beta: %w", err)
	}
	if after != before {
		return fmt.Errorf("client C got %q for note-4.txt from beta, alpha had served %q", after, before)
	}
	fmt.Fprintf(out, "  C reads note-4.txt through %v from beta: the replicated content, same as alpha served:\n    %s", p.VIP, after)
	if err := os.WriteFile(filepath.Join(p.Slave.Mountpoint, "after.txt"), []byte(afterContent), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(out, "  beta, now master, takes a new write: after.txt")

	step("host a comes back: a local program writes to its dataset before flocker starts, a write beta never")
	fmt.Fprintln(out, "  saw, so alpha's history and beta's diverge; the cable goes back in and alpha's agent starts")
	if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, offlineFile), []byte(offlineContent), 0o644); err != nil {
		return err
	}
	if err := p.Master.Host.LinkUp(); err != nil {
		return err
	}
	markA := p.Master.Log.Len()
	if err := p.Master.Start(); err != nil { // drops the stale floating address first
		return err
	}
	aState, err := waitRole(ctx, p.Master, config.RoleSlave, bState.Epoch)
	if err != nil {
		return err
	}
	if _, err := waitFile(ctx, filepath.Join(p.Master.Mountpoint, "after.txt"), afterContent, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "  alpha demoted itself: slave at epoch %d; beta's after.txt replicated to it\n", aState.Epoch)
	for _, r := range p.Master.Log.Records(markA) {
		switch r.Msg() {
		case "failover decision":
			fmt.Fprintf(out, "  alpha's log: %s\n", r.Str("note"))
		case "divergence":
			fmt.Fprintf(out, "  alpha's log: divergence after %s, winner %s, decided by %s\n", r.Str("base"), r.Str("winner"), r.Str("decided_by"))
		case "divergent history stashed":
			fmt.Fprintf(out, "  alpha's log: divergent history stashed as %s\n", r.Str("stash"))
		}
	}
	if _, err := os.Stat(filepath.Join(p.Master.Mountpoint, offlineFile)); err == nil {
		return fmt.Errorf("alpha's replica still holds %s: it should follow beta", offlineFile)
	}
	stashes, err := showStashes(ctx, out, p.Master)
	if err != nil {
		return err
	}
	found := ""
	for _, s := range stashes {
		mp, err := zfsGet(ctx, s, "mountpoint")
		if err != nil {
			return err
		}
		if b, err := os.ReadFile(filepath.Join(mp, offlineFile)); err == nil && string(b) == offlineContent {
			found = s
			fmt.Fprintf(out, "  %s in stash %s: %s", offlineFile, s, b)
		}
	}
	if found == "" {
		return fmt.Errorf("no stash of %v holds %s", stashes, offlineFile)
	}
	holders, err := p.Holders()
	if err != nil {
		return err
	}
	if !slices.Equal(holders, []string{p.Slave.Name}) {
		return fmt.Errorf("%v held by %v, want %s only", p.VIP, holders, p.Slave.Name)
	}
	fmt.Fprintf(out, "  %v is held by %s only\n", p.VIP, p.Slave.Name)

	step("flocker status, from each side")
	for _, n := range []*agentpair.Node{p.Slave, p.Master} {
		if err := showStatus(ctx, out, n); err != nil {
			return err
		}
	}
	c.Stop()
	answered, failed := c.Counts()

	step("summary")
	fmt.Fprintf(out, "  replication lag (write on the master -> visible on the replica): median %v, max %v\n",
		lagMedian.Round(time.Millisecond), lagMax.Round(time.Millisecond))
	fmt.Fprintf(out, "  failover time (host a killed -> C served by beta through %v): %v\n", p.VIP, took.Round(time.Millisecond))
	fmt.Fprintf(out, "  client C: %d requests answered, %d not answered\n", answered, failed)
	fmt.Fprintf(out, "  alpha returned as slave at epoch %d; its divergent write kept in %s\n", aState.Epoch, found)
	fmt.Fprintf(out, "  demo wall time so far %v\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

const (
	servedFile     = "service.txt"
	servedBefore   = "served from the replicated dataset\n"
	afterContent   = "written on beta after the failover\n"
	offlineFile    = "written-while-cut-off.txt"
	offlineContent = "written on alpha while its cable was out\n"
	clientEvery    = 200 * time.Millisecond
)

func withTimeout(ctx context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(ctx, d)
	context.AfterFunc(ctx, cancel)
	return ctx
}

func waitServed(ctx context.Context, p *failpair.Pair, name, want string) (string, error) {
	t0 := time.Now()
	if _, err := p.WaitServed(withTimeout(ctx, time.Minute), name, want); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s after %v", name, time.Since(t0).Round(time.Millisecond)), nil
}

// waitRole polls n's persisted [state] until it records role at an epoch
// of at least epoch.
func waitRole(ctx context.Context, n *agentpair.Node, role config.Role, epoch uint64) (config.State, error) {
	ctx = withTimeout(ctx, time.Minute)
	for {
		c, err := config.Load(n.Config)
		if err != nil {
			return config.State{}, err
		}
		if c.State.Role == role && c.State.Epoch >= epoch {
			return c.State, nil
		}
		select {
		case <-ctx.Done():
			return c.State, fmt.Errorf("%s is %s at epoch %d, want %s at epoch >= %d: %w", n.Name, c.State.Role, c.State.Epoch, role, epoch, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// showStashes prints `flocker stash list` on n and returns the stash
// datasets in n's pool (listed by zfs, to check the command's answer).
func showStashes(ctx context.Context, out io.Writer, n *agentpair.Node) ([]string, error) {
	cmd := exec.CommandContext(ctx, "zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-r", "-d", "1", n.Pool.Name+"/flocker-stash")
	b, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("listing %s's stashes: %w: %s", n.Name, err, b)
	}
	var names []string
	for _, l := range strings.Fields(string(b)) {
		if l != n.Pool.Name+"/flocker-stash" {
			names = append(names, l)
		}
	}
	res, err := n.Flocker(ctx, "stash", "list", "--config", n.Config)
	switch {
	case err == nil:
		fmt.Fprintf(out, "  flocker stash list on %s:\n%s", n.Name, demotext.Indent(res, "    "))
	case strings.Contains(err.Error(), "unknown command"):
		fmt.Fprintf(out, "  flocker stash list: not in this build yet; zfs list shows %s's stashes:\n%s", n.Name, demotext.Indent(strings.Join(names, "\n"), "    "))
	default:
		return nil, err
	}
	return names, nil
}

// showStatus prints `flocker status` run on n's host. Its exit status is
// the health (0 healthy, 1 degraded, 2 broken), printed, not an error.
func showStatus(ctx context.Context, out io.Writer, n *agentpair.Node) error {
	res, err := n.Flocker(ctx, "status", "--config", n.Config)
	var exit *exec.ExitError
	switch {
	case err == nil:
		fmt.Fprintf(out, "  flocker status on %s (exit 0):\n%s", n.Name, demotext.Indent(res, "    "))
	case strings.Contains(err.Error(), "unknown command"):
		c, err := config.Load(n.Config)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  flocker status: not in this build yet; %s's [state]: %s at epoch %d\n", n.Name, c.State.Role, c.State.Epoch)
	case errors.As(err, &exit) && res != "":
		fmt.Fprintf(out, "  flocker status on %s (exit %d):\n%s", n.Name, exit.ExitCode(), demotext.Indent(res, "    "))
	default:
		return err
	}
	return nil
}

func zfsGet(ctx context.Context, ds, prop string) (string, error) {
	b, err := exec.CommandContext(ctx, "zfs", "get", "-H", "-o", "value", prop, ds).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("zfs get %s %s: %w: %s", prop, ds, err, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// demoTier is alpha's notifier tier: the best eBPF tier this development
// kernel loads (it refuses fentry and kprobes).
const demoTier = "tracepoint"

// demoTimeout is [failover] timeout: twice the default, because the demo
// and its test share a small machine with other work, and a host that
// misses heartbeats for the default 1s under load fences itself.
const demoTimeout = "2s"

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
			return 0, fmt.Errorf("%s did not arrive: %w", path, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
