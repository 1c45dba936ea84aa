package failover

import (
	"fmt"
	"strings"

	"github.com/flockerha/flocker/agent/config"
)

// EffectKind names one thing the agent does to the system.
type EffectKind string

// Effect kinds. Each is idempotent where it is carried out (see Executor).
const (
	// EffectPersist writes role and epoch to the INI's [state]. The Machine
	// puts it first in every list that changes either, so after a crash the
	// file never claims less than the node may already have done.
	EffectPersist EffectKind = "persist"

	// Taking over a dataset, in this order.
	EffectAbortReceive EffectKind = "abort-receive" // discard a partial receive (resume state)
	EffectWritable     EffectKind = "writable"      // replica read-write and mounted
	EffectStart        EffectKind = "start"         // start hook unless check passes, then wait for check
	EffectAddVIP       EffectKind = "vip-add"       // add the floating address and announce it

	// Giving a dataset up, in this order: the address first, because it is
	// what clients reach and what the fence deadline is about.
	EffectDropVIP  EffectKind = "vip-drop"
	EffectStop     EffectKind = "stop"
	EffectReadonly EffectKind = "readonly"

	// Planned handoff, on the master after giving up: final snapshot and
	// replication, then the offer of the next epoch to the peer.
	EffectSyncPeer     EffectKind = "sync-peer"
	EffectOfferHandoff EffectKind = "offer-handoff"

	// EffectStash keeps the local divergent state as its own dataset before
	// replication from the peer resumes.
	EffectStash EffectKind = "stash"
)

// Effect is one step of a Decision.
type Effect struct {
	Kind    EffectKind
	Dataset string      // for dataset effects
	Role    config.Role // for EffectPersist
	Epoch   uint64      // for EffectPersist and EffectOfferHandoff
}

func (e Effect) String() string {
	switch e.Kind {
	case EffectPersist:
		return fmt.Sprintf("%s(%s,%d)", e.Kind, e.Role, e.Epoch)
	case EffectOfferHandoff:
		return fmt.Sprintf("%s(%d)", e.Kind, e.Epoch)
	}
	return fmt.Sprintf("%s(%s)", e.Kind, e.Dataset)
}

// Effects prints a list as "a b c" ("-" when empty), for logs and tests.
func Effects(list []Effect) string {
	if len(list) == 0 {
		return "-"
	}
	s := make([]string, len(list))
	for i, e := range list {
		s[i] = e.String()
	}
	return strings.Join(s, " ")
}

func persist(role config.Role, epoch uint64) Effect {
	return Effect{Kind: EffectPersist, Role: role, Epoch: epoch}
}

// takeover lists the effects that make this node serve every dataset:
// phase by phase, so the addresses come last, after every service checks
// healthy.
func takeover(datasets []string) []Effect {
	return phases(datasets, EffectAbortReceive, EffectWritable, EffectStart, EffectAddVIP)
}

// release lists the effects that stop this node serving: every address
// first, so clients stop reaching this host as early as possible.
func release(datasets []string) []Effect {
	return phases(datasets, EffectDropVIP, EffectStop, EffectReadonly)
}

func phases(datasets []string, kinds ...EffectKind) []Effect {
	var out []Effect
	for _, k := range kinds {
		for _, ds := range datasets {
			out = append(out, Effect{Kind: k, Dataset: ds})
		}
	}
	return out
}
