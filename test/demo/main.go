// Command demo is `make demo`: two flocker hosts on this machine, built with
// the same rig the end-to-end tests use (network namespaces, zfs-fuse pools).
// It shows only what flocker does today and says plainly what it does not yet.
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

// node is one flocker host of the demo.
type node struct {
	name, role string
	host       *rig.Host
	dataset    rig.Dataset
	dir        string // config, key and certificate
	config     string
	print      string // fingerprint printed by init
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
			fmt.Fprintf(out, "\n[%5.1fs] cleaned up: namespaces, pools and files removed\n", time.Since(start).Seconds())
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

	step("ZFS: one pool per host on a sparse file, dataset \"app\" on each")
	nodes := []*node{{name: "alpha", role: "master"}, {name: "beta", role: "slave"}}
	for _, n := range nodes {
		p, err := rig.CreatePool(ctx, rig.PoolOptions{Logger: log})
		if err != nil {
			return err
		}
		closers = append(closers, p.Close)
		if n.dataset, err = p.CreateDataset(ctx, "app", nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %-5s pool %s, dataset %s at %s\n", n.name, p.Name, n.dataset.Name, n.dataset.Mountpoint)
	}

	step("network: hosts a and b and client c on one L2 segment (network namespaces)")
	netw, err := rig.NewNetwork(ctx, rig.NetworkOptions{Logger: log})
	if err != nil {
		return err
	}
	closers = append(closers, netw.Close)
	nodes[0].host, nodes[1].host = netw.A, netw.B
	for _, h := range netw.Hosts() {
		fmt.Fprintf(out, "  host %s: %s %s and %s\n", h.Name, h.Interface, h.IPv4, h.IPv6)
	}
	fmt.Fprintf(out, "  floating address reserved: %s; witness: %s\n", netw.VIP4, netw.Witness4)

	step("credentials and configuration: flocker init on each host, then trust each other")
	dir, err := os.MkdirTemp("", "flocker-demo-")
	if err != nil {
		return err
	}
	closers = append(closers, func() error { return os.RemoveAll(dir) })
	peerOf := map[*node]*node{nodes[0]: nodes[1], nodes[1]: nodes[0]}
	for _, n := range nodes {
		n.dir = filepath.Join(dir, n.name)
		n.config = filepath.Join(n.dir, "flocker.ini")
		peer := peerOf[n]
		res, err := flocker(ctx, n.host, bin, "init", "--config", n.config, "--name", n.name,
			"--listen", n.host.IPv4.Addr().String()+":7946",
			"--peer-name", peer.name, "--peer-address", peer.host.IPv4.Addr().String()+":7946",
			"--role", n.role, "--dataset", "app="+n.dataset.Name,
			"--vip", netw.VIP4.String(), "--interface", n.host.Interface)
		if err != nil {
			return err
		}
		n.print = strings.TrimSpace(res)
		fmt.Fprintf(out, "  %-5s (%s) key, certificate and config in %s\n        fingerprint %s\n", n.name, n.role, n.dir, n.print)
	}
	for _, n := range nodes {
		if _, err := flocker(ctx, n.host, bin, "trust", "--config", n.config, peerOf[n].print); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		res, err := flocker(ctx, n.host, bin, "check", "--config", n.config)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  flocker check on %s:\n%s", n.name, indent(res, "    "))
	}

	step("flocker probe on each host: what this kernel and this ZFS offer flocker")
	for _, n := range nodes {
		res, err := flocker(ctx, n.host, bin, "probe", "--json", "--mountpoint", n.dataset.Mountpoint)
		if err != nil {
			return err
		}
		summary, err := summarizeProbe(res)
		if err != nil {
			return fmt.Errorf("probe on %s: %w", n.name, err)
		}
		fmt.Fprintf(out, "  %s:\n%s", n.name, indent(summary, "    "))
	}

	step("not shown yet, because it is not built yet: the agent (snapshot on change, replication over QUIC),")
	fmt.Fprintln(out, "  failover with the floating address, status and metrics. The demo grows as they land.")
	return nil
}

// flocker runs the binary inside the host's network namespace and returns its
// stdout; a failure carries its stderr.
func flocker(ctx context.Context, h *rig.Host, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := h.Command(ctx, bin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("flocker %s on host %s: %w\n%s%s", args[0], h.Name, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
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
