package failover

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flockerha/flocker/agent/config"
)

const (
	master = config.RoleMaster
	slave  = config.RoleSlave
)

var (
	withWitness = Machine{Node: "alpha", Peer: "beta", Datasets: []string{"app"}, Witness: true}
	noWitness   = Machine{Node: "alpha", Peer: "beta", Datasets: []string{"app"}}
	// betaNode is the same pair seen from beta: the larger name.
	betaNode = Machine{Node: "beta", Peer: "alpha", Datasets: []string{"app"}, Witness: true}
)

// The five modes a node can be in, each with a typical view of the others.
var (
	standby = State{Role: slave, Epoch: 7, Mode: ModeStandby,
		Peer: PeerView{Liveness: Alive, Role: master, Epoch: 7, Healthy: true, Current: true}, Witness: Alive}
	agentLost = State{Role: slave, Epoch: 7, Mode: ModePeerAgentLost,
		Peer: PeerView{Liveness: Dead, Role: master, Epoch: 7}, Witness: Alive}
	serving = State{Role: master, Epoch: 7, Mode: ModeServing,
		Peer: PeerView{Liveness: Alive, Role: slave, Epoch: 7, Healthy: true, Current: true}, Witness: Alive}
	fenced  = State{Role: master, Epoch: 7, Mode: ModeFenced, Witness: Alive} // just started: peer unknown
	handing = State{Role: master, Epoch: 7, Mode: ModeHandingOff,
		Peer: PeerView{Liveness: Alive, Role: slave, Epoch: 7, Healthy: true, Current: true}, Witness: Alive}
)

func with(s State, f func(*State)) State { f(&s); return s }

var (
	masterHeard7 = PeerHeard{Role: master, Epoch: 7, Healthy: true, Current: true}
	masterHeard8 = PeerHeard{Role: master, Epoch: 8, Healthy: true, Current: true}
	slaveHeard7  = PeerHeard{Role: slave, Epoch: 7, Healthy: true, Current: true}
	slaveHeard9  = PeerHeard{Role: slave, Epoch: 9, Healthy: true, Current: true}
	deadSilent   = PeerDead{}
	deadHostUp   = PeerDead{Evidence: Evidence{HostReachable: true}}
	deadServing  = PeerDead{Evidence: Evidence{HostReachable: true, ServiceAnswers: true}}
)

func TestMachine(t *testing.T) {
	tests := []struct {
		name string
		m    Machine
		from State
		ev   Event
		want string
	}{
		// slave, standby
		{"standby hears master", withWitness, standby, masterHeard7, "slave/standby e7: -"},
		{"standby hears higher epoch: follows, persisted", withWitness, standby, masterHeard8,
			"slave/standby e8: persist(slave,8) | beta is at epoch 8: following"},
		{"standby hears another slave", withWitness, standby, slaveHeard7,
			"slave/standby e7: - | no master: both nodes are slaves (flocker promote on one)"},
		{"standby: master suspect changes nothing", withWitness, standby, PeerSuspect{}, "slave/standby e7: -"},
		{"standby: master dead, host and service gone: promote", withWitness, standby, deadSilent,
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | beta confirmed dead"},
		{"standby: master dead but its host answers: agent lost", withWitness, standby, deadHostUp,
			"slave/peer-agent-lost e7: - | peer agent lost: beta is silent but its host answers; waiting"},
		{"standby: master dead but service answers on the VIP: agent lost", withWitness, standby, deadServing,
			"slave/peer-agent-lost e7: - | peer agent lost: beta is silent but the service still answers on the floating address; waiting"},
		{"standby: master dead, witness unreachable: no promotion", withWitness, with(standby, func(s *State) { s.Witness = Dead }), deadSilent,
			"slave/standby e7: - | beta is dead but the witness is dead: not taking over"},
		{"standby: master dead, witness never answered: no promotion", withWitness, with(standby, func(s *State) { s.Witness = Unknown }), deadSilent,
			"slave/standby e7: - | beta is dead but the witness is unknown: not taking over"},
		{"standby without witness: master dead: promote", noWitness, with(standby, func(s *State) { s.Witness = Unknown }), deadSilent,
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | beta confirmed dead"},
		{"standby: peer never heard, dead: promote", withWitness, with(standby, func(s *State) { s.Peer = PeerView{} }), deadSilent,
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | beta confirmed dead"},
		{"standby: a slave peer dies: nothing to take over", withWitness, with(standby, func(s *State) { s.Peer.Role = slave }), deadSilent,
			"slave/standby e7: - | beta (slave) is dead: nothing to take over"},
		{"standby: promotion takes the higher known epoch", withWitness, with(standby, func(s *State) { s.Peer.Epoch = 11 }), deadSilent,
			"master/serving e12: persist(master,12) abort-receive(app) writable(app) start(app) vip-add(app) | beta confirmed dead"},
		{"standby: witness lost changes nothing", withWitness, standby, WitnessVerdict{Suspect}, "slave/standby e7: -"},
		{"standby: health failure ignored", withWitness, standby, HealthFailed{"app"},
			"slave/standby e7: - | check of app failed while not serving: ignored"},
		{"standby: operator promote while master alive: refused", withWitness, standby, Promote{},
			"slave/standby e7: - | promote refused: beta is master and alive (use flocker handoff there)"},
		{"standby: operator promote with master dead: forced", withWitness, with(standby, func(s *State) { s.Peer.Liveness = Dead; s.Witness = Dead }), Promote{},
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | promoted by operator"},
		{"standby: demote is a no-op", withWitness, standby, Demote{}, "slave/standby e7: - | demote: already slave"},
		{"standby: handoff refused", withWitness, standby, Handoff{}, "slave/standby e7: - | handoff refused: run it on the master"},
		{"standby: handoff offered: take it", withWitness, standby, HandoffOffered{Epoch: 8},
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | took the handoff from beta"},
		{"standby: stale handoff offer ignored", withWitness, standby, HandoffOffered{Epoch: 7},
			"slave/standby e7: - | handoff offer of epoch 7 ignored: not above epoch 7"},
		{"standby: handoff abort ignored", withWitness, standby, HandoffAborted{},
			"slave/standby e7: - | handoff abort ignored: no handoff in progress"},
		{"standby: divergence lost: stash", withWitness, standby, DivergenceDecided{"app", false},
			"slave/standby e7: stash(app) | divergence of app decided for beta: stashing ours"},
		{"standby: divergence won, master still up: wait", withWitness, standby, DivergenceDecided{"app", true},
			"slave/standby e7: - | divergence of app decided for us: waiting for beta to step down"},
		{"standby: divergence won, peer already slave: promote", withWitness, with(standby, func(s *State) { s.Peer.Role = slave }), DivergenceDecided{"app", true},
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | divergence of app decided for us"},
		{"standby with divergence won: peer steps down: promote", withWitness, with(standby, func(s *State) { s.DivergenceWon = true }), slaveHeard7,
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | divergence won and beta stepped down"},

		// slave, peer agent lost
		{"agent lost: agent back", withWitness, agentLost, masterHeard7, "slave/standby e7: -"},
		{"agent lost: suspect changes nothing", withWitness, agentLost, PeerSuspect{}, "slave/peer-agent-lost e7: -"},
		{"agent lost: still answering: keep waiting", withWitness, agentLost, deadServing,
			"slave/peer-agent-lost e7: - | peer agent lost: beta is silent but the service still answers on the floating address; waiting"},
		{"agent lost: then the host dies too: promote", withWitness, agentLost, deadSilent,
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | beta confirmed dead"},
		{"agent lost: witness verdict recorded", withWitness, agentLost, WitnessVerdict{Dead}, "slave/peer-agent-lost e7: -"},
		{"agent lost: health failure ignored", withWitness, agentLost, HealthFailed{"app"},
			"slave/peer-agent-lost e7: - | check of app failed while not serving: ignored"},
		{"agent lost: operator promote", withWitness, agentLost, Promote{},
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | promoted by operator"},
		{"agent lost: demote no-op", withWitness, agentLost, Demote{}, "slave/peer-agent-lost e7: - | demote: already slave"},
		{"agent lost: handoff refused", withWitness, agentLost, Handoff{}, "slave/peer-agent-lost e7: - | handoff refused: run it on the master"},
		{"agent lost: handoff offered", withWitness, agentLost, HandoffOffered{Epoch: 8},
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | took the handoff from beta"},
		{"agent lost: handoff abort ignored", withWitness, agentLost, HandoffAborted{},
			"slave/peer-agent-lost e7: - | handoff abort ignored: no handoff in progress"},
		{"agent lost: divergence lost", withWitness, agentLost, DivergenceDecided{"app", false},
			"slave/peer-agent-lost e7: stash(app) | divergence of app decided for beta: stashing ours"},

		// master, serving
		{"serving hears its slave", withWitness, serving, slaveHeard7, "master/serving e7: -"},
		{"serving hears a higher epoch: demote, persisted first", withWitness, serving, masterHeard8,
			"slave/standby e8: persist(slave,8) vip-drop(app) stop(app) readonly(app) | beta is master at epoch 8, above ours"},
		{"serving hears a slave at a higher epoch: demote", withWitness, serving, slaveHeard9,
			"slave/standby e9: persist(slave,9) vip-drop(app) stop(app) readonly(app) | beta is slave at epoch 9, above ours"},
		{"serving: two masters at one epoch, alpha keeps it", withWitness, serving, masterHeard7,
			"master/serving e7: - | two masters at epoch 7: alpha keeps it (name order), waiting for beta to demote"},
		{"serving: two masters at one epoch, beta yields", betaNode, serving, masterHeard7,
			"slave/standby e7: persist(slave,7) vip-drop(app) stop(app) readonly(app) | two masters at epoch 7: alpha keeps it (name order)"},
		{"serving: peer suspect, witness fine: keep serving", withWitness, serving, PeerSuspect{}, "master/serving e7: -"},
		{"serving: peer suspect, witness lost: fence", withWitness, with(serving, func(s *State) { s.Witness = Suspect }), PeerSuspect{},
			"master/fenced e7: vip-drop(app) stop(app) readonly(app) | lost both peer and witness: fencing"},
		{"serving: witness lost, peer already suspect: fence", withWitness, with(serving, func(s *State) { s.Peer.Liveness = Suspect }), WitnessVerdict{Suspect},
			"master/fenced e7: vip-drop(app) stop(app) readonly(app) | lost both peer and witness: fencing"},
		{"serving: witness lost, peer alive: keep serving", withWitness, serving, WitnessVerdict{Dead}, "master/serving e7: -"},
		{"serving without witness: peer dead: serve alone", noWitness, serving, deadSilent,
			"master/serving e7: - | beta is dead: serving alone"},
		{"serving: peer dead, witness fine: serve alone", withWitness, serving, deadSilent,
			"master/serving e7: - | beta is dead: serving alone"},
		{"serving: peer dead, witness dead: fence", withWitness, with(serving, func(s *State) { s.Witness = Dead }), deadSilent,
			"master/fenced e7: vip-drop(app) stop(app) readonly(app) | lost both peer and witness: fencing"},
		{"serving: health failed, peer ready: hand over", withWitness, serving, HealthFailed{"app"},
			"master/handing-off e7: vip-drop(app) stop(app) readonly(app) sync-peer(app) offer-handoff(8) | check of app keeps failing: handing over to beta"},
		{"serving: health failed, peer not current: stay", withWitness, with(serving, func(s *State) { s.Peer.Current = false }), HealthFailed{"app"},
			"master/serving e7: - | check of app keeps failing but beta is not current: staying master"},
		{"serving: health failed, peer unhealthy: stay", withWitness, with(serving, func(s *State) { s.Peer.Healthy = false }), HealthFailed{"app"},
			"master/serving e7: - | check of app keeps failing but beta is not healthy: staying master"},
		{"serving: health failed, peer dead: stay", withWitness, with(serving, func(s *State) { s.Peer.Liveness = Dead }), HealthFailed{"app"},
			"master/serving e7: - | check of app keeps failing but beta is dead: staying master"},
		{"serving: operator promote no-op", withWitness, serving, Promote{}, "master/serving e7: - | promote: already serving"},
		{"serving: operator demote", withWitness, serving, Demote{},
			"slave/standby e7: persist(slave,7) vip-drop(app) stop(app) readonly(app) | demoted by operator"},
		{"serving: operator handoff", withWitness, serving, Handoff{},
			"master/handing-off e7: vip-drop(app) stop(app) readonly(app) sync-peer(app) offer-handoff(8) | handoff requested by operator"},
		{"serving: operator handoff, peer not slave: refused", withWitness, with(serving, func(s *State) { s.Peer.Role = master }), Handoff{},
			"master/serving e7: - | handoff refused: beta is master, not slave"},
		{"serving: handoff offer ignored", withWitness, serving, HandoffOffered{Epoch: 8},
			"master/serving e7: - | handoff offer of epoch 8 ignored: this node is master"},
		{"serving: handoff abort ignored", withWitness, serving, HandoffAborted{},
			"master/serving e7: - | handoff abort ignored: no handoff in progress"},
		{"serving: divergence won", withWitness, serving, DivergenceDecided{"app", true},
			"master/serving e7: - | divergence of app decided for us: beta stashes"},
		{"serving: divergence lost: demote then stash", withWitness, serving, DivergenceDecided{"app", false},
			"slave/standby e7: persist(slave,7) vip-drop(app) stop(app) readonly(app) stash(app) | divergence of app decided for beta: stashing ours"},

		// master, fenced (just started, or lost peer and witness)
		{"fenced hears its slave: serve again, nothing to persist", withWitness, fenced, slaveHeard7,
			"master/serving e7: abort-receive(app) writable(app) start(app) vip-add(app) | beta heard as slave at epoch 7"},
		{"fenced hears master at higher epoch: demote (the returning master)", withWitness, fenced, masterHeard8,
			"slave/standby e8: persist(slave,8) vip-drop(app) stop(app) readonly(app) | beta is master at epoch 8, above ours"},
		{"fenced: two masters at one epoch, alpha waits for beta to yield", withWitness, fenced, masterHeard7,
			"master/fenced e7: - | two masters at epoch 7: alpha keeps it (name order), waiting for beta to demote"},
		{"fenced: peer master at older epoch: wait", withWitness, with(fenced, func(s *State) { s.Epoch = 9 }), masterHeard8,
			"master/fenced e9: - | beta is master at older epoch 8: waiting for it to demote"},
		{"fenced: suspect changes nothing", withWitness, fenced, PeerSuspect{}, "master/fenced e7: -"},
		{"fenced: peer confirmed dead with witness: serve again at our epoch", withWitness, fenced, deadSilent,
			"master/serving e7: abort-receive(app) writable(app) start(app) vip-add(app) | beta confirmed dead: serving again at epoch 7"},
		{"fenced: peer silent, witness still lost: stay fenced", withWitness, with(fenced, func(s *State) { s.Witness = Suspect }), deadSilent,
			"master/fenced e7: - | beta is dead but the witness is suspect: not taking over"},
		{"fenced: peer silent but host answers: stay fenced", withWitness, fenced, deadHostUp,
			"master/fenced e7: - | peer agent lost: beta is silent but its host answers; waiting"},
		{"fenced: witness back alone: stay fenced", withWitness, fenced, WitnessVerdict{Alive}, "master/fenced e7: -"},
		{"fenced: health failure ignored", withWitness, fenced, HealthFailed{"app"},
			"master/fenced e7: - | check of app failed while not serving: ignored"},
		{"fenced: operator promote: new epoch", withWitness, fenced, Promote{},
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | promoted by operator"},
		{"fenced: operator demote", withWitness, fenced, Demote{},
			"slave/standby e7: persist(slave,7) vip-drop(app) stop(app) readonly(app) | demoted by operator"},
		{"fenced: operator handoff refused", withWitness, fenced, Handoff{},
			"master/fenced e7: - | handoff refused: master is fenced, not serving"},
		{"fenced: handoff offer ignored", withWitness, fenced, HandoffOffered{Epoch: 8},
			"master/fenced e7: - | handoff offer of epoch 8 ignored: this node is master"},
		{"fenced: handoff abort ignored", withWitness, fenced, HandoffAborted{},
			"master/fenced e7: - | handoff abort ignored: no handoff in progress"},
		{"fenced: divergence lost", withWitness, fenced, DivergenceDecided{"app", false},
			"slave/standby e7: persist(slave,7) vip-drop(app) stop(app) readonly(app) stash(app) | divergence of app decided for beta: stashing ours"},

		// master, handing off
		{"handing off: peer took the epoch: demote", withWitness, handing, masterHeard8,
			"slave/standby e8: persist(slave,8) vip-drop(app) stop(app) readonly(app) | beta is master at epoch 8, above ours"},
		{"handing off: peer still slave: wait", withWitness, handing, slaveHeard7, "master/handing-off e7: -"},
		{"handing off: suspect changes nothing", withWitness, handing, PeerSuspect{}, "master/handing-off e7: -"},
		{"handing off: peer died: take over again at a new epoch", withWitness, handing, deadSilent,
			"master/serving e8: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app) | beta confirmed dead"},
		{"handing off: witness verdict recorded", withWitness, handing, WitnessVerdict{Dead}, "master/handing-off e7: -"},
		{"handing off: health failure ignored", withWitness, handing, HealthFailed{"app"},
			"master/handing-off e7: - | check of app failed while not serving: ignored"},
		{"handing off: operator promote abandons it", withWitness, handing, Promote{},
			"master/serving e7: abort-receive(app) writable(app) start(app) vip-add(app) | promoted by operator: handoff abandoned"},
		{"handing off: operator demote", withWitness, handing, Demote{},
			"slave/standby e7: persist(slave,7) vip-drop(app) stop(app) readonly(app) | demoted by operator"},
		{"handing off: second handoff refused", withWitness, handing, Handoff{},
			"master/handing-off e7: - | handoff refused: master is handing-off, not serving"},
		{"handing off: offer ignored", withWitness, handing, HandoffOffered{Epoch: 8},
			"master/handing-off e7: - | handoff offer of epoch 8 ignored: this node is master"},
		{"handing off: aborted: serve again", withWitness, handing, HandoffAborted{},
			"master/serving e7: abort-receive(app) writable(app) start(app) vip-add(app) | handoff aborted: serving again"},
		{"handing off: divergence won", withWitness, handing, DivergenceDecided{"app", true},
			"master/handing-off e7: - | divergence of app decided for us: beta stashes"},
	}

	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.m.Step(tt.from, tt.ev)
			if got := d.String(); got != tt.want {
				t.Errorf("%s + %s:\ngot  %s\nwant %s", tt.from, tt.ev, got, tt.want)
			}
			checkPersistFirst(t, tt.from, d)
		})
		covered[fmt.Sprintf("%s+%T", tt.from.Mode, tt.ev)] = true
	}
	// Every mode meets every kind of event at least once above.
	modes := []Mode{ModeStandby, ModePeerAgentLost, ModeServing, ModeFenced, ModeHandingOff}
	events := []Event{PeerHeard{}, PeerSuspect{}, PeerDead{}, WitnessVerdict{}, HealthFailed{}, Promote{}, Demote{},
		Handoff{}, HandoffOffered{}, HandoffAborted{}, DivergenceDecided{}}
	var missing []string
	for _, m := range modes {
		for _, e := range events {
			if k := fmt.Sprintf("%s+%T", m, e); !covered[k] {
				missing = append(missing, k)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("state/event pairs without a row: %s", strings.Join(missing, ", "))
	}
}

// checkPersistFirst: a decision that changes role or epoch persists the new
// ones before anything else; one that changes neither persists nothing.
func checkPersistFirst(t *testing.T, from State, d Decision) {
	t.Helper()
	changed := d.State.Role != from.Role || d.State.Epoch != from.Epoch
	for i, e := range d.Effects {
		if e.Kind == EffectPersist && i != 0 {
			t.Errorf("persist at position %d in %s", i, Effects(d.Effects))
		}
	}
	if changed {
		if len(d.Effects) == 0 || d.Effects[0] != persist(d.State.Role, d.State.Epoch) {
			t.Errorf("%s -> %s without persisting first: %s", from, d.State, Effects(d.Effects))
		}
	} else if len(d.Effects) > 0 && d.Effects[0].Kind == EffectPersist {
		t.Errorf("persist without a change of role or epoch: %s", Effects(d.Effects))
	}
	if d.State.Role == slave && d.State.Mode != ModeStandby && d.State.Mode != ModePeerAgentLost ||
		d.State.Role == master && d.State.Mode != ModeServing && d.State.Mode != ModeFenced && d.State.Mode != ModeHandingOff {
		t.Errorf("impossible state %s", d.State)
	}
}

func TestMachineStart(t *testing.T) {
	if got := withWitness.Start(master, 7).String(); got != "master/fenced e7" {
		t.Errorf("master starts %s, want fenced", got)
	}
	if got := withWitness.Start(slave, 7).String(); got != "slave/standby e7" {
		t.Errorf("slave starts %s, want standby", got)
	}
}

// Several datasets: every address goes before any service stops, and comes
// back only after every service checks healthy.
func TestMachineDatasetOrder(t *testing.T) {
	m := Machine{Node: "alpha", Peer: "beta", Datasets: []string{"app", "db"}}
	got := m.Step(standby, deadSilent).String()
	want := "master/serving e8: persist(master,8) abort-receive(app) abort-receive(db) writable(app) writable(db) " +
		"start(app) start(db) vip-add(app) vip-add(db) | beta confirmed dead"
	if got != want {
		t.Errorf("promotion:\ngot  %s\nwant %s", got, want)
	}
	got = m.Step(serving, masterHeard8).String()
	want = "slave/standby e8: persist(slave,8) vip-drop(app) vip-drop(db) stop(app) stop(db) readonly(app) readonly(db) | beta is master at epoch 8, above ours"
	if got != want {
		t.Errorf("demotion:\ngot  %s\nwant %s", got, want)
	}
}

// Two machines talking through their decisions: a failover and the old
// master's return, a split brain resolved by epochs, and a handoff.
func TestMachinePair(t *testing.T) {
	a := Machine{Node: "alpha", Peer: "beta", Datasets: []string{"app"}, Witness: true}
	b := Machine{Node: "beta", Peer: "alpha", Datasets: []string{"app"}, Witness: true}
	sa, sb := a.Start(master, 1), b.Start(slave, 1)
	var log []string
	step := func(name string, m Machine, s *State, ev Event) {
		d := m.Step(*s, ev)
		*s = d.State
		log = append(log, fmt.Sprintf("%s %s -> %s", name, ev, d))
	}
	hbOf := func(s State) PeerHeard { return PeerHeard{Role: s.Role, Epoch: s.Epoch, Healthy: true, Current: true} }
	step("a", a, &sa, WitnessVerdict{Alive})
	step("b", b, &sb, WitnessVerdict{Alive})
	step("a", a, &sa, hbOf(sb))
	step("b", b, &sb, hbOf(sa))
	// alpha's host dies.
	step("b", b, &sb, PeerSuspect{})
	step("b", b, &sb, PeerDead{})
	// alpha comes back (restarted, master at epoch 1 in its INI).
	sa = a.Start(sa.Role, sa.Epoch)
	step("a", a, &sa, hbOf(sb))
	step("b", b, &sb, hbOf(sa))
	// planned handoff back to alpha.
	step("b", b, &sb, Handoff{})
	step("a", a, &sa, HandoffOffered{Epoch: sb.Epoch + 1})
	step("b", b, &sb, hbOf(sa))
	step("a", a, &sa, hbOf(sb))
	want := `
a witness-alive -> master/fenced e1: -
b witness-alive -> slave/standby e1: -
a peer-heard(slave,1,healthy=true,current=true) -> master/serving e1: abort-receive(app) writable(app) start(app) vip-add(app) | beta heard as slave at epoch 1
b peer-heard(master,1,healthy=true,current=true) -> slave/standby e1: -
b peer-suspect -> slave/standby e1: -
b peer-dead(host=false,service=false) -> master/serving e2: persist(master,2) abort-receive(app) writable(app) start(app) vip-add(app) | alpha confirmed dead
a peer-heard(master,2,healthy=true,current=true) -> slave/standby e2: persist(slave,2) vip-drop(app) stop(app) readonly(app) | beta is master at epoch 2, above ours
b peer-heard(slave,2,healthy=true,current=true) -> master/serving e2: -
b handoff -> master/handing-off e2: vip-drop(app) stop(app) readonly(app) sync-peer(app) offer-handoff(3) | handoff requested by operator
a handoff-offered(3) -> master/serving e3: persist(master,3) abort-receive(app) writable(app) start(app) vip-add(app) | took the handoff from beta
b peer-heard(master,3,healthy=true,current=true) -> slave/standby e3: persist(slave,3) vip-drop(app) stop(app) readonly(app) | alpha is master at epoch 3, above ours
a peer-heard(slave,3,healthy=true,current=true) -> master/serving e3: -
`
	if got := strings.Join(log, "\n"); got != strings.TrimSpace(want) {
		t.Errorf("transcript:\n%s\nwant:\n%s", got, strings.TrimSpace(want))
	}
}

func TestPeerFacts(t *testing.T) {
	mine := map[string]uint64{"app": 5, "db": 9}
	tests := []struct {
		hb            Heartbeat
		healthy, curr bool
	}{
		{Heartbeat{Datasets: []DatasetStatus{{"app", 5, true}, {"db", 9, true}}}, true, true},
		{Heartbeat{Datasets: []DatasetStatus{{"app", 5, true}, {"db", 8, true}}}, true, false},
		{Heartbeat{Datasets: []DatasetStatus{{"app", 5, false}, {"db", 9, true}}}, false, true},
		{Heartbeat{Datasets: []DatasetStatus{{"app", 5, true}}}, false, false},
		{Heartbeat{Datasets: []DatasetStatus{{"app", 5, true}, {"db", 9, true}, {"extra", 1, false}}}, true, true},
	}
	for _, tt := range tests {
		h, c := PeerFacts(tt.hb, mine)
		if h != tt.healthy || c != tt.curr {
			t.Errorf("%+v: healthy %v current %v, want %v %v", tt.hb.Datasets, h, c, tt.healthy, tt.curr)
		}
	}
}

// TestRestartedMasterStaysBelowPeer: alpha's host dies, beta takes over at
// epoch 2. Alpha restarts (master at epoch 1 in its INI) while it cannot
// reach beta: it confirms beta dead and serves again, but at its own epoch
// 1, never at beta's 2: when they meet, alpha is below and demotes, and the
// divergence goes to beta, which served the clients meanwhile.
func TestRestartedMasterStaysBelowPeer(t *testing.T) {
	a := Machine{Node: "alpha", Peer: "beta", Datasets: []string{"app"}, Witness: true}
	b := Machine{Node: "beta", Peer: "alpha", Datasets: []string{"app"}, Witness: true}
	sb := b.Start(slave, 1)
	sb = b.Step(sb, WitnessVerdict{Alive}).State
	sb = b.Step(sb, PeerHeard{Role: master, Epoch: 1, Healthy: true, Current: true}).State
	sb = b.Step(sb, PeerDead{}).State
	if sb.Role != master || sb.Epoch != 2 {
		t.Fatalf("beta after alpha's death: %s; want master at epoch 2", sb)
	}
	sa := a.Start(master, 1)
	sa = a.Step(sa, WitnessVerdict{Alive}).State
	d := a.Step(sa, PeerDead{})
	if d.State.Epoch >= sb.Epoch {
		t.Fatalf("restarted alpha, beta unreachable: %s; its epoch must stay below beta's %d", d, sb.Epoch)
	}
	for _, e := range d.Effects {
		if e.Kind == EffectPersist {
			t.Fatalf("restarted alpha persisted a new role or epoch without hearing beta: %s", d)
		}
	}
	sa = d.State
	d = a.Step(sa, PeerHeard{Role: sb.Role, Epoch: sb.Epoch, Healthy: true, Current: false})
	if d.State.Role != slave || d.State.Epoch != sb.Epoch {
		t.Fatalf("alpha meeting beta: %s; want slave at beta's epoch %d", d, sb.Epoch)
	}
}
