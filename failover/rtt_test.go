package failover

import (
	"testing"
	"time"
)

func at(n int) Instant { return Instant(time.Duration(n) * time.Millisecond) }

// TestRoundTripExchange plays two nodes whose clocks have different
// origins: A's instants are about 1 h ahead of B's.
func TestRoundTripExchange(t *testing.T) {
	var a, b RoundTrip
	const skew = Instant(time.Hour)
	// A sends at its 100 ms; it reaches B 3 ms later.
	ea := a.Send(at(100) + skew)
	if ea.Echo != 0 {
		t.Fatalf("first heartbeat echoes %v; want nothing to echo", ea.Echo)
	}
	if _, ok := b.Receive(ea, at(103)); ok {
		t.Fatal("B measured a round trip from a heartbeat without an echo")
	}
	// B answers 40 ms after it got A's heartbeat; A gets it 5 ms later.
	eb := b.Send(at(143))
	if eb.Echo != ea.Sent || eb.Held != 40*time.Millisecond {
		t.Fatalf("B echoes %v held %v; want %v held 40ms", eb.Echo, eb.Held, ea.Sent)
	}
	rtt, ok := a.Receive(eb, at(148)+skew)
	if !ok || rtt != 8*time.Millisecond {
		t.Fatalf("A measured %v (ok %v); want 8ms (3 there, 5 back)", rtt, ok)
	}
	if last, ok := a.Last(); !ok || last != rtt {
		t.Fatalf("Last %v %v; want %v", last, ok, rtt)
	}
	// A's next heartbeat echoes B's; B measures its own round trip.
	ea2 := a.Send(at(200) + skew)
	if ea2.Echo != eb.Sent || ea2.Held != 52*time.Millisecond {
		t.Fatalf("A echoes %v held %v; want %v held 52ms", ea2.Echo, ea2.Held, eb.Sent)
	}
	if rtt, ok := b.Receive(ea2, at(204)); !ok || rtt != 9*time.Millisecond {
		t.Fatalf("B measured %v (ok %v); want 9ms (5 there, 4 back)", rtt, ok)
	}
}

func TestRoundTripRejects(t *testing.T) {
	var a RoundTrip
	sent := a.Send(at(1000)).Sent
	cases := []struct {
		name string
		e    Echo
		at   Instant
	}{
		{"echo of an instant never sent (the previous run's clock)", Echo{Sent: at(5), Echo: at(999)}, at(1010)},
		{"echo from the future", Echo{Sent: at(5), Echo: at(2000)}, at(1010)},
		{"held longer than away", Echo{Sent: at(5), Echo: sent, Held: 20 * time.Millisecond}, at(1010)},
		{"negative hold", Echo{Sent: at(5), Echo: sent, Held: -time.Millisecond}, at(1010)},
		{"no echo", Echo{Sent: at(5)}, at(1010)},
	}
	for _, c := range cases {
		if rtt, ok := a.Receive(c.e, c.at); ok {
			t.Errorf("%s: measured %v; want no measurement", c.name, rtt)
		}
	}
	if _, ok := a.Last(); ok {
		t.Fatal("Last reports a measurement after only rejected echoes")
	}
	// The ring forgets old instants.
	for i := range rttWindow {
		a.Send(at(2000 + i))
	}
	if _, ok := a.Receive(Echo{Sent: at(6), Echo: sent}, at(3000)); ok {
		t.Fatal("an echo older than the window was measured")
	}
}
