package failover

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
)

func newPinger(t *testing.T, h *rig.Host) *Pinger {
	t.Helper()
	var p *Pinger
	if err := h.Do(func() (err error) { p, err = NewPinger(); return err }); err != nil {
		t.Fatalf("pinger in %s: %v", h, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func ping(p *Pinger, addr netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := p.Ping(ctx, addr)
	return err
}

// The witness lives on the switch's bridge: A reaches it, v4 and v6, until
// its cable is pulled, and again once it is back.
func TestWitnessProbe(t *testing.T) {
	n := rigtest.Network(t, rig.NetworkOptions{})
	p := newPinger(t, n.A)
	for _, w := range []netip.Addr{n.Witness4.Addr(), n.Witness6.Addr(), n.B.IPv4.Addr(), n.B.IPv6.Addr()} {
		if err := ping(p, w, 2*time.Second); err != nil {
			t.Errorf("A pinging %v: %v", w, err)
		}
	}
	if err := ping(p, netip.MustParseAddr("192.0.2.200"), 300*time.Millisecond); !errors.Is(err, ErrNoReply) {
		t.Errorf("pinging an address nobody holds: %v", err)
	}
	if err := n.A.LinkDown(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []netip.Addr{n.Witness4.Addr(), n.Witness6.Addr()} {
		if err := ping(p, w, 300*time.Millisecond); !errors.Is(err, ErrNoReply) {
			t.Errorf("A with its cable pulled pinging %v: %v", w, err)
		}
	}
	if err := n.A.LinkUp(); err != nil {
		t.Fatal(err)
	}
	// The port comes back up; allow it a moment to forward again.
	deadline := time.Now().Add(10 * time.Second)
	for ping(p, n.Witness4.Addr(), 300*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			t.Fatal("witness unreachable after the cable is back")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Ping(ctx, n.Witness4.Addr()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ping: %v", err)
	}
}

// RunWitness feeds a witness detector: alive while replies come, suspect
// once the cable is pulled.
func TestRunWitness(t *testing.T) {
	n := rigtest.Network(t, rig.NetworkOptions{})
	p := newPinger(t, n.A)
	clock := NewClock()
	tm := Timing{Heartbeat: 50 * time.Millisecond, Timeout: 500 * time.Millisecond}
	d, err := NewDetector(tm, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	var replies atomic.Int64
	obs := make(chan Instant, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunWitness(ctx, p, n.Witness4.Addr(), tm.Heartbeat, func() { replies.Add(1); obs <- clock.Now() })
	}()
	defer func() { cancel(); <-done }()
	wait := func(want Liveness) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			select {
			case at := <-obs:
				d.ObserveReply(at)
			case <-time.After(10 * time.Millisecond):
			}
			if v := d.Check(clock.Now()); v.Liveness == want {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("witness %s, want %s (%d replies)", v, want, replies.Load())
			}
		}
	}
	wait(Alive)
	for replies.Load() < 3 {
		wait(Alive)
	}
	if err := n.A.LinkDown(); err != nil {
		t.Fatal(err)
	}
	wait(Suspect)
	if err := n.A.LinkUp(); err != nil {
		t.Fatal(err)
	}
	wait(Alive)
}

// The dead host / dead agent evidence, gathered from B about A: the
// service answering through the VIP, a host that holds the VIP without the
// service, and a host that is gone.
func TestProbesEvidence(t *testing.T) {
	n := rigtest.Network(t, rig.NetworkOptions{})
	pB := newPinger(t, n.B)
	vipA := newVIP(t, n.A, n.VIP4)
	svc := netip.AddrPortFrom(n.VIP4.Addr(), servicePort)
	probes := Probes{Pinger: pB, Peer: n.A.IPv4.Addr(), Service: svc, Timeout: 500 * time.Millisecond}
	gather := func() Evidence {
		var ev Evidence
		// The TCP probe's socket must be made in B's namespace.
		n.B.Do(func() error { ev = probes.Gather(context.Background()); return nil })
		return ev
	}
	tcp := func() ServiceAnswer {
		var a ServiceAnswer
		n.B.Do(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			a = ProbeTCP(ctx, svc)
			return nil
		})
		return a
	}

	// Nobody holds the VIP yet; A's host is up.
	if a := tcp(); a != Silent {
		t.Errorf("VIP held by nobody: %s", a)
	}
	if ev := gather(); ev != (Evidence{HostReachable: true}) {
		t.Errorf("A up, VIP unheld: %+v", ev)
	}
	// A holds the VIP, nothing listens: its kernel refuses.
	if err := vipA.Add(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := tcp(); a != Refused {
		t.Errorf("VIP on A without service: %s", a)
	}
	// A's agent is dead but its service answers: not a dead host.
	serveName(t, n.A)
	if a := tcp(); a != Answered {
		t.Errorf("VIP on A with service: %s", a)
	}
	if ev := gather(); ev != (Evidence{HostReachable: true, ServiceAnswers: true}) {
		t.Errorf("A's agent dead, service up: %+v", ev)
	}
	// A's host is gone (cable pulled, as a power loss looks from outside).
	if err := n.A.LinkDown(); err != nil {
		t.Fatal(err)
	}
	if ev := gather(); ev != (Evidence{}) {
		t.Errorf("A gone: %+v", ev)
	}
	// Only the peer probe configured (no [dataset] probe): same verdicts.
	probes.Service = netip.AddrPort{}
	if ev := gather(); ev != (Evidence{}) {
		t.Errorf("A gone, host probe only: %+v", ev)
	}
}
