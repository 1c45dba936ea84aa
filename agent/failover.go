package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/failover"
	"github.com/flockerha/flocker/transport"
)

// supervisor wires package failover into the agent: heartbeats in and out,
// the peer's and the witness's detectors, the role machine, and the
// executor whose adapters are the agent's datasets, the floating addresses
// and the services' hooks. One goroutine (loop) owns the machine's State;
// the others post events to it. The detectors are fed by the receiving
// goroutines at arrival (see liveness), never through the loop.
type supervisor struct {
	a       *Agent
	log     *slog.Logger
	machine failover.Machine
	timing  failover.Timing
	clock   *failover.Clock
	exec    *failover.Executor

	services failover.ServiceSet
	vips     failover.VIPSet
	pinger   *failover.Pinger
	confirm  *failover.Pinger // its own sockets: the witness prober may hold pinger for a period
	probes   failover.Probes
	witness  netip.Addr
	failures int

	events chan any
	seq    atomic.Uint64
	wg     sync.WaitGroup
	// live holds the detectors, fed at arrival by the receivers, which
	// then wake the loop.
	live liveness
	wake chan struct{}

	// Owned by loop.
	st          failover.State
	arrivals    uint64 // the detector's heartbeat count at the last PeerHeard step
	peerLive    failover.Liveness
	witnessLive failover.Liveness
	nextProbe   failover.Instant
	pending     []failover.Effect
	retryAt     failover.Instant
	lastNote    string
	kind        string             // what the role change in progress counts as (RoleChanged)
	health      context.CancelFunc // health checks while serving
	handoffBy   failover.Instant   // an offered handoff is aborted when the peer has not taken it by then
	offeredAt   bool
	handingOver atomic.Bool // a health handover attempt runs (healthHandover)

	mu      sync.Mutex // guards the copies below, read by status and heartbeats
	pub     FailoverStatus
	healthy map[string]bool // last check per dataset (master)
	serving bool            // master whose takeover effects all succeeded
}

// Supervisor timing.
const (
	// retryEvery: effects that failed are run again after this pause (the
	// executor already retried each a few times).
	retryEvery = time.Second
	// heartbeatSendTimeout bounds one heartbeat send: a send that blocks
	// (the control-stream fallback under flow control) must not delay the
	// next one.
	heartbeatSendTimeout = 50 * time.Millisecond
	// handoffTake bounds how long the peer may take to promote itself after
	// our offer (its takeover runs the start hook first; the offer's epoch
	// shows in its heartbeats once persisted, before that).
	handoffTake = 10 * time.Second
	// lateAfter: a gap of this many heartbeat periods between two
	// heartbeats sent, received or witness replies is logged (a third of
	// the default timeout: well before a verdict, rare on a healthy host).
	lateAfter = 3
)

// Events of the supervisor's loop.
type (
	foHealth  struct{ r failover.HealthReport }
	foRequest struct {
		ev    failover.Event
		force bool
		reply chan failover.Decision // nil: nobody waits
		kind  string                 // for the role-change metric; "" is failover
	}
	foStashes struct{ list []Stash }
)

func newSupervisor(a *Agent) (*supervisor, error) {
	c := a.cfg
	t := failover.Timing{Heartbeat: c.Failover.Heartbeat, Timeout: c.Failover.Timeout}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	s := &supervisor{
		a:        a,
		log:      a.log.With("part", "failover"),
		timing:   t,
		clock:    failover.NewClock(),
		services: failover.ServiceSet{},
		vips:     failover.VIPSet{},
		witness:  c.Failover.Witness,
		failures: c.Failover.CheckFailures,
		events:   make(chan any, eventQueue),
		wake:     make(chan struct{}, 1),
		healthy:  map[string]bool{},
	}
	if s.failures <= 0 {
		s.failures = config.DefaultCheckFailures
	}
	s.machine = failover.Machine{Node: c.Node.Name, Peer: c.Peer.Name, Witness: s.witness.IsValid()}
	for _, d := range c.Datasets {
		s.machine.Datasets = append(s.machine.Datasets, d.Name)
		if d.Start != "" || d.Stop != "" || d.Check != "" {
			s.services[d.Name] = &failover.Service{Dataset: d.Name, StartCmd: d.Start, StopCmd: d.Stop, CheckCmd: d.Check, Log: s.log}
		}
		s.healthy[d.Name] = true
	}
	path := a.opts.StatePath
	if path == "" {
		path = c.File()
	}
	s.exec = &failover.Executor{
		State:    stateStore{a: a, path: path},
		Services: s.services,
		Replicas: a,
		Handover: a,
		Stasher:  a,
		Log:      s.log,
	}
	s.st = s.machine.Start(c.State.Role, c.State.Epoch)
	s.publish()
	return s, nil
}

// stateStore persists role and epoch to [state] and then lets the agent
// claim them (Hello, heartbeats, status).
type stateStore struct {
	a    *Agent
	path string
}

func (s stateStore) WriteState(role config.Role, epoch uint64) error {
	if err := config.WriteState(s.path, config.State{Role: role, Epoch: epoch}); err != nil {
		return err
	}
	s.a.mu.Lock()
	changed := s.a.role != role
	s.a.role, s.a.epoch = role, epoch
	s.a.mu.Unlock()
	if changed {
		kind := s.a.fo.kind
		if kind == "" {
			kind = "failover"
		}
		s.a.opts.Observer.RoleChanged(kind)
	}
	return nil
}

// prepare opens what the effects and probes need, in the agent's network
// namespace: the floating addresses' sockets and the ICMP pinger.
func (s *supervisor) prepare(ctx context.Context) error {
	for _, d := range s.a.cfg.Datasets {
		if !d.VIP.IsValid() {
			continue
		}
		f, err := failover.NewFloatingIP(d.Interface, d.VIP, failover.VIPOptions{Logger: s.log})
		if err != nil {
			return fmt.Errorf("dataset %s: %w", d.Name, err)
		}
		s.vips[d.Name] = f
		if d.ProbePort != 0 && !s.probes.Service.IsValid() {
			s.probes.Service = netip.AddrPortFrom(d.VIP.Addr(), d.ProbePort)
		}
	}
	s.exec.Addresses = s.vips
	// Whatever the role, nothing is served before the machine decides: a
	// master starts fenced (the peer may have taken over while this agent
	// was away). An address left from before (the agent was killed) is
	// dropped; a running service is left alone: if this node resumes, its
	// start finds the check passing and does not restart it.
	for name, f := range s.vips {
		if err := f.Remove(ctx); err != nil {
			return fmt.Errorf("dataset %s: dropping the floating address at start: %w", name, err)
		}
	}
	p, err := failover.NewPinger()
	if err != nil {
		// Without ICMP the peer's host cannot be told from its agent; the
		// service probe (if configured) still can.
		s.log.Warn("no ICMP pinger: the peer's host and the witness cannot be probed", "err", err)
		if s.witness.IsValid() {
			return fmt.Errorf("a witness is configured but ICMP is not available: %w", err)
		}
	}
	s.pinger = p
	if p != nil && s.witness.IsValid() {
		if s.confirm, err = failover.NewPinger(); err != nil {
			return fmt.Errorf("opening the fence confirmation's ICMP sockets: %w", err)
		}
	}
	s.probes.Pinger = p
	s.probes.Peer = s.a.cfg.Peer.Address.Addr()
	s.probes.Timeout = s.timing.ProbeTimeout()
	return nil
}

// start runs the loop, the heartbeat sender and the witness prober.
func (s *supervisor) start(ctx context.Context) {
	s.live.start(s.clock, s.timing)
	s.wg.Go(func() { s.loop(ctx) })
	s.wg.Go(func() { s.pulse(ctx) })
	s.wg.Go(func() { s.sendHeartbeats(ctx) })
	if s.witness.IsValid() && s.pinger != nil {
		s.wg.Go(func() {
			failover.RunWitness(ctx, s.pinger, s.witness, s.timing.Heartbeat, func() {
				if gap := s.live.witnessReply(); gap >= lateAfter*s.timing.Heartbeat {
					s.log.Warn("witness reply late", "gap", gap)
				}
				s.poke()
			})
		})
	}
}

// wait waits for the supervisor's goroutines (the agent's context is
// cancelled first).
func (s *supervisor) wait() { s.wg.Wait() }

// close releases sockets. The floating addresses and services stay as they
// are: stopping the agent is not a failover, and a restarted agent resumes.
func (s *supervisor) close() error {
	var errs []error
	for _, f := range s.vips {
		errs = append(errs, f.Close())
	}
	if s.pinger != nil {
		errs = append(errs, s.pinger.Close())
	}
	if s.confirm != nil {
		errs = append(errs, s.confirm.Close())
	}
	return errors.Join(errs...)
}

// receiveHeartbeats feeds one connection's heartbeats to the loop, stamped
// with their arrival.
func (s *supervisor) receiveHeartbeats(ctx context.Context, c *transport.Conn) {
	for {
		hb, err := c.ReceiveHeartbeat(ctx)
		if err != nil {
			return
		}
		gap := s.live.heartbeat(fromWireHeartbeat(hb), failover.Echo{
			Sent: failover.Instant(hb.SentNS), Echo: failover.Instant(hb.EchoNS), Held: time.Duration(hb.HeldNS)})
		s.poke()
		if gap >= lateAfter*s.timing.Heartbeat {
			s.log.Warn("heartbeat late", "gap", gap, "seq", hb.Seq)
		}
	}
}

// pulse ticks the stall detector: a process that did not run for a while
// (CPU starvation, a frozen VM) measured its own pause as the peer's
// silence, and probes whose answers came during the pause timed out. The
// slave does not act on probes made across a stall.
func (s *supervisor) pulse(ctx context.Context) {
	t := time.NewTicker(pulseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if gap := s.live.pulse(); gap >= lateAfter*s.timing.Heartbeat {
			s.log.Warn("agent stalled", "gap", gap)
		} else if gap > 0 {
			s.log.Debug("agent stalled", "gap", gap)
		}
	}
}

// poke wakes the loop without blocking.
func (s *supervisor) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// liveness holds the peer's and the witness's detectors. The goroutines
// that receive heartbeats and witness replies feed them at arrival, under
// the mutex, so a verdict is never older than the last arrival however long
// the loop was busy: a takeover's effects (start hook, writable, address
// announcements) run inside the loop for about half a second, more under
// CPU load, and a detector fed only by the loop judged the peer and the
// witness by what it knew before them (a master then fenced itself right
// after resuming).
type liveness struct {
	mu       sync.Mutex
	clock    *failover.Clock
	peer     *failover.Detector
	witness  *failover.Detector
	arrivals uint64 // heartbeats observed
	rtt      failover.RoundTrip
	// A pulse every pulseEvery: a gap above stallGap means this process
	// (or its scheduler) did not run, and ends at stallEnd.
	lastPulse, stallEnd failover.Instant
}

// Stall detection (see liveness.pulse).
const (
	pulseEvery = 20 * time.Millisecond
	stallGap   = 100 * time.Millisecond
)

// pulse records that this process runs now and returns the gap since the
// last pulse when it was a stall (0 otherwise).
func (l *liveness) pulse() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clock == nil {
		return 0
	}
	now, prev := l.clock.Now(), l.lastPulse
	gap := now.Sub(prev)
	l.lastPulse = now
	if prev != 0 && gap > stallGap {
		l.stallEnd = now
		return gap
	}
	return 0
}

// stalled returns when the latest stall of this process ended (0: none
// seen).
func (l *liveness) stalled() failover.Instant {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stallEnd
}

// verdicts is what liveness says at one instant.
type verdicts struct {
	now           failover.Instant
	peer, witness failover.Verdict
	arrivals      uint64
}

func (l *liveness) start(c *failover.Clock, t failover.Timing) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := c.Now()
	l.clock = c
	l.peer, _ = failover.NewDetector(t, now)
	l.witness, _ = failover.NewDetector(t, now)
}

// started reports whether start ran (publish runs before it).
func (l *liveness) started() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peer != nil
}

// heartbeat records a heartbeat arriving now, with its round-trip echo,
// and returns the time since the previous arrival (0 for the first).
func (l *liveness) heartbeat(hb failover.Heartbeat, e failover.Echo) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peer == nil {
		return 0
	}
	now := l.clock.Now()
	var gap time.Duration
	if v := l.peer.Check(now); v.Heard {
		gap = now.Sub(v.LastHeard)
	}
	l.peer.Observe(hb, now)
	l.rtt.Receive(e, now)
	l.arrivals++
	return gap
}

// sending stamps a heartbeat about to be sent now.
func (l *liveness) sending() failover.Echo {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clock == nil {
		return failover.Echo{}
	}
	return l.rtt.Send(l.clock.Now())
}

// roundTrip is the latest heartbeat round trip (0 before the first).
func (l *liveness) roundTrip() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	rtt, _ := l.rtt.Last()
	return rtt
}

// witnessReply records a witness reply arriving now and returns the time
// since the previous one (0 for the first).
func (l *liveness) witnessReply() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.witness == nil {
		return 0
	}
	now := l.clock.Now()
	var gap time.Duration
	if v := l.witness.Check(now); v.Heard {
		gap = now.Sub(v.LastHeard)
	}
	l.witness.ObserveReply(now)
	return gap
}

// read returns both verdicts at an instant read under the lock, so no
// arrival is newer than it.
func (l *liveness) read() verdicts {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peer == nil {
		return verdicts{}
	}
	now := l.clock.Now()
	return verdicts{now: now, peer: l.peer.Check(now), witness: l.witness.Check(now), arrivals: l.arrivals}
}

// nextChange is the earlier of the detectors' next changes (the witness's
// only when withWitness).
func (l *liveness) nextChange(now failover.Instant, withWitness bool) (failover.Instant, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.peer.NextChange(now)
	if withWitness {
		if w, wok := l.witness.NextChange(now); wok && (!ok || w < at) {
			at, ok = w, true
		}
	}
	return at, ok
}

// sendHeartbeats sends this node's heartbeat every period on the live
// connection.
func (s *supervisor) sendHeartbeats(ctx context.Context) {
	t := time.NewTicker(s.timing.Heartbeat)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c := s.a.sess.Conn()
		if c == nil {
			continue
		}
		if gap := time.Since(last); gap >= lateAfter*s.timing.Heartbeat {
			s.log.Warn("heartbeat sent late", "gap", gap)
		}
		last = time.Now()
		hb := s.heartbeat()
		e := s.live.sending()
		hb.SentNS, hb.EchoNS, hb.HeldNS = int64(e.Sent), int64(e.Echo), int64(e.Held)
		hctx, cancel := context.WithTimeout(ctx, heartbeatSendTimeout)
		err := c.SendHeartbeat(hctx, hb)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Debug("heartbeat not sent", "err", err)
		}
	}
}

// heartbeat is what this node tells the peer: persisted role and epoch,
// and per dataset its newest snapshot and health.
func (s *supervisor) heartbeat() transport.Heartbeat {
	role, epoch := s.a.roleEpoch()
	hb := transport.Heartbeat{Seq: s.seq.Add(1), Role: transport.Role(role), Epoch: epoch}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.a.order {
		st := r.board().read(now)
		d := transport.DatasetHeartbeat{Dataset: r.ds.Name}
		if st.NewestLocal != nil {
			d.NewestGUID = st.NewestLocal.GUID
		}
		if role == config.RoleMaster {
			d.Healthy = s.serving && s.healthy[r.ds.Name]
		} else {
			// A slave can take over once it holds a replica.
			d.Healthy = st.NewestLocal != nil
		}
		hb.Datasets = append(hb.Datasets, d)
	}
	return hb
}

// newestGUIDs is this node's newest snapshot per dataset.
func (s *supervisor) newestGUIDs() map[string]uint64 {
	now := time.Now()
	out := map[string]uint64{}
	for _, r := range s.a.order {
		st := r.board().read(now)
		if st.NewestLocal != nil {
			out[r.ds.Name] = st.NewestLocal.GUID
		} else {
			out[r.ds.Name] = 0
		}
	}
	return out
}

func fromWireHeartbeat(hb transport.Heartbeat) failover.Heartbeat {
	out := failover.Heartbeat{Seq: hb.Seq, Role: config.Role(hb.Role), Epoch: hb.Epoch}
	for _, d := range hb.Datasets {
		out.Datasets = append(out.Datasets, failover.DatasetStatus{Name: d.Dataset, NewestGUID: d.NewestGUID, Healthy: d.Healthy})
	}
	return out
}

// loop owns the State.
func (s *supervisor) loop(ctx context.Context) {
	defer s.stopHealth()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.evaluate(ctx)
		now := s.clock.Now()
		wake := s.nextWake(now)
		timer.Reset(wake.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
		case ev := <-s.events:
			s.handle(ctx, ev)
		}
	}
}

func (s *supervisor) handle(ctx context.Context, ev any) {
	switch ev := ev.(type) {
	case foHealth:
		s.mu.Lock()
		s.healthy[ev.r.Dataset] = ev.r.Err == nil
		s.mu.Unlock()
		if ev.r.Tripped && s.st.Mode == failover.ModeServing {
			s.log.Warn("check keeps failing", "dataset", ev.r.Dataset, "failures", ev.r.Failures, "err", ev.r.Err)
		}
		if ev.r.Err != nil && ev.r.Failures >= s.failures && s.st.Mode == failover.ModeServing {
			// Off the loop: the handover first replicates while serving
			// (controller.go), and is tried again at every failed check.
			s.healthHandover(ctx, ev.r.Dataset)
		}
	case foRequest:
		st := s.st
		if ev.force {
			// A forced promotion ignores what the detector says of the
			// peer: the next epoch makes the peer demote when it hears it.
			s.st.Peer.Liveness = failover.Unknown
		}
		s.kind = ev.kind
		d := s.step(ctx, ev.ev)
		s.kind = ""
		if ev.force && d.State.Role != config.RoleMaster {
			s.st.Peer = st.Peer
		}
		if ev.reply != nil {
			ev.reply <- d
		}
	case foStashes:
		s.mu.Lock()
		s.pub.Stashes = ev.list
		s.mu.Unlock()
	case foDivergence:
		s.step(ctx, failover.DivergenceDecided{Dataset: ev.dataset, LocalWins: ev.localWins})
	}
}

// notePeer tells the master loops when the peer's role or epoch changes.
func (s *supervisor) notePeer(ctx context.Context, role config.Role, epoch uint64) {
	a := s.a
	a.mu.Lock()
	changed := !a.peerHeard || a.peerRole != transport.Role(role) || a.peerEpoch != epoch
	a.peerRole, a.peerEpoch, a.peerHeard = transport.Role(role), epoch, true
	a.peer.Role, a.peer.Epoch = string(role), epoch
	a.mu.Unlock()
	if changed {
		a.broadcast(ctx, evPeerRole{role: transport.Role(role), epoch: epoch})
	}
}

// evaluate turns the detectors' verdicts into the machine's events: a
// heartbeat that arrived (PeerHeard), suspect and dead for the peer (dead
// with fresh probe evidence, repeated while the peer stays dead and this
// node does not serve), changes of the witness's verdict; then the retry of
// failed effects. The verdicts are read again after every step, since a
// step's effects can take long enough for them to change: no event is
// stepped from a verdict older than the last arrival.
func (s *supervisor) evaluate(ctx context.Context) {
	for range 16 { // each pass steps at most one event; 16 is far more than a pass needs
		if !s.evaluateOnce(ctx) {
			break
		}
	}
	now := s.clock.Now()
	if len(s.pending) > 0 && now >= s.retryAt {
		s.run(ctx, s.pending)
	}
	if s.st.Mode == failover.ModeHandingOff && s.offeredAt && now >= s.handoffBy {
		s.offeredAt = false
		s.step(ctx, failover.HandoffAborted{})
	}
}

// evaluateOnce steps the first event the current verdicts call for and
// reports whether it stepped one.
func (s *supervisor) evaluateOnce(ctx context.Context) bool {
	v := s.live.read()
	if v.arrivals != s.arrivals {
		s.arrivals = v.arrivals
		s.peerLive = failover.Alive
		last := v.peer.Last
		healthy, current := failover.PeerFacts(last, s.newestGUIDs())
		s.notePeer(ctx, last.Role, last.Epoch)
		s.step(ctx, failover.PeerHeard{Role: last.Role, Epoch: last.Epoch, Healthy: healthy, Current: current})
		return true
	}
	if s.witness.IsValid() {
		l := v.witness.Liveness
		if !v.witness.Heard && l == failover.Alive {
			l = failover.Unknown // never answered: not a witness to count on yet
		}
		if l != s.witnessLive {
			ev := failover.WitnessVerdict{Liveness: l}
			if s.wouldFence(ev) && s.fenceAverted(ctx) {
				return true
			}
			s.witnessLive = l
			s.step(ctx, ev)
			return true
		}
	}
	switch l := v.peer.Liveness; {
	case l == failover.Suspect && s.peerLive != failover.Suspect:
		if s.wouldFence(failover.PeerSuspect{}) && s.fenceAverted(ctx) {
			return true
		}
		s.peerLive = failover.Suspect
		s.step(ctx, failover.PeerSuspect{})
		return true
	case l == failover.Dead && (s.peerLive != failover.Dead || v.now >= s.nextProbe && s.st.Mode != failover.ModeServing):
		s.peerLive = failover.Dead
		takeover := s.st.Mode != failover.ModeServing // the probes decide whether this node takes over
		if stall := s.live.stalled(); takeover && v.now.Sub(stall) < s.timing.Heartbeat {
			// This process just stalled: what arrived meanwhile may not
			// have been read yet. Probe a period after the stall.
			s.nextProbe = stall.Add(s.timing.Heartbeat)
			return false
		}
		ev := s.probes.Gather(ctx)
		s.nextProbe = s.clock.Now().Add(s.timing.Timeout)
		// The probes took up to a probe timeout: a heartbeat that came
		// meanwhile wins over the dead verdict.
		if s.live.read().arrivals != s.arrivals {
			return true
		}
		if stall := s.live.stalled(); takeover && stall > v.now {
			// A probe whose answer came while this process did not run
			// timed out for nothing: ask again.
			s.log.Warn("probes discarded: this node stalled while they ran", "stall_end", stall, "probes_from", v.now)
			s.nextProbe = stall.Add(s.timing.Heartbeat)
			return false
		}
		if s.wouldFence(failover.PeerDead{Evidence: ev}) && s.fenceAverted(ctx) {
			return true
		}
		s.step(ctx, failover.PeerDead{Evidence: ev})
		return true
	}
	return false
}

// fencing reports whether this node is a fenced master. Only the loop's
// goroutine may call it (the executor's effects run there).
func (s *supervisor) fencing() bool {
	return s.st.Role == config.RoleMaster && s.st.Mode == failover.ModeFenced
}

// wouldFence reports whether stepping ev fences this serving master.
func (s *supervisor) wouldFence(ev failover.Event) bool {
	return s.st.Mode == failover.ModeServing && s.machine.Step(s.st, ev).State.Mode == failover.ModeFenced
}

// fenceAverted sends the witness one more probe before a fence and waits
// up to Timing.FenceConfirm for its answer (see failover.Timing: a master
// whose own process stalled measured its own stall as everyone's silence).
// It reports whether the witness answered or a heartbeat came meanwhile;
// the caller then evaluates again instead of fencing.
func (s *supervisor) fenceAverted(ctx context.Context) bool {
	if s.confirm == nil {
		return false
	}
	v := s.live.read()
	cctx, cancel := context.WithTimeout(ctx, s.timing.FenceConfirm())
	rtt, err := s.confirm.Ping(cctx, s.witness)
	cancel()
	if err == nil {
		s.live.witnessReply()
	}
	// The witness prober or a heartbeat may have answered meanwhile.
	after := s.live.read()
	heard := after.arrivals != s.arrivals
	if err != nil && !heard && after.witness.Liveness != failover.Alive {
		s.log.Info("fence confirmed: the witness did not answer one more probe", "err", err)
		return false
	}
	s.log.Warn("fence averted: the witness answered one more probe, or the peer a heartbeat",
		"witness_answered", err == nil, "witness_rtt", rtt, "heartbeat_came", heard, "witness", after.witness.Liveness.String(),
		"peer_silent", v.now.Sub(v.peer.LastHeard), "witness_silent", v.now.Sub(v.witness.LastHeard))
	return true
}

// nextWake is when evaluate has something to do without an event.
func (s *supervisor) nextWake(now failover.Instant) failover.Instant {
	wake := now.Add(time.Hour)
	consider := func(at failover.Instant, ok bool) {
		if ok && at < wake {
			wake = at
		}
	}
	consider(s.live.nextChange(now, s.witness.IsValid()))
	if s.peerLive == failover.Dead && s.st.Mode != failover.ModeServing {
		consider(s.nextProbe, true)
	}
	if len(s.pending) > 0 {
		consider(s.retryAt, true)
	}
	if s.st.Mode == failover.ModeHandingOff && s.offeredAt {
		consider(s.handoffBy, true)
	}
	if wake < now {
		wake = now
	}
	return wake
}

// step applies one event and carries out the decision.
func (s *supervisor) step(ctx context.Context, ev failover.Event) failover.Decision {
	d := s.machine.Step(s.st, ev)
	s.st = d.State
	if d.Note != "" && (d.Note != s.lastNote || len(d.Effects) > 0) {
		s.lastNote = d.Note
		v := s.live.read()
		args := []any{"event", ev.String(), "state", d.State.String(), "effects", failover.Effects(d.Effects), "note", d.Note,
			"peer_silent", v.now.Sub(v.peer.LastHeard)}
		if s.witness.IsValid() {
			args = append(args, "witness_silent", v.now.Sub(v.witness.LastHeard))
		}
		s.log.Info("failover decision", args...)
		s.mu.Lock()
		s.pub.Note, s.pub.NoteAt = d.Note, time.Now()
		s.mu.Unlock()
	}
	if len(d.Effects) > 0 {
		s.run(ctx, d.Effects)
	}
	s.publish()
	return d
}

// run carries out effects, then makes the loops and the health checks
// match the state. What fails is kept and run again later (the effects are
// idempotent); a failed handoff is aborted.
func (s *supervisor) run(ctx context.Context, effects []failover.Effect) {
	rep := s.exec.Run(ctx, effects)
	s.pending = rep.Remaining
	if rep.Err != nil {
		s.retryAt = s.clock.Now().Add(retryEvery)
		s.log.Error("failover effects failed; retrying", "err", rep.Err, "remaining", failover.Effects(rep.Remaining))
		if s.st.Mode == failover.ModeHandingOff {
			s.pending = nil
			s.step(ctx, failover.HandoffAborted{})
			return
		}
	}
	master := s.st.Role == config.RoleMaster
	serving := master && (s.st.Mode == failover.ModeServing || s.st.Mode == failover.ModeHandingOff)
	if err := s.a.reconcile(ctx, master, serving); err != nil {
		s.log.Error("switching the dataset loops failed", "err", err)
	}
	if master && s.st.Mode == failover.ModeServing {
		s.a.broadcast(ctx, evThaw{})
	}
	if master && s.st.Mode == failover.ModeServing && rep.Err == nil {
		s.startHealth(ctx)
	} else if s.st.Mode != failover.ModeServing {
		s.stopHealth()
	}
	s.mu.Lock()
	s.serving = master && s.st.Mode == failover.ModeServing && len(s.pending) == 0
	s.mu.Unlock()
	if s.st.Mode != failover.ModeHandingOff {
		s.offeredAt = false
	}
	s.publish()
}

// handoffOffered: the peer offers us its role (a planned handoff).
func (s *supervisor) handoffOffered(ctx context.Context, epoch uint64) {
	post(ctx, s.events, foRequest{ev: failover.HandoffOffered{Epoch: epoch}})
}

// offered: our offer went out; the peer must take it within handoffTake.
func (s *supervisor) offered() {
	// Called from the executor, inside the loop: no channel round trip.
	s.offeredAt = true
	s.handoffBy = s.clock.Now().Add(handoffTake)
}

// noteStash refreshes the stash list shown in status, off the loop.
func (s *supervisor) noteStash() {
	ctx := s.a.runCtx
	s.wg.Go(func() {
		list, err := s.a.Stashes(ctx)
		if err != nil {
			s.log.Warn("listing stashes failed", "err", err)
			return
		}
		post(ctx, s.events, foStashes{list: list})
	})
}

// startHealth runs each dataset's check while this node serves.
func (s *supervisor) startHealth(ctx context.Context) {
	if s.health != nil {
		return
	}
	hctx, cancel := context.WithCancel(ctx)
	s.health = cancel
	for name, svc := range s.services {
		if svc.CheckCmd == "" {
			continue
		}
		s.mu.Lock()
		s.healthy[name] = true // start waited for check to pass
		s.mu.Unlock()
		counter := &failover.HealthCounter{Threshold: s.failures}
		s.wg.Go(func() {
			failover.RunHealthChecks(hctx, svc, 0, counter, func(r failover.HealthReport) {
				post(hctx, s.events, foHealth{r: r})
			})
		})
	}
}

func (s *supervisor) stopHealth() {
	if s.health != nil {
		s.health()
		s.health = nil
	}
}

// publish copies the state for status readers.
func (s *supervisor) publish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &s.pub
	p.Mode = string(s.st.Mode)
	p.PeerLiveness = s.st.Peer.Liveness.String()
	p.PeerAgentLost = s.st.Mode == failover.ModePeerAgentLost
	servingNow := s.st.Peer.Liveness == failover.Alive && s.st.Peer.Role == config.RoleMaster && s.st.Peer.Healthy
	if !servingNow || p.PeerEpoch != s.st.Peer.Epoch {
		p.PeerServingAt = time.Time{}
	}
	if servingNow && p.PeerServingAt.IsZero() {
		p.PeerServingAt = time.Now()
	}
	p.PeerRole, p.PeerEpoch, p.PeerHealthy = string(s.st.Peer.Role), s.st.Peer.Epoch, s.st.Peer.Healthy
	if s.live.started() {
		if v := s.live.read(); v.peer.Heard {
			p.LastHeard = time.Now().Add(-v.now.Sub(v.peer.LastHeard))
		}
	}
	p.Witness = ""
	if s.witness.IsValid() {
		p.Witness = s.st.Witness.String()
	}
	p.Pending = ""
	if len(s.pending) > 0 {
		p.Pending = failover.Effects(s.pending)
	}
}

func (s *supervisor) status() FailoverStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pub
}

// request runs an operator's event through the loop and returns its
// decision.
func (s *supervisor) request(ctx context.Context, ev failover.Event, force bool, kind string) (failover.Decision, error) {
	reply := make(chan failover.Decision, 1)
	select {
	case s.events <- foRequest{ev: ev, force: force, reply: reply, kind: kind}:
	case <-ctx.Done():
		return failover.Decision{}, ctx.Err()
	case <-s.a.runCtx.Done():
		return failover.Decision{}, errors.New("agent is stopping")
	}
	select {
	case d := <-reply:
		return d, nil
	case <-ctx.Done():
		return failover.Decision{}, ctx.Err()
	}
}
