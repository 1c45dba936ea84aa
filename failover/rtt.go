package failover

import "time"

// RoundTrip measures the heartbeat round trip the way NTP does, without
// synchronised clocks: each heartbeat carries the instant it was sent on
// its sender's clock, and echoes the send instant of the newest heartbeat
// heard from the peer with how long it was held since its arrival. The
// sender of the original subtracts the echo and the hold from the arrival:
//
//	rtt = arrival - echo - held
//
// Only the sender reads its own instants, so the two clocks' origins never
// meet. An echo that is not one of the recent send instants (the peer
// echoes a heartbeat of this agent's previous run, whose clock had another
// origin, or garbage) is ignored.
//
// Like the Detector, RoundTrip holds no clock and is not safe for
// concurrent use.
type RoundTrip struct {
	sent [rttWindow]Instant // recent send instants, a ring
	next int

	peerSent  Instant // the newest heartbeat heard: its send instant on the peer's clock
	peerHeard Instant // and its arrival on ours
	heard     bool

	last     time.Duration
	measured bool
}

// rttWindow is how many send instants are remembered: 6.4 s of heartbeats
// at 100 ms, more than any echo that can still come back in time.
const rttWindow = 64

// Echo is the timing part of a heartbeat (transport.Heartbeat carries it
// as sent_ns, echo_ns and held_ns).
type Echo struct {
	Sent Instant       // the sender's clock when sending
	Echo Instant       // the Sent of the newest heartbeat the sender heard from us; 0: none
	Held time.Duration // how long the sender held that heartbeat before sending this one
}

// Send records a heartbeat sent at now and returns its timing fields.
func (r *RoundTrip) Send(now Instant) Echo {
	r.sent[r.next] = now
	r.next = (r.next + 1) % rttWindow
	e := Echo{Sent: now}
	if r.heard {
		e.Echo = r.peerSent
		e.Held = max(0, now.Sub(r.peerHeard))
	}
	return e
}

// Receive records a heartbeat with timing e that arrived at now and
// returns the round trip it measures (ok false when it measures none).
func (r *RoundTrip) Receive(e Echo, now Instant) (rtt time.Duration, ok bool) {
	if e.Sent != 0 {
		r.peerSent, r.peerHeard, r.heard = e.Sent, now, true
	}
	if e.Echo == 0 || e.Echo > now || e.Held < 0 || !r.wasSent(e.Echo) {
		return 0, false
	}
	rtt = now.Sub(e.Echo) - e.Held
	if rtt < 0 {
		// The peer claims to have held the heartbeat longer than it was
		// away: not a measurement.
		return 0, false
	}
	r.last, r.measured = rtt, true
	return rtt, true
}

func (r *RoundTrip) wasSent(at Instant) bool {
	for _, s := range r.sent {
		if s == at && s != 0 {
			return true
		}
	}
	return false
}

// Last returns the latest round trip measured (ok false before the first).
func (r *RoundTrip) Last() (time.Duration, bool) { return r.last, r.measured }
