// Package agentpair runs two flocker agents as real processes on the test
// rig: host A is the master of dataset "app" on its own zfs-fuse pool,
// host B the slave whose replica the first transfer creates. Configs are
// written by `flocker init` and `flocker trust` as an operator would; each
// agent runs in its host's network namespace with JSON logs, which the
// package parses so callers can wait for what an agent reports rather than
// sleep.
//
// It is a library like package rig (errors, idempotent Close), used by the
// end-to-end tests, the demo, and the VM-tier and benchmark follow-ups.
package agentpair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/treesum"
)

// Port is the QUIC port both agents listen on, each on its host's address.
const Port = 7946

// StatusPort is both agents' [node] status port, on the host's address so
// each can be asked from the other host.
const StatusPort = 9946

// DatasetName is the logical dataset both configs protect.
const DatasetName = "app"

// Options configures New.
type Options struct {
	Bin string // the flocker binary (required)
	// Dir holds both nodes' configs and credentials; default a new
	// temporary directory that Close removes.
	Dir string
	// MasterPoolSize and SlavePoolSize size the pools' sparse files
	// (default rig.DefaultPoolSize; zfs-fuse needs at least 64 MiB).
	MasterPoolSize, SlavePoolSize int64
	// Settings are config keys set in both nodes' files after init and
	// trust: section -> key -> value, e.g. {"notify": {"interval": "200ms"}}.
	Settings map[string]map[string]string
	// LogLevel of the agents (default info).
	LogLevel string
	// AgentArgs are added to both agents' command lines, e.g. --zfs PATH
	// for a zfs stand-in that injects a fault.
	AgentArgs []string
	Logger    *slog.Logger
}

// Pair is the two nodes and the rig under them.
type Pair struct {
	Net           *rig.Network
	Master, Slave *Node
	Dir           string

	opts    Options
	closers []func() error
}

// New builds the rig (daemon hold, one pool per host, the master's dataset,
// the network), then configures both nodes with the binary. Agents are not
// started. On error everything built so far is removed.
func New(ctx context.Context, opts Options) (_ *Pair, err error) {
	if opts.Bin == "" {
		return nil, errors.New("agentpair: no flocker binary")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	p := &Pair{opts: opts}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	// Tests also watch the daemon while the pair lives: a wedge must cost
	// one test, not the run.
	z, err := rig.EnsureZFS(ctx, rig.ZFSOptions{Logger: opts.Logger, Watchdog: testing.Testing()})
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, z.Close)
	p.Master = &Node{Name: "alpha", Role: "master", pair: p}
	p.Slave = &Node{Name: "beta", Role: "slave", pair: p}
	// Pools before the network: Close runs in reverse, so the agents (killed
	// with the network's namespaces) are gone before their pools go.
	for _, n := range []*Node{p.Master, p.Slave} {
		size := opts.MasterPoolSize
		if n == p.Slave {
			size = opts.SlavePoolSize
		}
		pool, err := rig.CreatePool(ctx, rig.PoolOptions{Size: size, Logger: opts.Logger})
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, pool.Close)
		n.Pool = pool
	}
	ds, err := p.Master.Pool.CreateDataset(ctx, DatasetName, nil)
	if err != nil {
		return nil, err
	}
	p.Master.Dataset, p.Master.Mountpoint = ds.Name, ds.Mountpoint
	p.Slave.Dataset = p.Slave.Pool.Name + "/" + DatasetName
	p.Slave.Mountpoint = filepath.Join(p.Slave.Pool.Mountpoint, DatasetName)

	net, err := rig.NewNetwork(ctx, rig.NetworkOptions{Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	// Closers run last first: the agents stop in order (SIGTERM, and their
	// zfs children finish) before the network's Close SIGKILLs whatever is
	// left in the namespaces. Killing a zfs receive and then destroying its
	// pool can wedge zfs-fuse (its unmount callback spins on sync()).
	p.closers = append(p.closers, net.Close, p.stopAgents)
	p.Net = net
	p.Master.Host, p.Slave.Host = net.A, net.B

	p.Dir = opts.Dir
	if p.Dir == "" {
		if p.Dir, err = os.MkdirTemp("", "flocker-pair-"); err != nil {
			return nil, err
		}
		dir := p.Dir
		p.closers = append(p.closers, func() error { return os.RemoveAll(dir) })
	}
	if err := p.configure(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// configure runs init on both hosts, trust both ways, applies Settings and
// checks both files.
func (p *Pair) configure(ctx context.Context) error {
	peer := map[*Node]*Node{p.Master: p.Slave, p.Slave: p.Master}
	for _, n := range []*Node{p.Master, p.Slave} {
		n.Dir = filepath.Join(p.Dir, n.Name)
		n.Config = filepath.Join(n.Dir, "flocker.ini")
		n.Addr = n.Host.IPv4.Addr().String() + fmt.Sprintf(":%d", Port)
		n.StatusAddr = n.Host.IPv4.Addr().String() + fmt.Sprintf(":%d", StatusPort)
		// Both agents run on this machine: each needs its own admin socket.
		n.Socket = filepath.Join(n.Dir, "admin.sock")
	}
	for _, n := range []*Node{p.Master, p.Slave} {
		out, err := n.Flocker(ctx, "init", "--config", n.Config, "--name", n.Name, "--listen", n.Addr,
			"--peer-name", peer[n].Name, "--peer-address", peer[n].Addr, "--role", n.Role,
			"--dataset", DatasetName+"="+n.Dataset)
		if err != nil {
			return err
		}
		n.Fingerprint = strings.TrimSpace(out)
	}
	for _, n := range []*Node{p.Master, p.Slave} {
		if _, err := n.Flocker(ctx, "trust", "--config", n.Config, peer[n].Fingerprint); err != nil {
			return err
		}
		for section, kv := range map[string][]string{
			"node":  {"status", n.StatusAddr},
			"peer":  {"status", peer[n].StatusAddr},
			"admin": {"socket", n.Socket},
		} {
			if err := config.SetKeys(n.Config, section, kv...); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
		for section, kv := range p.opts.Settings {
			var args []string
			for k, v := range kv {
				args = append(args, k, v)
			}
			if err := config.SetKeys(n.Config, section, args...); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
		if _, err := n.Flocker(ctx, "check", "--config", n.Config); err != nil {
			return err
		}
	}
	return nil
}

// Close stops both agents (SIGTERM, then SIGKILL), removes the network,
// destroys the pools and removes the configs. Idempotent.
func (p *Pair) Close() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i]())
	}
	p.closers = nil
	return errors.Join(errs...)
}

// stopAgents stops both agents with SIGTERM, then waits until no process
// is left in either host's namespace (a zfs child orphaned by an earlier
// Kill finishes on its own once its input ends).
func (p *Pair) stopAgents() error {
	var errs []error
	for _, n := range []*Node{p.Master, p.Slave} {
		if n != nil {
			errs = append(errs, n.Stop())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range []*Node{p.Master, p.Slave} {
		if n == nil || n.Host == nil {
			continue
		}
		for len(n.Host.NS.Processes()) > 0 {
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("%s: processes %v still running 30 s after the agent stopped", n.Name, n.Host.NS.Processes()))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// Nodes returns master and slave.
func (p *Pair) Nodes() []*Node { return []*Node{p.Master, p.Slave} }

// Same compares the master's dataset with the slave's replica by tree
// checksum and returns both sums.
func (p *Pair) Same() (bool, string, string, error) {
	a, err := treesum.Sum(p.Master.Mountpoint)
	if err != nil {
		return false, "", "", fmt.Errorf("master: %w", err)
	}
	b, err := treesum.Sum(p.Slave.Mountpoint)
	if err != nil {
		return false, a, "", fmt.Errorf("replica: %w", err)
	}
	return a == b, a, b, nil
}

// WaitSame polls until the replica's tree checksum equals the master's and
// returns how long that took. Reading the replica is safe: it is readonly.
func (p *Pair) WaitSame(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		same, a, b, err := p.Same()
		if same {
			return time.Since(start), nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("replica %s, master %s", b, a)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("replica not identical after %v: %w", timeout, last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
