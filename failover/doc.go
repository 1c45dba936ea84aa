// Package failover decides when a node takes or gives up the protected
// datasets and carries those decisions out.
//
// Decisions are pure: they take observations and a monotonic "now" and
// return verdicts, new states and ordered effects; the adapters that touch
// the system are separate and each is idempotent.
//
//   - Detector (detector.go): heartbeats and witness replies in, a verdict
//     out: alive, suspect or dead, and since when. Timing (timing.go) derives
//     every window from [failover] heartbeat and timeout and documents why
//     the master's fence deadline expires before the slave's promote
//     deadline.
//   - Machine (machine.go): the role and epoch state machine. Events in
//     (peer heard, suspect or dead with the evidence that tells a dead host
//     from a dead agent, witness reachable or not, failed health checks,
//     operator requests, handoff offers, divergence decided), a Decision out:
//     the next State and an ordered list of Effects whose first element is
//     "persist role and epoch" whenever either changes.
//   - Executor (executor.go): runs an effect list through small interfaces,
//     refuses a list that would act before persisting, retries each effect a
//     few times and stops at the first one that still fails, reporting what
//     remains so that running the remainder later is safe.
//   - Adapters: FloatingIP (vip_linux.go: netlink address plus gratuitous ARP
//     or unsolicited neighbour advertisements built by packets.go), Service
//     (hooks.go: the dataset's start/stop/check shell commands), HealthCounter
//     (health.go), Pinger and ProbeTCP (probe.go: witness reachability, "is
//     the peer's host up", "does the service still answer on the VIP").
//
// Wiring, in the agent's event loop (one goroutine owns the detectors and
// the State):
//
//   - each received transport.Heartbeat: peer.Observe(hb, clock.Now()), then
//     Step(PeerHeard{Role, Epoch, PeerFacts(hb, ourNewestGUIDs)});
//   - a timer armed at peer.NextChange (and witness.NextChange): on a change
//     to Suspect, Step(PeerSuspect{}); while Dead, every probe period,
//     Step(PeerDead{Probes.Gather(ctx)}); on a witness verdict change,
//     Step(WitnessVerdict{v.Liveness}) (RunWitness feeds witness replies);
//   - RunHealthChecks per dataset while serving; a Tripped report sends
//     HealthFailed; operator commands and the peer's handoff offer map to
//     their events one to one;
//   - every Decision: log its Note, then Executor.Run(Effects); a Report
//     with Remaining is retried later with Run(Remaining) (HandoffAborted
//     when a handoff's effects fail).
package failover
