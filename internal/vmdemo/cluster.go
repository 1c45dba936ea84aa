package vmdemo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/logging"
	"github.com/flockerha/flocker/internal/vmtest"
)

// Guest is one booted guest, worked through guestexec.
type Guest = guest

// Cluster is guests a (pool tank) and b (pool backup, not yet created)
// booted on a segment of their own, answering guestexec. Boot makes one;
// Close stops their agents, powers them off and removes the segment.
type Cluster struct {
	A, B     *Guest
	BootTime time.Duration // qemu start -> both answer with ZFS loaded

	seg     *segment
	work    string
	out     io.Writer
	stopVMs context.CancelFunc
	vmEnded chan struct{}
	vmRes   *vmtest.Result
	vmErr   error
}

// Boot builds the segment, boots both guests and waits until they
// answer. Notes about a failed teardown go to out.
func Boot(ctx context.Context, opts Options, out io.Writer) (_ *Cluster, err error) {
	log := opts.Log
	if log == nil {
		log = logging.Discard()
	}
	c := &Cluster{out: out}
	if c.work, err = os.MkdirTemp("", "flocker-vmdemo-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close(true))
		}
	}()
	gx := opts.GuestExec
	if gx == "" {
		gx = filepath.Join(c.work, "guestexec")
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", gx, "github.com/flockerha/flocker/internal/vmdemo/guestexec")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building guestexec: %w: %s", err, b)
		}
	}
	gxBin, err := os.ReadFile(gx)
	if err != nil {
		return nil, err
	}
	if c.seg, err = newSegment(ctx, log); err != nil {
		return nil, err
	}
	c.A = newGuest(c.seg, "a", "alpha", "192.0.2.11", "tank", "master")
	c.B = newGuest(c.seg, "b", "beta", "192.0.2.12", "backup", "slave")
	var vmGuests []vmtest.Guest
	for _, g := range c.guests() {
		tap, err := c.seg.addTap(g.name)
		if err != nil {
			return nil, err
		}
		vmGuests = append(vmGuests, vmtest.Guest{Name: g.name, IP: g.ip + "/24", TAP: tap,
			Disks: []vmtest.Disk{{Serial: "pool0", Size: 1 << 30}}})
	}
	spec := vmtest.Spec{
		Images:  opts.Images,
		Guests:  vmGuests,
		Script:  script,
		Files:   map[string][]byte{"guestexec": gxBin},
		Timeout: 30 * time.Minute,
		WorkDir: filepath.Join(c.work, "vm"),
		Log:     log,
		NoRetry: true,
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		c.start(ctx, spec)
		err := c.waitUp(ctx)
		if err == nil {
			break
		}
		select {
		case <-c.vmEnded:
		default:
			return nil, err // up but silent: no second try
		}
		if attempt == 2 || ctx.Err() != nil {
			return nil, err
		}
		// A guest died while booting (a TCG guest on a loaded host, now
		// and then): nothing was done in it yet, so boot both again.
		fmt.Fprintf(out, "  a guest died while booting (%v); booting both again\n", c.vmErr)
	}
	c.BootTime = time.Since(start)
	return c, nil
}

func (c *Cluster) guests() []*guest { return []*guest{c.A, c.B} }

// start boots the guests in the background; vmEnded closes when they are
// gone.
func (c *Cluster) start(ctx context.Context, spec vmtest.Spec) {
	vctx, stop := context.WithCancel(ctx)
	ended := make(chan struct{})
	c.stopVMs, c.vmEnded, c.vmRes, c.vmErr = stop, ended, nil, nil
	go func() {
		defer close(ended)
		res, err := vmtest.Run(vctx, spec)
		c.vmRes, c.vmErr = res, err
	}()
}

func (c *Cluster) waitUp(ctx context.Context) error {
	for _, g := range c.guests() {
		if err := waitUp(ctx, g, c.vmEnded, 5*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// Close stops both agents (SIGTERM, waited for), tells the guests to
// exit, waits for them to power off and removes the segment. After a
// failure it prints the agents' last records and the consoles' ends.
func (c *Cluster) Close(failed bool) error {
	var errs []error
	frozen := false
	if c.stopVMs != nil {
		select {
		case <-c.vmEnded: // nothing left to stop
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			for _, g := range c.guests() {
				// A guest that no longer answers at all is reported, not
				// waited for: it is powered off below.
				if !g.pingWithin(ctx, 20*time.Second) {
					fmt.Fprintf(c.out, "\n  guest %s does not answer at the end (frozen): it is powered off without stopping its agent\n", g.name)
					frozen = true
					continue
				}
				if err := stopAgent(ctx, g); err != nil {
					errs = append(errs, err)
				}
				if failed || len(errs) > 0 { // the agents' own words say why
					if recs, lerr := g.agentLog(ctx); lerr == nil {
						fmt.Fprintf(c.out, "\nlast log records of %s:\n%s\n", g.node, tailRecords(recs, 30))
					}
				}
				if err := g.exit(ctx); err != nil {
					errs = append(errs, fmt.Errorf("guest %s: exit: %w", g.name, err))
				}
			}
			cancel()
		}
		wait := time.Minute
		if frozen || failed {
			wait = 10 * time.Second
		}
		killed := false
		select {
		case <-c.vmEnded:
		case <-time.After(wait):
			c.stopVMs()
			<-c.vmEnded
			killed = true
		}
		c.stopVMs()
		if (failed || frozen) && c.vmRes != nil { // what the consoles say
			for _, r := range c.vmRes.Guests {
				fmt.Fprintf(c.out, "\nconsole of guest %s (end):\n%s\n", r.Name, tail(r.Console, 60))
			}
		}
		switch {
		case frozen && killed: // reported above
		case c.vmErr != nil:
			errs = append(errs, c.vmErr)
		case killed:
			errs = append(errs, errors.New("the guests did not power off within a minute of the end: killed"))
		case c.vmRes != nil:
			errs = append(errs, c.vmRes.Err())
		}
	}
	if c.seg != nil {
		errs = append(errs, c.seg.Close())
	}
	errs = append(errs, os.RemoveAll(c.work))
	return errors.Join(errs...)
}

// The guest API other packages (the VM tier of flocker bench) use.

// Name is the VM's hostname (a or b), Node the flocker node it runs.
func (g *Guest) Name() string { return g.name }
func (g *Guest) Node() string { return g.node }

// IP is the guest's address; Pool and Mountpoint its pool and the
// mountpoint of POOL/app, the dataset Configure protects.
func (g *Guest) IP() string         { return g.ip }
func (g *Guest) Pool() string       { return g.pool }
func (g *Guest) Mountpoint() string { return g.mountpoint }

// Sh runs a sh script; anything but exit 0 is an error.
func (g *Guest) Sh(ctx context.Context, script string) (string, error) { return g.sh(ctx, script) }

// ShTimed is Sh that also returns the script's run time in the guest.
func (g *Guest) ShTimed(ctx context.Context, script string) (string, time.Duration, error) {
	out, code, took, err := g.runTimed(ctx, script)
	if err == nil && code != 0 {
		err = fmt.Errorf("guest %s: %q: exit %d: %s", g.name, firstLine(script, 80), code, out)
	}
	return out, took, err
}

// Write writes a file in the guest (no shell between request and write).
func (g *Guest) Write(ctx context.Context, path, content string) error {
	return g.write(ctx, path, content)
}

// Wait returns as soon as path in the guest holds content.
func (g *Guest) Wait(ctx context.Context, path, content string, timeout time.Duration) error {
	return g.wait(ctx, path, content, timeout)
}

// SetKeys sets keys of the guest's flocker config (config.SetKeys).
func (g *Guest) SetKeys(ctx context.Context, section string, kv ...string) error {
	return g.setKeys(ctx, section, kv...)
}

// StartAgent starts flocker agent in the background, its JSON log
// appended to the guest's agent log; StopAgent stops it (SIGTERM, waited).
func (g *Guest) StartAgent(ctx context.Context) error { return startAgent(ctx, g) }
func (g *Guest) StopAgent(ctx context.Context) error  { return stopAgent(ctx, g) }

// SetAgentLevel sets the --log-level of the agents StartAgent starts
// from now on (debug for a cycle's timeline).
func (g *Guest) SetAgentLevel(level string) { g.agentLevel = level }

// AgentLogText returns the agent log as it is, every run so far.
func (g *Guest) AgentLogText(ctx context.Context) (string, error) { return g.sh(ctx, "cat "+agentLog) }

// AgentLog returns the agent log's records, of every run so far.
func (g *Guest) AgentLog(ctx context.Context) ([]agentpair.Record, error) { return g.agentLog(ctx) }

// Configure makes pools tank (a) and backup (b) and configures alpha
// (master of tank/app) and beta (its slave) with flocker init and flocker
// trust, then sets extra keys on both: section -> key, value, ...
func (c *Cluster) Configure(ctx context.Context, extra map[string][]string) error {
	a, b := c.A, c.B
	if _, err := a.sh(ctx, "zpool create -f tank /dev/disk/by-id/virtio-pool0 && zfs create tank/app"); err != nil {
		return err
	}
	if _, err := b.sh(ctx, "zpool create -f backup /dev/disk/by-id/virtio-pool0"); err != nil {
		return err
	}
	peer := map[*guest]*guest{a: b, b: a}
	prints := map[*guest]string{}
	for _, g := range c.guests() {
		p := peer[g]
		res, err := g.sh(ctx, fmt.Sprintf("flocker init --config %s --name %s --listen %s:7946 --peer-name %s --peer-address %s:7946 --role %s --dataset app=%s 2>/dev/null",
			configPath, g.node, g.ip, p.node, p.ip, g.role, g.zfs))
		if err != nil {
			return err
		}
		prints[g] = strings.TrimSpace(res)
	}
	for _, g := range c.guests() {
		if _, err := g.sh(ctx, fmt.Sprintf("flocker trust --config %s %s", configPath, prints[peer[g]])); err != nil {
			return err
		}
		for section, kv := range extra {
			if err := g.setKeys(ctx, section, kv...); err != nil {
				return err
			}
		}
	}
	return nil
}
