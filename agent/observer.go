package agent

import "time"

// Observer is told of the events metrics count but Status cannot show:
// each completed transfer's lag (a histogram needs every one, not the last)
// and each change a notifier reports. Its methods are called from the
// agent's loops: they must be quick and safe for concurrent use.
type Observer interface {
	// Replicated: a transfer of dataset was acknowledged; lag is from the
	// first change it carried to the peer's Ack.
	Replicated(dataset string, lag time.Duration)
	// Changed: the notifier reported a change through tier.
	Changed(tier string)
	// RoleChanged: this node changed role by kind: "failover" (automatic),
	// "handoff", "promote" or "demote" (operator).
	RoleChanged(kind string)
}

// nopObserver is the Observer of an agent built without one.
type nopObserver struct{}

func (nopObserver) Replicated(string, time.Duration) {}
func (nopObserver) Changed(string)                   {}
func (nopObserver) RoleChanged(string)               {}
