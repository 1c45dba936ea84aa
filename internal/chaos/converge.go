package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/ackcheck"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/failpair"
	"github.com/flockerha/flocker/internal/treesum"
)

// Roles reads both nodes' persisted role and epoch.
func Roles(p *failpair.Pair) (map[*agentpair.Node]config.State, error) {
	out := map[*agentpair.Node]config.State{}
	for _, n := range p.Nodes() {
		c, err := config.Load(n.Config)
		if err != nil {
			return nil, err
		}
		out[n] = c.State
	}
	return out, nil
}

// Settled is the pair after a fault: one master, one slave.
type Settled struct {
	Master, Slave *agentpair.Node
	Epoch         uint64
}

// WaitSettled waits until the pair has settled after a fault: exactly one
// node is master (persisted role) and the other slave at the same epoch,
// only the master holds the floating address, C is served through it, and
// the slave's replica equals the master's dataset (tree checksums). It
// returns the last observation that did not hold when ctx ends.
func WaitSettled(ctx context.Context, p *failpair.Pair) (Settled, error) {
	var last error
	for {
		s, err := settled(p)
		if err == nil {
			return s, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return Settled{}, fmt.Errorf("pair not settled: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serving checks one master, one slave at its epoch, both agents running,
// the address on the master only and C served through it.
func serving(p *failpair.Pair) (Settled, error) {
	roles, err := Roles(p)
	if err != nil {
		return Settled{}, err
	}
	var s Settled
	for n, st := range roles {
		if st.Role == config.RoleMaster {
			if s.Master != nil {
				return Settled{}, fmt.Errorf("two masters (%s at epoch %d, %s at %d)", s.Master.Name, s.Epoch, n.Name, st.Epoch)
			}
			s.Master, s.Epoch = n, st.Epoch
		} else {
			s.Slave = n
		}
	}
	if s.Master == nil {
		return Settled{}, fmt.Errorf("no master")
	}
	if e := roles[s.Slave].Epoch; e != s.Epoch {
		return Settled{}, fmt.Errorf("slave %s at epoch %d, master %s at %d", s.Slave.Name, e, s.Master.Name, s.Epoch)
	}
	if !s.Master.Running() || !s.Slave.Running() {
		return Settled{}, fmt.Errorf("an agent is not running (%s %v, %s %v)", s.Master.Name, s.Master.Running(), s.Slave.Name, s.Slave.Running())
	}
	h, err := p.Holders()
	if err != nil {
		return Settled{}, err
	}
	if !slices.Equal(h, []string{s.Master.Name}) {
		return Settled{}, fmt.Errorf("floating address held by %v, want only %s", h, s.Master.Name)
	}
	if body, err := p.Get(failpair.CheckFile, time.Second); err != nil || body != "ok\n" {
		return Settled{}, fmt.Errorf("client C not served through the floating address: %q, %v", body, err)
	}
	return s, nil
}

func settled(p *failpair.Pair) (Settled, error) {
	s, err := serving(p)
	if err != nil {
		return s, err
	}
	a, err := treesum.Sum(s.Master.Mountpoint)
	if err != nil {
		return Settled{}, fmt.Errorf("master %s: %w", s.Master.Name, err)
	}
	b, err := treesum.Sum(s.Slave.Mountpoint)
	if err != nil {
		return Settled{}, fmt.Errorf("replica on %s: %w", s.Slave.Name, err)
	}
	if a != b {
		return Settled{}, fmt.Errorf("replica on %s differs from %s", s.Slave.Name, s.Master.Name)
	}
	return s, nil
}

// WaitServing is WaitSettled for a pair whose master keeps being written:
// instead of identical trees it waits for a marker file written on the
// master after the rest to reach the replica.
func WaitServing(ctx context.Context, p *failpair.Pair, marker string) (Settled, error) {
	var last error
	written := map[*agentpair.Node]string{}
	for {
		s, err := serving(p)
		if err == nil {
			want, ok := written[s.Master]
			if !ok {
				want = fmt.Sprintf("%s written on %s at %s\n", marker, s.Master.Name, time.Now().Format(time.RFC3339Nano))
				if err = os.WriteFile(filepath.Join(s.Master.Mountpoint, marker), []byte(want), 0o644); err == nil {
					written[s.Master] = want
				}
			}
			if err == nil {
				b, rerr := os.ReadFile(filepath.Join(s.Slave.Mountpoint, marker))
				if rerr == nil && string(b) == want {
					return s, nil
				}
				err = fmt.Errorf("marker %s not on %s's replica yet (%v)", marker, s.Slave.Name, rerr)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return Settled{}, fmt.Errorf("pair not serving: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stashes lists the stash datasets in n's pool with their mountpoints.
func Stashes(n *agentpair.Node) (map[string]string, error) {
	parent := n.Pool.Name + "/flocker-stash"
	out, err := exec.Command("zfs", "list", "-H", "-o", "name,mountpoint", "-t", "filesystem", "-r", parent).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "does not exist") {
			return nil, nil
		}
		return nil, fmt.Errorf("listing stashes of %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, mp, ok := strings.Cut(l, "\t")
		if ok && name != parent {
			m[name] = mp
		}
	}
	return m, nil
}

// Accounting is the sum of the ledgers' reports after a fault.
type Accounting struct {
	ackcheck.Report
	InWinner int      // found in the master's dataset
	Stashed  int      // found only in a stash (divergent writes kept)
	Stashes  []string // every stash on either host
}

func (a Accounting) String() string {
	return fmt.Sprintf("%s; in the winner %d, stashed %d (%d stashes)", a.Report, a.InWinner, a.Stashed, len(a.Stashes))
}

// Account looks for every acknowledged write of the ledgers in the
// settled master's dataset, then in every stash on both hosts.
func Account(p *failpair.Pair, s Settled, ledgers ...*ackcheck.Ledger) (Accounting, error) {
	dirs := []string{s.Master.Mountpoint}
	var acc Accounting
	acc.Where = map[string]int{}
	for _, n := range p.Nodes() {
		st, err := Stashes(n)
		if err != nil {
			return acc, err
		}
		for name, mp := range st {
			acc.Stashes = append(acc.Stashes, name)
			if MountedAt(name, mp) {
				dirs = append(dirs, mp)
			} else {
				return acc, fmt.Errorf("stash %s is not mounted at %s: its writes cannot be counted", name, mp)
			}
		}
	}
	slices.Sort(acc.Stashes)
	for _, l := range ledgers {
		r, err := l.Check(dirs...)
		if err != nil {
			return acc, err
		}
		acc.Acked += r.Acked
		acc.Failed += r.Failed
		acc.Found += r.Found
		acc.Lost = append(acc.Lost, r.Lost...)
		acc.Torn = append(acc.Torn, r.Torn...)
		for d, k := range r.Where {
			acc.Where[d] += k
			if d == s.Master.Mountpoint {
				acc.InWinner += k
			} else {
				acc.Stashed += k
			}
		}
	}
	return acc, nil
}
