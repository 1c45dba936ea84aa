// Package soak runs the pair under a mixed workload with a random fault at
// a steady pace (the soak): real agents on the host tier with a
// witness, a writer that makes acknowledged writes on whichever host
// serves, a bulk writer that keeps replication busy, and every 30 s one
// fault drawn (seeded; every kind once per round of twelve) from: agent
// kills, a host's death, the four network cuts, a cut whose start and stop
// hooks are SIGKILLed, a full pool on either side, and a burst of garbage
// datagrams. After each fault the pair must serve again from one master
// and catch up (a marker written after the fault reaches the replica), and
// every acknowledged write so far must be in the winner or a stash; at the
// end, with the writers stopped, the replica must equal the master.
//
// go test runs it for 2 minutes; `make soak` for 10 (-soak.duration,
// -soak.every, -soak.seed: a seed replays the same draw of faults).
package soak

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/agentpair/pairtest"
	"github.com/flockerha/flocker/internal/chaos"
	"github.com/flockerha/flocker/internal/failpair"
	"github.com/flockerha/flocker/internal/rig/rigtest"
)

var (
	duration = flag.Duration("soak.duration", 2*time.Minute, "how long faults are injected")
	every    = flag.Duration("soak.every", 30*time.Second, "one fault this often (later when the pair takes longer to settle)")
	seedFlag = flag.Uint64("soak.seed", 0, "seed of the fault draw; 0 picks one from the clock (printed)")
)

var bin string

func TestMain(m *testing.M) { pairtest.Main(m, &bin) }

// Bounds: generous, the machine is shared; nothing asserts speed.
const (
	settleTimeout = 4 * time.Minute
	faultHold     = 10 * time.Second // how long a cut, a dead host or a full pool lasts
)

type soak struct {
	t      *testing.T
	p      *failpair.Pair
	w      *chaos.Writer
	r      *rand.Rand
	hooks  map[*agentpair.Node]map[string]*chaos.HookKiller
	master *agentpair.Node // as last settled
	slave  *agentpair.Node
}

type fault struct {
	name string
	run  func(s *soak, ctx context.Context) (string, error)
}

var faults = []fault{
	{"kill master agent", func(s *soak, ctx context.Context) (string, error) { return s.killAgents(s.master) }},
	{"kill slave agent", func(s *soak, ctx context.Context) (string, error) { return s.killAgents(s.slave) }},
	{"kill both agents", func(s *soak, ctx context.Context) (string, error) { return s.killAgents(s.master, s.slave) }},
	{"master host dies", (*soak).hostDies},
	{"partition cable-out", func(s *soak, ctx context.Context) (string, error) { return s.cut(ctx, chaos.CableOut, false) }},
	{"partition drop-both", func(s *soak, ctx context.Context) (string, error) { return s.cut(ctx, chaos.DropBoth, false) }},
	{"partition drop-out", func(s *soak, ctx context.Context) (string, error) { return s.cut(ctx, chaos.DropOut, false) }},
	{"partition drop-in", func(s *soak, ctx context.Context) (string, error) { return s.cut(ctx, chaos.DropIn, false) }},
	{"cable-out, hooks killed", func(s *soak, ctx context.Context) (string, error) { return s.cut(ctx, chaos.CableOut, true) }},
	{"master pool full", func(s *soak, ctx context.Context) (string, error) { return s.poolFull(ctx, s.master) }},
	{"slave pool full", func(s *soak, ctx context.Context) (string, error) { return s.poolFull(ctx, s.slave) }},
	{"garbage datagrams", (*soak).garbage},
}

// TestSoak: see the package comment. It prints the faults injected, the
// writes acknowledged, found, stashed and lost; any lost or torn write, or
// a pair that does not settle after a fault, fails it.
func TestSoak(t *testing.T) {
	pairtest.RequireTools(t, "busybox", "nft")
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("soak: seed %d, %v of faults, one every %v (replay: -soak.seed=%d)", seed, *duration, *every, seed)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	p, err := failpair.New(ctx, failpair.Options{
		Bin: bin, Witness: true, Logger: rigtest.Logger(t),
		Settings: map[string]map[string]string{"notify": {"mode": "timer", "interval": "200ms"}},
	})
	cancel()
	if err != nil {
		t.Fatalf("building the pair: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			pairtest.KeepLogs(t, "flocker-soak-logs", p.Nodes())
		}
		if err := p.Close(); err != nil {
			t.Errorf("closing the pair: %v", err)
		}
	})
	s := &soak{t: t, p: p, r: rand.New(rand.NewPCG(seed, seed^0x5eed)), hooks: map[*agentpair.Node]map[string]*chaos.HookKiller{}}
	for _, n := range p.Nodes() {
		s.hooks[n] = map[string]*chaos.HookKiller{}
		for _, h := range []string{"start", "stop"} {
			k, err := chaos.WrapHook(n, h)
			if err != nil {
				t.Fatal(err)
			}
			s.hooks[n][h] = k
			t.Cleanup(k.Disarm)
		}
	}
	for _, n := range []*agentpair.Node{p.Slave, p.Master} {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	s.settle(t, "")

	s.w = chaos.NewWriter(p, "soak", 4096, 200*time.Millisecond)
	s.w.Start()
	defer s.w.Stop()
	stopBulk := s.bulk()
	defer stopBulk()

	injected := map[string]int{}
	total, roleChanges := 0, 0
	var deck []int
	end := time.Now().Add(*duration)
	for next := time.Now().Add(*every / 2); time.Now().Before(end); {
		time.Sleep(time.Until(next))
		// Drawn like cards from a shuffled deck, reshuffled when empty: every
		// kind comes up once per len(faults) faults, in a seeded order.
		if len(deck) == 0 {
			deck = s.r.Perm(len(faults))
		}
		f := faults[deck[0]]
		deck = deck[1:]
		started := time.Now()
		next = started.Add(*every)
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		what, err := f.run(s, fctx)
		cancel()
		if err != nil {
			t.Fatalf("fault %q: %v", f.name, err)
		}
		injected[f.name]++
		total++
		before := s.master
		s.settle(t, fmt.Sprintf("soak-settled-%04d", total))
		acc := s.account(t)
		t.Logf("fault %d at %s: %s (%s); settled after %v: %s master; %s", total, started.Format("15:04:05"),
			f.name, what, time.Since(started).Round(time.Second), s.master.Name, acc)
		if s.master != before {
			roleChanges++
		}
		if !acc.OK() {
			t.Fatalf("after fault %q: acknowledged writes lost: %s", f.name, acc)
		}
	}
	s.w.Stop()
	stopBulk()
	s.settle(t, "")
	acc := s.account(t)
	var kinds []string
	for k, v := range injected {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(kinds)
	summary := fmt.Sprintf("soak: seed %d, %v: faults injected %d (%s), master changed %d times\nsoak: writes acknowledged %d, writes found %d, divergent writes stashed %d, writes lost %d, torn %d (refused %d, not owed)",
		seed, *duration, total, strings.Join(kinds, ", "), roleChanges, acc.Acked, acc.Found, acc.Stashed, len(acc.Lost), len(acc.Torn), acc.Failed)
	t.Log(summary)
	fmt.Println(summary)
	if !acc.OK() {
		t.Fatalf("acknowledged writes lost: %s", acc)
	}
	if acc.Acked == 0 || total == 0 {
		t.Fatalf("nothing was tested: %d faults, %d writes acknowledged", total, acc.Acked)
	}
}

// settle waits for one master serving and, with marker "", an identical
// replica; with a marker (the writers still run), for the marker written
// on the master to reach the replica.
func (s *soak) settle(t *testing.T, marker string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	var st chaos.Settled
	var err error
	if marker == "" {
		st, err = chaos.WaitSettled(ctx, s.p)
	} else {
		st, err = chaos.WaitServing(ctx, s.p, marker)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.master, s.slave = st.Master, st.Slave
}

func (s *soak) account(t *testing.T) chaos.Accounting {
	t.Helper()
	roles, err := chaos.Roles(s.p)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := chaos.Account(s.p, chaos.Settled{Master: s.master, Slave: s.slave, Epoch: roles[s.master].Epoch}, s.w.Ledgers()...)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

func (s *soak) killAgents(nodes ...*agentpair.Node) (string, error) {
	var names []string
	for _, n := range nodes {
		if err := n.Kill(); err != nil {
			return "", err
		}
		names = append(names, n.Name)
	}
	time.Sleep(3 * time.Second)
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			return "", err
		}
	}
	return "SIGKILL, restarted after 3 s: " + strings.Join(names, ", "), nil
}

func (s *soak) hostDies(ctx context.Context) (string, error) {
	m := s.master
	s.w.SetDown(m, true)
	if err := failpair.KillHost(m); err != nil {
		return "", err
	}
	time.Sleep(faultHold)
	if err := m.Start(); err != nil {
		return "", err
	}
	if err := m.Host.LinkUp(); err != nil {
		return "", err
	}
	s.w.SetDown(m, false)
	return fmt.Sprintf("%s powered off for %v", m.Name, faultHold), nil
}

func (s *soak) cut(ctx context.Context, c chaos.Cut, killHooks bool) (string, error) {
	what := fmt.Sprintf("%v on %s for %v", c, s.master.Name, faultHold)
	var armed []<-chan int
	if killHooks {
		// With the witness, the cut-off master fences (stop) and the slave
		// takes over (start): both hooks are killed once.
		for _, k := range []*chaos.HookKiller{s.hooks[s.master]["stop"], s.hooks[s.slave]["start"]} {
			ch, err := k.Arm()
			if err != nil {
				return "", err
			}
			armed = append(armed, ch)
		}
	}
	heal, err := chaos.Apply(ctx, c, s.master.Host, s.slave.Host)
	if err != nil {
		return "", err
	}
	time.Sleep(faultHold)
	if err := heal(); err != nil {
		return "", err
	}
	if killHooks {
		n := 0
		for _, ch := range armed {
			select {
			case <-ch:
				n++
			default:
			}
		}
		s.hooks[s.master]["stop"].Disarm()
		s.hooks[s.slave]["start"].Disarm()
		what += fmt.Sprintf(", %d of 2 hooks killed", n)
	}
	return what, nil
}

func (s *soak) poolFull(ctx context.Context, n *agentpair.Node) (string, error) {
	undo, err := chaos.FillPool(ctx, n.Pool.Name, 64<<10)
	if err != nil {
		return "", err
	}
	time.Sleep(faultHold)
	if err := undo(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s's pool full for %v", n.Name, faultHold), nil
}

// garbage sends random datagrams and truncated QUIC long headers from C
// to both agents' ports.
func (s *soak) garbage(ctx context.Context) (string, error) {
	var conn *net.UDPConn
	if err := s.p.Net.C.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: s.p.Net.C.IPv4.Addr().AsSlice()})
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	sent := 0
	for i := range 3000 {
		n := s.p.Nodes()[i%2]
		b := make([]byte, 1+s.r.IntN(1300))
		for j := range b {
			b[j] = byte(s.r.Uint32())
		}
		if i%2 == 0 {
			b[0] = 0xc0 | b[0]&0x3f // a long header
			if len(b) >= 5 {
				b[1], b[2], b[3], b[4] = 0, 0, 0, 1 // QUIC v1
			}
		}
		if _, err := conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(n.Host.IPv4.Addr(), agentpair.Port)); err != nil {
			return "", err
		}
		sent++
		if i%100 == 99 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return fmt.Sprintf("%d datagrams from C", sent), nil
}

// bulk keeps replication busy with larger files (64-512 KiB of random
// data) written, replaced and removed on the serving host, about one a
// second. Not accounted: the ledger's writes are.
func (s *soak) bulk() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	r := rand.New(rand.NewPCG(s.r.Uint64(), 1))
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		buf := make([]byte, 512<<10)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			h, err := s.p.Holders()
			if err != nil {
				continue
			}
			for _, n := range s.p.Nodes() {
				if !slices.Contains(h, n.Name) || !chaos.MountedAt(n.Dataset, n.Mountpoint) {
					continue
				}
				dir := filepath.Join(n.Mountpoint, "bulk")
				_ = os.MkdirAll(dir, 0o755)
				for j := range buf {
					buf[j] = byte(r.Uint32())
				}
				size := 64<<10 + r.IntN(448<<10)
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("b%02d", i%16)), buf[:size], 0o644)
				if i%5 == 4 {
					_ = os.Remove(filepath.Join(dir, fmt.Sprintf("b%02d", (i+8)%16)))
				}
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}
