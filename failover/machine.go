package failover

import (
	"fmt"

	"github.com/flockerha/flocker/agent/config"
)

// Mode refines a role: what a master or a slave is doing about it.
type Mode string

// Modes. A slave is in Standby or PeerAgentLost; a master in Serving,
// Fenced or HandingOff.
const (
	// ModeStandby: slave, following the master.
	ModeStandby Mode = "standby"
	// ModePeerAgentLost: slave; the master's agent is silent but its host
	// or its service still answers, so the master is not dead: waiting.
	ModePeerAgentLost Mode = "peer-agent-lost"
	// ModeServing: master, holding the addresses and running the services.
	ModeServing Mode = "serving"
	// ModeFenced: master that must not serve: it has just started (the peer
	// may have taken over while it was away) or it lost both peer and
	// witness. It serves again when it hears the peer as slave, or when the
	// peer is confirmed dead (with the witness reachable, when configured).
	ModeFenced Mode = "fenced"
	// ModeHandingOff: master that gave up its addresses and services for a
	// planned handoff and waits for the peer to take the offered epoch.
	ModeHandingOff Mode = "handing-off"
)

// PeerView is what the node last learnt about its peer.
type PeerView struct {
	Liveness Liveness
	Role     config.Role // "" until heard
	Epoch    uint64
	Healthy  bool // every dataset healthy, as the peer reports it
	Current  bool // every dataset's newest snapshot GUID equals ours
}

// State is a node's role, epoch and what it knows of the others.
type State struct {
	Role    config.Role
	Epoch   uint64
	Mode    Mode
	Peer    PeerView
	Witness Liveness // Unknown until the first witness verdict (or without a witness)
	// DivergenceWon: a divergence policy chose this slave's data; it
	// promotes as soon as it hears the peer as slave.
	DivergenceWon bool
}

func (s State) String() string {
	return fmt.Sprintf("%s/%s e%d", s.Role, s.Mode, s.Epoch)
}

// Machine is the role and epoch state machine of one node. It is a pure
// function of its configuration, a State and an Event (Step); the agent
// keeps the State, feeds it events and runs the Decision's effects.
type Machine struct {
	Node, Peer string   // node names; the smaller one keeps the role when two masters share an epoch
	Datasets   []string // logical dataset names, in config order
	Witness    bool     // a witness address is configured
}

// Decision is a Step's result.
type Decision struct {
	State   State
	Effects []Effect // in order; EffectPersist first whenever role or epoch changed
	Note    string   // why, for the log and status ("" when nothing happened)
}

func (d Decision) String() string {
	s := fmt.Sprintf("%s: %s", d.State, Effects(d.Effects))
	if d.Note != "" {
		s += " | " + d.Note
	}
	return s
}

// Start returns the state a node starts in from its persisted role and
// epoch. A master starts Fenced: it was away, the peer may have taken over,
// and it must hear the peer as slave (or confirm it dead) before it serves.
func (m Machine) Start(role config.Role, epoch uint64) State {
	s := State{Role: role, Epoch: epoch, Mode: ModeStandby}
	if role == config.RoleMaster {
		s.Mode = ModeFenced
	}
	return s
}

// Event is an input of Step.
type Event interface {
	fmt.Stringer
	event()
}

// PeerHeard: a heartbeat arrived (the detector says alive). Healthy and
// Current summarise its datasets (see PeerFacts).
type PeerHeard struct {
	Role    config.Role
	Epoch   uint64
	Healthy bool
	Current bool
}

// PeerSuspect: the peer has been silent for SuspectAfter.
type PeerSuspect struct{}

// PeerDead: the peer has been silent for Timeout. The agent probes before it
// sends this event and sends it again with fresh evidence while the verdict
// stays dead (every probe period), so a waiting slave re-decides.
type PeerDead struct{ Evidence Evidence }

// Evidence tells a dead host from a dead agent.
type Evidence struct {
	HostReachable  bool // the peer's address answers (ICMP echo)
	ServiceAnswers bool // the service answers on the floating address, which this host does not hold
}

// WitnessVerdict: the witness detector's verdict changed.
type WitnessVerdict struct{ Liveness Liveness }

// HealthFailed: a dataset's check failed the configured number of times in
// a row (see HealthCounter).
type HealthFailed struct{ Dataset string }

// Operator requests (flocker promote, demote, handoff).
type (
	Promote struct{}
	Demote  struct{}
	Handoff struct{}
)

// HandoffOffered: the master offers this node the given epoch (planned
// handoff).
type HandoffOffered struct{ Epoch uint64 }

// HandoffAborted: a handoff this master started did not complete (an effect
// failed, or the peer did not take the offered epoch in time).
type HandoffAborted struct{}

// DivergenceDecided: both sides wrote after their last common snapshot of
// Dataset, and the divergence policy chose a winner.
type DivergenceDecided struct {
	Dataset   string
	LocalWins bool
}

func (PeerHeard) event()         {}
func (PeerSuspect) event()       {}
func (PeerDead) event()          {}
func (WitnessVerdict) event()    {}
func (HealthFailed) event()      {}
func (Promote) event()           {}
func (Demote) event()            {}
func (Handoff) event()           {}
func (HandoffOffered) event()    {}
func (HandoffAborted) event()    {}
func (DivergenceDecided) event() {}

func (e PeerHeard) String() string {
	return fmt.Sprintf("peer-heard(%s,%d,healthy=%v,current=%v)", e.Role, e.Epoch, e.Healthy, e.Current)
}
func (PeerSuspect) String() string { return "peer-suspect" }
func (e PeerDead) String() string {
	return fmt.Sprintf("peer-dead(host=%v,service=%v)", e.Evidence.HostReachable, e.Evidence.ServiceAnswers)
}
func (e WitnessVerdict) String() string { return "witness-" + e.Liveness.String() }
func (e HealthFailed) String() string   { return "health-failed(" + e.Dataset + ")" }
func (Promote) String() string          { return "promote" }
func (Demote) String() string           { return "demote" }
func (Handoff) String() string          { return "handoff" }
func (e HandoffOffered) String() string { return fmt.Sprintf("handoff-offered(%d)", e.Epoch) }
func (HandoffAborted) String() string   { return "handoff-aborted" }
func (e DivergenceDecided) String() string {
	return fmt.Sprintf("divergence(%s,local-wins=%v)", e.Dataset, e.LocalWins)
}

// PeerFacts summarises a heartbeat against this node's newest snapshot GUID
// per dataset: healthy when the peer reports every configured dataset
// healthy, current when its newest GUID for each equals ours.
func PeerFacts(hb Heartbeat, mine map[string]uint64) (healthy, current bool) {
	healthy, current = true, true
	seen := map[string]DatasetStatus{}
	for _, d := range hb.Datasets {
		seen[d.Name] = d
	}
	for name, guid := range mine {
		d, ok := seen[name]
		if !ok || !d.Healthy {
			healthy = false
		}
		if !ok || d.NewestGUID != guid {
			current = false
		}
	}
	return healthy, current
}

// Step applies one event.
func (m Machine) Step(s State, ev Event) Decision {
	switch e := ev.(type) {
	case PeerHeard:
		s.Peer = PeerView{Liveness: Alive, Role: e.Role, Epoch: e.Epoch, Healthy: e.Healthy, Current: e.Current}
		if s.Role == config.RoleMaster {
			return m.masterHeard(s)
		}
		return m.slaveHeard(s)
	case PeerSuspect:
		s.Peer.Liveness = Suspect
		return m.checkFence(s)
	case PeerDead:
		s.Peer.Liveness = Dead
		return m.peerDead(s, e.Evidence)
	case WitnessVerdict:
		s.Witness = e.Liveness
		return m.checkFence(s)
	case HealthFailed:
		if s.Mode != ModeServing {
			return keep(s, "check of %s failed while not serving: ignored", e.Dataset)
		}
		if why := m.cannotHandOff(s); why != "" {
			return keep(s, "check of %s keeps failing but %s: staying master", e.Dataset, why)
		}
		return m.handOff(s, fmt.Sprintf("check of %s keeps failing: handing over to %s", e.Dataset, m.Peer))
	case Promote:
		return m.operatorPromote(s)
	case Demote:
		if s.Role != config.RoleMaster {
			return keep(s, "demote: already slave")
		}
		return m.demote(s, s.Epoch, "demoted by operator")
	case Handoff:
		switch {
		case s.Role != config.RoleMaster:
			return keep(s, "handoff refused: run it on the master")
		case s.Mode != ModeServing:
			return keep(s, "handoff refused: master is %s, not serving", s.Mode)
		}
		if why := m.cannotHandOff(s); why != "" {
			return keep(s, "handoff refused: %s", why)
		}
		return m.handOff(s, "handoff requested by operator")
	case HandoffOffered:
		if s.Role == config.RoleMaster {
			return keep(s, "handoff offer of epoch %d ignored: this node is master", e.Epoch)
		}
		if e.Epoch <= s.Epoch {
			return keep(s, "handoff offer of epoch %d ignored: not above epoch %d", e.Epoch, s.Epoch)
		}
		return m.promote(s, e.Epoch, fmt.Sprintf("took the handoff from %s", m.Peer))
	case HandoffAborted:
		if s.Mode != ModeHandingOff {
			return keep(s, "handoff abort ignored: no handoff in progress")
		}
		return m.resume(s, "handoff aborted: serving again")
	case DivergenceDecided:
		return m.divergence(s, e)
	}
	return keep(s, "unknown event %v ignored", ev)
}

func keep(s State, format string, args ...any) Decision {
	return Decision{State: s, Note: fmt.Sprintf(format, args...)}
}

func (m Machine) masterHeard(s State) Decision {
	p := s.Peer
	switch {
	case p.Epoch > s.Epoch:
		return m.demote(s, p.Epoch, fmt.Sprintf("%s is %s at epoch %d, above ours", m.Peer, p.Role, p.Epoch))
	case p.Role == config.RoleMaster && p.Epoch == s.Epoch:
		if m.Node > m.Peer {
			return m.demote(s, s.Epoch, fmt.Sprintf("two masters at epoch %d: %s keeps it (name order)", s.Epoch, m.Peer))
		}
		return keep(s, "two masters at epoch %d: %s keeps it (name order), waiting for %s to demote", s.Epoch, m.Node, m.Peer)
	case s.Mode == ModeFenced && p.Role == config.RoleSlave:
		return m.resume(s, fmt.Sprintf("%s heard as slave at epoch %d", m.Peer, p.Epoch))
	case s.Mode == ModeFenced:
		return keep(s, "%s is master at older epoch %d: waiting for it to demote", m.Peer, p.Epoch)
	}
	return Decision{State: s}
}

func (m Machine) slaveHeard(s State) Decision {
	p := s.Peer
	s.Mode = ModeStandby
	if s.DivergenceWon && p.Role == config.RoleSlave {
		s.DivergenceWon = false
		return m.promote(s, max(s.Epoch, p.Epoch)+1, fmt.Sprintf("divergence won and %s stepped down", m.Peer))
	}
	if p.Epoch > s.Epoch {
		s.Epoch = p.Epoch
		return Decision{State: s, Effects: []Effect{persist(s.Role, s.Epoch)}, Note: fmt.Sprintf("%s is at epoch %d: following", m.Peer, p.Epoch)}
	}
	if p.Role == config.RoleSlave {
		return keep(s, "no master: both nodes are slaves (flocker promote on one)")
	}
	return Decision{State: s}
}

// lostBoth: with a witness configured, neither the peer nor the witness has
// been heard for SuspectAfter.
func (m Machine) lostBoth(s State) bool {
	return m.Witness && s.Peer.Liveness >= Suspect && s.Witness >= Suspect
}

func (m Machine) checkFence(s State) Decision {
	if s.Mode == ModeServing && m.lostBoth(s) {
		s.Mode = ModeFenced
		return Decision{State: s, Effects: release(m.Datasets), Note: "lost both peer and witness: fencing"}
	}
	return Decision{State: s}
}

func (m Machine) peerDead(s State, ev Evidence) Decision {
	if s.Mode == ModeServing {
		if d := m.checkFence(s); d.State.Mode != s.Mode {
			return d
		}
		return keep(s, "%s is dead: serving alone", m.Peer)
	}
	if s.Role == config.RoleSlave && s.Peer.Role == config.RoleSlave {
		return keep(s, "%s (slave) is dead: nothing to take over", m.Peer)
	}
	if m.Witness && s.Witness != Alive {
		return keep(s, "%s is dead but the witness is %s: not taking over", m.Peer, s.Witness)
	}
	if ev.HostReachable || ev.ServiceAnswers {
		what := "its host answers"
		if ev.ServiceAnswers {
			what = "the service still answers on the floating address"
		}
		if s.Role == config.RoleSlave {
			s.Mode = ModePeerAgentLost
		}
		return keep(s, "peer agent lost: %s is silent but %s; waiting", m.Peer, what)
	}
	if s.Mode == ModeFenced {
		// A fenced master (restarted, or cut off from peer and witness)
		// serves again at its own epoch. It has not heard the peer since,
		// so it cannot know the peer's epoch: the peer may have taken over
		// at our epoch + 1 meanwhile, and taking that number too would make
		// two masters at one epoch, which only name order can settle
		// (against the node that served the clients). At our own epoch we
		// stay below a peer that took over, and demote when we meet it.
		return m.resume(s, fmt.Sprintf("%s confirmed dead: serving again at epoch %d", m.Peer, s.Epoch))
	}
	return m.promote(s, max(s.Epoch, s.Peer.Epoch)+1, fmt.Sprintf("%s confirmed dead", m.Peer))
}

func (m Machine) cannotHandOff(s State) string {
	p := s.Peer
	switch {
	case p.Liveness != Alive:
		return fmt.Sprintf("%s is %s", m.Peer, p.Liveness)
	case p.Role != config.RoleSlave:
		return fmt.Sprintf("%s is %s, not slave", m.Peer, p.Role)
	case !p.Healthy:
		return fmt.Sprintf("%s is not healthy", m.Peer)
	case !p.Current:
		return fmt.Sprintf("%s is not current", m.Peer)
	}
	return ""
}

func (m Machine) handOff(s State, note string) Decision {
	s.Mode = ModeHandingOff
	effects := release(m.Datasets)
	effects = append(effects, phases(m.Datasets, EffectSyncPeer)...)
	effects = append(effects, Effect{Kind: EffectOfferHandoff, Epoch: s.Epoch + 1})
	return Decision{State: s, Effects: effects, Note: note}
}

func (m Machine) operatorPromote(s State) Decision {
	if s.Mode == ModeServing {
		return keep(s, "promote: already serving")
	}
	if s.Peer.Liveness == Alive && s.Peer.Role == config.RoleMaster {
		return keep(s, "promote refused: %s is master and alive (use flocker handoff there)", m.Peer)
	}
	if s.Mode == ModeHandingOff {
		return m.resume(s, "promoted by operator: handoff abandoned")
	}
	return m.promote(s, max(s.Epoch, s.Peer.Epoch)+1, "promoted by operator")
}

func (m Machine) divergence(s State, e DivergenceDecided) Decision {
	stash := Effect{Kind: EffectStash, Dataset: e.Dataset}
	switch {
	case !e.LocalWins && s.Role == config.RoleMaster:
		d := m.demote(s, s.Epoch, fmt.Sprintf("divergence of %s decided for %s: stashing ours", e.Dataset, m.Peer))
		d.Effects = append(d.Effects, stash)
		return d
	case !e.LocalWins:
		return Decision{State: s, Effects: []Effect{stash}, Note: fmt.Sprintf("divergence of %s decided for %s: stashing ours", e.Dataset, m.Peer)}
	case s.Role == config.RoleMaster:
		return keep(s, "divergence of %s decided for us: %s stashes", e.Dataset, m.Peer)
	case s.Peer.Liveness == Alive && s.Peer.Role == config.RoleSlave:
		return m.promote(s, max(s.Epoch, s.Peer.Epoch)+1, fmt.Sprintf("divergence of %s decided for us", e.Dataset))
	}
	s.DivergenceWon = true
	return keep(s, "divergence of %s decided for us: waiting for %s to step down", e.Dataset, m.Peer)
}

func (m Machine) promote(s State, epoch uint64, note string) Decision {
	s.Role, s.Epoch, s.Mode, s.DivergenceWon = config.RoleMaster, epoch, ModeServing, false
	return Decision{State: s, Effects: append([]Effect{persist(s.Role, epoch)}, takeover(m.Datasets)...), Note: note}
}

// resume serves again without changing role or epoch: nothing to persist.
func (m Machine) resume(s State, note string) Decision {
	s.Mode = ModeServing
	return Decision{State: s, Effects: takeover(m.Datasets), Note: note}
}

func (m Machine) demote(s State, epoch uint64, note string) Decision {
	s.Role, s.Epoch, s.Mode = config.RoleSlave, epoch, ModeStandby
	return Decision{State: s, Effects: append([]Effect{persist(s.Role, epoch)}, release(m.Datasets)...), Note: note}
}
