// Package failpair builds on agentpair a pair whose dataset carries a
// service and a floating address, and gives the failover tests and
// benchmarks their moves: client C's requests through the floating
// address, who holds the address, a host's death, a partition, and the
// time from a death to C's first successful request.
//
// The service is busybox httpd, started by the dataset's start hook in the
// host's namespace and serving the dataset's mountpoint on Port; the check
// fetches CheckFile from it through loopback. Clients read files of the
// dataset through the floating address.
package failpair

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/vishvananda/netlink"
)

// Port is the service's TCP port on every address of its host.
const Port = 8080

// CheckFile is the file the check hook fetches; New writes it into the
// master's dataset, so a replica that holds it can serve.
const CheckFile = "flocker-check.txt"

// Options configures New.
type Options struct {
	Bin string // the flocker binary (required)
	// Witness configures [failover] witness with the rig's witness address.
	Witness bool
	// Settings are further config keys for both nodes (as agentpair's).
	Settings map[string]map[string]string
	Logger   *slog.Logger
	LogLevel string
}

// Pair is an agentpair with the service and the floating address.
type Pair struct {
	*agentpair.Pair
	VIP netip.Addr
}

// New builds the pair: agentpair's rig and configs, plus in both configs
// the dataset's vip, interface, start/stop/check hooks and service probe.
// Agents are not started.
func New(ctx context.Context, opts Options) (*Pair, error) {
	if _, err := os.Stat("/usr/bin/busybox"); err != nil {
		return nil, fmt.Errorf("failpair: the service is busybox httpd: %w", err)
	}
	settings := map[string]map[string]string{}
	for s, kv := range opts.Settings {
		settings[s] = kv
	}
	ap, err := agentpair.New(ctx, agentpair.Options{Bin: opts.Bin, Logger: opts.Logger, LogLevel: opts.LogLevel})
	if err != nil {
		return nil, err
	}
	p := &Pair{Pair: ap, VIP: ap.Net.VIP4.Addr()}
	fail := func(err error) (*Pair, error) { return nil, errors.Join(err, p.Close()) }
	for _, n := range ap.Nodes() {
		pid := filepath.Join(n.Dir, "httpd.pid")
		ds := map[string]string{
			"vip":       ap.Net.VIP4.String(),
			"interface": rig.HostInterface,
			// httpd leads its own session: the stop hook kills it with the
			// children serving connections, which would otherwise outlive
			// it by minutes when the address moved and the client's close
			// went elsewhere, keeping the dataset busy when the node, now
			// slave, remounts it. SIGKILL, and no wait: the hook runs in
			// the failover loop and must stay as quick as it was.
			"start": fmt.Sprintf("cd %s && setsid busybox httpd -f -p %d -h %s & echo $! > %s",
				n.Mountpoint, Port, n.Mountpoint, pid),
			"stop":  fmt.Sprintf("if [ -f %[1]s ]; then kill -KILL -$(cat %[1]s) 2>/dev/null; rm -f %[1]s; fi; true", pid),
			"check": fmt.Sprintf("timeout 2 busybox wget -q -O /dev/null http://127.0.0.1:%d/%s", Port, CheckFile),
			"probe": fmt.Sprintf("tcp:%d", Port),
		}
		if err := config.SetKeys(n.Config, config.DatasetSection(agentpair.DatasetName), flatten(ds)...); err != nil {
			return fail(fmt.Errorf("%s: %w", n.Name, err))
		}
		fo := map[string]string{}
		if opts.Witness {
			fo["witness"] = ap.Net.Witness4.Addr().String()
		}
		for k, v := range settings["failover"] {
			fo[k] = v
		}
		if len(fo) > 0 {
			if err := config.SetKeys(n.Config, "failover", flatten(fo)...); err != nil {
				return fail(fmt.Errorf("%s: %w", n.Name, err))
			}
		}
		for s, kv := range settings {
			if s == "failover" {
				continue
			}
			if err := config.SetKeys(n.Config, s, flatten(kv)...); err != nil {
				return fail(fmt.Errorf("%s: %w", n.Name, err))
			}
		}
		if _, err := n.Flocker(ctx, "check", "--config", n.Config); err != nil {
			return fail(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ap.Master.Mountpoint, CheckFile), []byte("ok\n"), 0o644); err != nil {
		return fail(err)
	}
	return p, nil
}

func flatten(kv map[string]string) []string {
	var out []string
	for k, v := range kv {
		out = append(out, k, v)
	}
	return out
}

// Close stops both agents, then the services they started (busybox httpd
// holds its directory in the dataset, and a busy pool cannot be destroyed),
// then removes the pair. Idempotent.
func (p *Pair) Close() error {
	var errs []error
	for _, n := range p.Nodes() {
		errs = append(errs, n.Stop())
	}
	for _, n := range p.Nodes() {
		errs = append(errs, stopService(n))
	}
	errs = append(errs, p.Pair.Close())
	return errors.Join(errs...)
}

// stopService kills the node's httpd and the children serving connections
// (its process group, by the pid its start hook recorded) and waits for
// them to be gone.
func stopService(n *agentpair.Node) error {
	b, err := os.ReadFile(filepath.Join(n.Dir, "httpd.pid"))
	if err != nil {
		return nil // not running
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil
	}
	// The file outlives a killed host's httpd: never signal another
	// process or group that reuses the pid.
	if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.Contains(string(cmd), "httpd") {
		return nil
	}
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	for range 200 {
		if !groupRuns(pid) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s: httpd group %d still runs", n.Name, pid)
}

// groupRuns reports whether a process of group pgid is alive: zombies,
// which hold no files, do not count.
func groupRuns(pgid int) bool {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// After the command's closing parenthesis: state ppid pgrp ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			return true
		}
	}
	return false
}

// Get fetches /name through the floating address from client C, within
// timeout, and returns the body (HTTP/1.0 over a connection made inside
// C's namespace).
func (p *Pair) Get(name string, timeout time.Duration) (string, error) {
	var body string
	err := p.Net.C.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(p.VIP, Port).String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := fmt.Fprintf(c, "GET /%s HTTP/1.0\r\n\r\n", name); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		head, rest, ok := strings.Cut(string(b), "\r\n\r\n")
		if !ok {
			return fmt.Errorf("malformed answer %q", b)
		}
		if status, _, _ := strings.Cut(head, "\r\n"); !strings.Contains(status, " 200 ") {
			return fmt.Errorf("answer %q", status)
		}
		body = rest
		return nil
	})
	return body, err
}

// Holders returns the hosts (of A and B) whose interface holds the
// floating address now.
func (p *Pair) Holders() ([]string, error) {
	var out []string
	for _, n := range p.Nodes() {
		var held bool
		err := n.Host.Do(func() error {
			link, err := netlink.LinkByName(rig.HostInterface)
			if err != nil {
				return err
			}
			addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == p.VIP {
					held = true
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		if held {
			out = append(out, n.Name)
		}
	}
	return out, nil
}

// WatchHolders samples Holders every interval until ctx ends and returns
// the first sample with more than one holder (nil when there was none).
func (p *Pair) WatchHolders(ctx context.Context, every time.Duration) (double []string, samples int, err error) {
	for {
		h, err := p.Holders()
		if err != nil {
			return nil, samples, err
		}
		samples++
		if len(h) > 1 {
			return h, samples, nil
		}
		select {
		case <-ctx.Done():
			return nil, samples, nil
		case <-time.After(every):
		}
	}
}

// WaitServed requests name through the floating address until the answer
// is want, and returns when the first such answer came.
func (p *Pair) WaitServed(ctx context.Context, name, want string) (time.Time, error) {
	var last error
	for {
		body, err := p.Get(name, 300*time.Millisecond)
		if err == nil && body == want {
			return time.Now(), nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("answer %q, want %q", body, want)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s not served through %v: %w", name, p.VIP, last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// KillHost is a power loss of n's host: its cable is pulled and every
// process in its namespace killed (agent, zfs children, service). The
// agentpair Node then reports the agent as exited.
func KillHost(n *agentpair.Node) error {
	if err := n.Host.LinkDown(); err != nil {
		return err
	}
	if err := n.Host.KillAll(); err != nil {
		return err
	}
	// The agent's Wait returns: wait for agentpair to notice.
	for range 500 {
		if !n.Running() {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s: agent still running after KillAll", n.Name)
}

// MeasureFailover kills the master's host and returns the time from the
// kill to C's first answer with want (name's content, replicated before)
// through the floating address. C polls with overlapping requests (see
// Poller), so the figure is within about 10 ms of the first moment the new
// master answers; only requests sent after the master's cable was out
// count, so no answer from the dying master is taken for the new one's.
func (p *Pair) MeasureFailover(ctx context.Context, name, want string) (time.Duration, error) {
	pl := p.Poll(name, 10*time.Millisecond, 250*time.Millisecond)
	defer pl.Stop()
	t0 := time.Now()
	if err := p.Master.Host.LinkDown(); err != nil {
		return 0, err
	}
	down := time.Now()
	if err := KillHost(p.Master); err != nil {
		return 0, err
	}
	a, err := pl.WaitOK(ctx, down, want)
	if err != nil {
		return 0, err
	}
	return a.At.Sub(t0), nil
}

// Revive is a killed host's power coming back: its agent starts (and drops
// the floating address the dead namespace kept), then its cable is plugged
// in.
func Revive(n *agentpair.Node) error {
	if err := n.Start(); err != nil {
		return err
	}
	return n.Host.LinkUp()
}

// Swap exchanges Master and Slave after the roles changed (a failover or a
// handoff), so the names keep meaning the current roles.
func (p *Pair) Swap() {
	p.Master, p.Slave = p.Slave, p.Master
	p.Master.Role, p.Slave.Role = "master", "slave"
}
