package failover

import (
	"fmt"

	"github.com/flockerha/flocker/agent/config"
)

// Liveness is the detector's opinion of a source (the peer or the witness).
type Liveness int

// Liveness values, from best to worst. Unknown is the zero value, used by
// callers for "no detector consulted yet".
const (
	Unknown Liveness = iota
	Alive            // heard within SuspectAfter
	Suspect          // silent for SuspectAfter: the master's fence threshold
	Dead             // silent for Timeout: the slave's promote threshold
)

func (l Liveness) String() string {
	switch l {
	case Unknown:
		return "unknown"
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("liveness(%d)", int(l))
}

// Heartbeat is what a peer's heartbeat says (transport.Heartbeat carries the
// same fields on the wire).
type Heartbeat struct {
	Seq      uint64 // increases by one per heartbeat; starts again at 1 when the peer's agent restarts
	Role     config.Role
	Epoch    uint64
	Datasets []DatasetStatus
}

// DatasetStatus is the per-dataset part of a heartbeat.
type DatasetStatus struct {
	Name       string
	NewestGUID uint64 // 0: no snapshot yet
	Healthy    bool   // master: its check passes; slave: its replica can take over
}

// Verdict is the detector's answer at one instant.
type Verdict struct {
	Liveness Liveness
	// Since is when Liveness began: the first heartbeat after a silence for
	// Alive, last heard + SuspectAfter for Suspect, last heard + Timeout for
	// Dead.
	Since Instant
	// Heard reports whether anything was ever observed; LastHeard is the
	// latest observation (the detector's start while nothing was).
	Heard     bool
	LastHeard Instant
	// Last is the newest heartbeat's content (zero for the witness, or
	// before the first heartbeat).
	Last Heartbeat
}

func (v Verdict) String() string {
	s := fmt.Sprintf("%s since %s", v.Liveness, v.Since)
	if !v.Heard {
		return s + ", never heard"
	}
	return s + fmt.Sprintf(", last heard %s", v.LastHeard)
}

// reorderWindow: a heartbeat whose sequence number is below the newest one
// by less than this many is a reordered datagram, whose content is older
// than what the detector holds, so only its arrival counts. Further below,
// it is a restarted peer counting from 1 again, and its content is taken.
// 32 heartbeats are 3.2 s at the default period, far more reordering than
// a datagram path produces and far less than a restart takes.
const reorderWindow = 32

// Detector is a heartbeat failure detector for one source. It holds no
// clock: every call passes the current Instant, so tests drive it with
// plain numbers and the agent with Clock.Now. Like raft's ticks, time only
// matters through the arguments; unlike ticks, the instants make the
// verdict's "since when" exact.
//
// A newly created detector counts its start as the last time the source
// was heard: a node that starts while its peer is down calls the peer dead
// after Timeout, not at once, and not never.
//
// Instants that go backwards (a caller mixing clocks) are treated as the
// newest instant seen so far: time standing still can make a verdict late,
// never early, so a backward jump cannot declare a live source dead.
//
// A Detector is not safe for concurrent use; the agent owns one per source
// in its event loop.
type Detector struct {
	timing    Timing
	start     Instant
	latest    Instant // newest instant passed in
	heard     bool
	lastHeard Instant
	aliveFrom Instant // first observation after the latest silence
	seq       uint64
	last      Heartbeat
}

// NewDetector returns a detector started at now. It refuses an invalid
// timing.
func NewDetector(t Timing, now Instant) (*Detector, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &Detector{timing: t, start: now, latest: now, lastHeard: now, aliveFrom: now}, nil
}

func (d *Detector) clamp(now Instant) Instant {
	if now < d.latest {
		return d.latest
	}
	d.latest = now
	return now
}

// Observe records a heartbeat received at now.
func (d *Detector) Observe(hb Heartbeat, now Instant) {
	now = d.clamp(now)
	d.heardAt(now)
	if !d.heard || hb.Seq > d.seq || d.seq-hb.Seq >= reorderWindow {
		d.seq = hb.Seq
		d.last = hb
	}
	d.heard = true
}

// ObserveReply records a witness reply (or any sign of life without a
// heartbeat's content) received at now.
func (d *Detector) ObserveReply(now Instant) {
	now = d.clamp(now)
	d.heardAt(now)
	d.heard = true
}

func (d *Detector) heardAt(now Instant) {
	if now.Sub(d.lastHeard) >= d.timing.SuspectAfter() {
		d.aliveFrom = now // back after a silence long enough to be suspect
	}
	d.lastHeard = now
}

// Check returns the verdict at now.
func (d *Detector) Check(now Instant) Verdict {
	now = d.clamp(now)
	v := Verdict{Heard: d.heard, LastHeard: d.lastHeard, Last: d.last}
	silent := now.Sub(d.lastHeard)
	switch {
	case silent >= d.timing.Timeout:
		v.Liveness, v.Since = Dead, d.lastHeard.Add(d.timing.Timeout)
	case silent >= d.timing.SuspectAfter():
		v.Liveness, v.Since = Suspect, d.lastHeard.Add(d.timing.SuspectAfter())
	default:
		v.Liveness, v.Since = Alive, d.aliveFrom
	}
	return v
}

// NextChange returns when the verdict will next change if nothing more is
// heard: the agent arms a timer for it, so a fence or a promotion happens
// at its deadline rather than at the next periodic tick. After Dead nothing
// changes; ok is false then.
func (d *Detector) NextChange(now Instant) (at Instant, ok bool) {
	now = d.clamp(now)
	suspect := d.lastHeard.Add(d.timing.SuspectAfter())
	dead := d.lastHeard.Add(d.timing.Timeout)
	switch {
	case now < suspect:
		return suspect, true
	case now < dead:
		return dead, true
	}
	return 0, false
}

// Timing returns the detector's timing.
func (d *Detector) Timing() Timing { return d.timing }
