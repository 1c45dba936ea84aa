package failover

import (
	"fmt"
	"testing"
	"time"
)

// TestFenceBeatsPromotion plays the link cut of issue 5 through the real
// detectors and machines, millisecond by millisecond: alpha (master) and
// beta (slave) exchange heartbeats every H, each pings the witness every H,
// and at P alpha's cable is pulled: from then on nothing reaches alpha and
// nothing leaves it. Beta still reaches the witness. For every timing and
// every phase of the heartbeat and witness schedules against P, alpha must
// drop the address (vip-drop) at least FenceMargin before beta adds it
// (vip-add), the margin Timing derives.
func TestFenceBeatsPromotion(t *testing.T) {
	const latency = time.Millisecond
	timings := []Timing{
		DefaultTiming(),
		{Heartbeat: 100 * time.Millisecond, Timeout: 300 * time.Millisecond}, // the smallest ratio config accepts
		{Heartbeat: 50 * time.Millisecond, Timeout: 2 * time.Second},
	}
	for _, tm := range timings {
		h := tm.Heartbeat
		closest := time.Duration(1 << 62)
		for _, phase := range []time.Duration{0, h / 4, h / 2, h - time.Millisecond} {
			phase = phase.Truncate(time.Millisecond) // the play runs in whole milliseconds
			for _, offset := range []time.Duration{0, time.Millisecond, h / 2, h - time.Millisecond} {
				offset = offset.Truncate(time.Millisecond)
				name := fmt.Sprintf("H=%v T=%v phase=%v cut=+%v", h, tm.Timeout, phase, offset)
				t.Run(name, func(t *testing.T) {
					fence, promote := playLinkCut(t, tm, phase, offset, latency)
					closest = min(closest, promote-fence)
					if promote-fence < tm.FenceMargin() {
						t.Errorf("fence at %v, promotion at %v: %v apart, want at least %v", fence, promote, promote-fence, tm.FenceMargin())
					}
				})
			}
		}
		t.Logf("H=%v T=%v: fence and promotion at least %v apart (derived margin %v)", h, tm.Timeout, closest, tm.FenceMargin())
	}
}

// playLinkCut returns, relative to the cut, when alpha dropped the address
// and when beta added it.
func playLinkCut(t *testing.T, tm Timing, phase, offset, latency time.Duration) (fence, promote time.Duration) {
	t.Helper()
	ms := time.Millisecond
	a := Machine{Node: "alpha", Peer: "beta", Datasets: []string{"app"}, Witness: true}
	b := Machine{Node: "beta", Peer: "alpha", Datasets: []string{"app"}, Witness: true}
	sa := State{Role: master, Epoch: 1, Mode: ModeServing, Peer: PeerView{Liveness: Alive, Role: slave, Epoch: 1}, Witness: Alive}
	sb := State{Role: slave, Epoch: 1, Mode: ModeStandby, Peer: PeerView{Liveness: Alive, Role: master, Epoch: 1}, Witness: Alive}
	mustDetector := func() *Detector {
		d, err := NewDetector(tm, 0)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	peerA, witA, peerB, witB := mustDetector(), mustDetector(), mustDetector(), mustDetector()
	cut := 10*tm.Timeout + offset // long after start: everything in steady state
	end := cut + 3*tm.Timeout
	// Sends happen on a schedule: alpha's heartbeats at phase + kH, beta's
	// at kH, both witness pings at phase/2 + kH (whole ms); a message sent before the
	// cut arrives latency later, one sent after it involving alpha is lost.
	sent := func(now, offset time.Duration) (time.Duration, bool) {
		at := now - latency
		return at, at >= offset && (at-offset)%tm.Heartbeat == 0
	}
	fence, promote = -1, -1
	last := map[*Detector]Liveness{peerA: Alive, witA: Alive, peerB: Alive, witB: Alive}
	for now := time.Duration(0); now <= end; now += ms {
		inst := Instant(now)
		if at, ok := sent(now, phase); ok && at < cut {
			peerB.Observe(Heartbeat{Seq: uint64(at / tm.Heartbeat), Role: master, Epoch: 1}, inst)
		}
		if at, ok := sent(now, 0); ok && at < cut {
			peerA.Observe(Heartbeat{Seq: uint64(at / tm.Heartbeat), Role: slave, Epoch: 1}, inst)
		}
		if at, ok := sent(now, (phase / 2).Truncate(ms)); ok {
			if at < cut {
				witA.ObserveReply(inst)
			}
			witB.ObserveReply(inst)
		}
		// Feed verdict changes to the machines, as the agent does.
		feed := func(m Machine, s *State, d *Detector, witness bool, who string) {
			v := d.Check(inst).Liveness
			if v == last[d] {
				return
			}
			last[d] = v
			var ev Event
			switch {
			case witness:
				ev = WitnessVerdict{Liveness: v}
			case v == Suspect:
				ev = PeerSuspect{}
			case v == Dead:
				ev = PeerDead{} // the probes find alpha's host and the VIP silent: its cable is out
			default:
				return // heartbeats resume only before the cut here
			}
			dec := m.Step(*s, ev)
			*s = dec.State
			for _, e := range dec.Effects {
				switch {
				case who == "alpha" && e.Kind == EffectDropVIP && fence < 0:
					// The agent first waits FenceConfirm for one more
					// witness answer, which cannot come through the cut.
					fence = now - cut + tm.FenceConfirm()
				case who == "beta" && e.Kind == EffectAddVIP && promote < 0:
					promote = now - cut
				}
			}
		}
		feed(a, &sa, peerA, false, "alpha")
		feed(a, &sa, witA, true, "alpha")
		feed(b, &sb, peerB, false, "beta")
		feed(b, &sb, witB, true, "beta")
	}
	if fence < 0 || promote < 0 {
		t.Fatalf("alpha %s fenced at %v, beta %s promoted at %v", sa, fence, sb, promote)
	}
	if sa.Mode != ModeFenced || sb.Mode != ModeServing || sb.Epoch != 2 {
		t.Fatalf("end states: alpha %s, beta %s", sa, sb)
	}
	t.Logf("alpha fenced %v after the cut, beta promoted %v after it: %v apart", fence, promote, promote-fence)
	return fence, promote
}
