package failover

import (
	"fmt"
	"time"

	"github.com/flockerha/flocker/agent/config"
)

// Instant is a reading of a monotonic clock: the time elapsed since some
// origin fixed by the Clock that produced it. Every decision in this package
// takes Instants, never wall-clock times, so stepping the system clock (NTP,
// an operator's `date -s`, a VM restored from a snapshot) cannot make a live
// peer look silent: an Instant only moves forward, at the rate of real time.
type Instant time.Duration

// Add returns the instant d after i.
func (i Instant) Add(d time.Duration) Instant { return i + Instant(d) }

// Sub returns the time from j to i.
func (i Instant) Sub(j Instant) time.Duration { return time.Duration(i - j) }

// String prints the instant as a duration since the clock's origin.
func (i Instant) String() string { return "t+" + time.Duration(i).String() }

// Clock turns Go's monotonic clock into Instants. Go reads CLOCK_MONOTONIC
// alongside the wall clock in time.Now, and time.Since uses only the
// monotonic reading, so the wall clock's steps never reach an Instant.
type Clock struct{ origin time.Time }

// NewClock returns a clock whose origin is now.
func NewClock() *Clock { return &Clock{origin: time.Now()} }

// Now returns the current instant.
func (c *Clock) Now() Instant { return Instant(time.Since(c.origin)) }

// Timing holds the failure detector's two configured durations and derives
// every other window from them, so the derivation lives in one place.
//
// With H = Heartbeat and T = Timeout (defaults 100 ms and 1 s, from
// agent/config, where Validate already demands T >= 3 H):
//
//   - the slave declares the master dead after T without a heartbeat
//     (Dead);
//   - the master declares the slave lost, and the witness lost, after
//     S = (T - H) / 2 without a heartbeat or a witness reply (SuspectAfter);
//     a master that has lost both confirms with one more witness probe of
//     at most C = min(H, S/4) (FenceConfirm) and, when that gets no answer
//     either, fences itself (drops the floating address first, then stops
//     the service).
//
// Why the confirmation. Silence is measured on the master's own clock,
// and under CPU starvation the master's process can stop running for
// several hundred milliseconds (measured: 700 ms with both CPUs busy and a
// load average of 17). When it runs again its timer fires before its
// receivers have read the heartbeats and witness replies that arrived
// meanwhile, and the silence it measured was its own. A fresh probe sent
// after the stall gets its answer within milliseconds when the witness is
// reachable: a stall of the master, or of the peer, or both, then does not
// fence a healthy master, and a real loss of both still does, C later.
//
// Why the fence wins the race. Let the link break at P. The master heard
// the slave for the last time at or before P, so it has lost both peer and
// witness by P + S, confirmed by P + S + C and has dropped the address by
// P + S + C + g + d, where g is how late the agent acts on the verdict (it
// arms a timer for the detector's NextChange, so g is scheduling delay,
// milliseconds on a host that is not starved) and d the time of one
// netlink call (about a millisecond). The slave's last heartbeat from the
// master was sent at or after P - H (one goes out every H), so it cannot
// call the master dead before P - H + T, and it then still has to confirm
// by probes before it adds the address. The margin is
//
//	(P - H + T) - (P + S + C + g + d) = (T - H)/2 - C - g - d
//
// that is 350 ms - g - d at the defaults and 3H/4 - g - d at the smallest
// timeout agent/config accepts (T = 3 H). Halving T - H gives the master's
// patience and the safety margin equal shares: a larger S would fence less
// often on a burst of loss but eat the margin, a smaller one would fence a
// healthy master on a few lost datagrams.
//
// What no timing can cover: a master whose agent does not run at all (the
// whole host frozen for longer than the margin) cannot fence itself; when it
// thaws, its kernel answers for the address until the agent's next
// evaluation. Only an external arbiter can close that gap.
type Timing struct {
	Heartbeat time.Duration // H: how often each side sends a heartbeat and probes the witness
	Timeout   time.Duration // T: silence after which the slave declares the master dead
}

// DefaultTiming is agent/config's defaults.
func DefaultTiming() Timing {
	return Timing{Heartbeat: config.DefaultHeartbeat, Timeout: config.DefaultTimeout}
}

// Validate applies the same rule as agent/config (T >= 3 H), so a Timing
// built in code cannot be weaker than one read from a file.
func (t Timing) Validate() error {
	if t.Heartbeat <= 0 || t.Timeout <= 0 {
		return fmt.Errorf("timing: heartbeat %v and timeout %v must be positive", t.Heartbeat, t.Timeout)
	}
	if t.Timeout < config.MinTimeoutHeartbeats*t.Heartbeat {
		return fmt.Errorf("timing: timeout %v is less than %d x heartbeat %v",
			t.Timeout, config.MinTimeoutHeartbeats, t.Heartbeat)
	}
	return nil
}

// SuspectAfter is S = (T - H) / 2: the silence after which a source is
// suspect. The master fences on it (peer and witness both suspect); the
// slave trusts the witness only while it answered within it.
func (t Timing) SuspectAfter() time.Duration { return (t.Timeout - t.Heartbeat) / 2 }

// FenceConfirm is C = min(H, S/4): how long a master that lost both peer
// and witness waits for the answer to one more witness probe before it
// fences. One period is plenty for an answer from a reachable witness; the
// quarter of S keeps three quarters of the margin at the smallest timeout.
func (t Timing) FenceConfirm() time.Duration { return min(t.Heartbeat, t.SuspectAfter()/4) }

// FenceDeadline is S + C: how long after the master last heard the slave
// (and the witness) it drops the floating address, not counting the
// scheduling delay and the netlink call.
func (t Timing) FenceDeadline() time.Duration { return t.SuspectAfter() + t.FenceConfirm() }

// PromoteDeadline is the earliest moment, after the master last heard the
// slave, at which the slave may call the master dead: T - H (the master's
// last heartbeat may have left up to H before the break).
func (t Timing) PromoteDeadline() time.Duration { return t.Timeout - t.Heartbeat }

// FenceMargin is PromoteDeadline - FenceDeadline = (T - H)/2 - C: the
// budget for the master's scheduling delay and netlink call within which
// the floating address is on neither host. 350 ms at the defaults.
func (t Timing) FenceMargin() time.Duration { return t.PromoteDeadline() - t.FenceDeadline() }

// ProbeTimeout bounds one witness or peer probe: one heartbeat period, so
// a probe that gets no answer never holds up the next one.
func (t Timing) ProbeTimeout() time.Duration { return t.Heartbeat }
