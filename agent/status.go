package agent

import (
	"slices"
	"sync"
	"time"
)

// Status is the agent's state as an operator needs it, a copy taken at one
// moment (issue 6's /status and metrics serve it). Times are zero when
// unknown or not applicable.
type Status struct {
	Node     string          `json:"node"`
	Role     string          `json:"role"`
	Epoch    uint64          `json:"epoch"`
	Dialect  string          `json:"zfs_dialect"`
	Peer     PeerStatus      `json:"peer"`
	Datasets []DatasetStatus `json:"datasets"`
	// Failover is the role machine's view: mode, the peer's and the
	// witness's liveness, why the last decision was taken.
	Failover *FailoverStatus `json:"failover,omitempty"`
}

// FailoverStatus is what the failure detector and the role machine hold.
type FailoverStatus struct {
	// Mode refines the role: standby or peer-agent-lost (slave); serving,
	// fenced or handing-off (master).
	Mode string `json:"mode"`
	// PeerLiveness is the detector's verdict on the peer's heartbeats:
	// unknown, alive, suspect or dead.
	PeerLiveness string `json:"peer_liveness"`
	// PeerAgentLost: the peer's agent is silent but its host or service
	// still answers; this node waits instead of taking over.
	PeerAgentLost bool   `json:"peer_agent_lost"`
	PeerRole      string `json:"peer_role,omitempty"`
	PeerEpoch     uint64 `json:"peer_epoch,omitempty"`
	// PeerHealthy: every dataset of the peer is healthy as its heartbeat
	// says (a master: serving and its check passes).
	PeerHealthy bool `json:"peer_healthy"`
	// PeerServingAt is when the peer was first heard serving at its
	// current epoch (zero while it does not).
	PeerServingAt time.Time `json:"peer_serving_at"`
	// LastHeard is when the peer's last heartbeat arrived.
	LastHeard time.Time `json:"last_heard"`
	Witness   string    `json:"witness,omitempty"` // its liveness; empty without a witness
	// Note says why the last decision was taken.
	Note   string    `json:"note,omitempty"`
	NoteAt time.Time `json:"note_at"`
	// Pending lists effects that failed and are retried.
	Pending string `json:"pending,omitempty"`
	// Stashes are divergent copies kept on this node.
	Stashes []Stash `json:"stashes,omitempty"`
}

// PeerStatus is the connection to the other node.
type PeerStatus struct {
	Name      string    `json:"name"`
	Connected bool      `json:"reachable"`
	Since     time.Time `json:"since"` // when the connection went up or down
	Role      string    `json:"role,omitempty"`
	Epoch     uint64    `json:"epoch,omitempty"`
	LastError *Problem  `json:"last_error,omitempty"` // an Error message the peer sent
	// LastHeartbeat is when the peer's last heartbeat arrived and RTT the
	// last measured round trip (heartbeat echoes; zero before the first).
	// HeartbeatAge is filled from LastHeartbeat when the status is served.
	LastHeartbeat time.Time     `json:"last_heartbeat"`
	HeartbeatAge  time.Duration `json:"heartbeat_age_ns"`
	RTT           time.Duration `json:"rtt_ns"`
}

// DatasetStatus is one protected dataset on this node.
type DatasetStatus struct {
	Name string `json:"name"` // logical name, the same on both nodes
	ZFS  string `json:"zfs"`  // this node's dataset
	Role string `json:"role"`
	// Notifier is how changes are learnt (master only).
	Notifier NotifierStatus `json:"notifier"`
	// DirtySince is the first change not yet in a snapshot (master).
	DirtySince time.Time `json:"dirty_since"`
	// NewestLocal is this node's newest snapshot.
	NewestLocal *SnapshotRef `json:"newest_local,omitempty"`
	// NewestPeer is the newest snapshot the peer holds, as it last said.
	NewestPeer *SnapshotRef `json:"newest_peer,omitempty"`
	// Lag is how long the oldest change the peer does not hold yet has
	// waited (master; 0 when the peer holds everything), measured from
	// UnreplicatedSince, the time of that change.
	Lag               time.Duration `json:"lag_ns"`
	UnreplicatedSince time.Time     `json:"unreplicated_since"`
	// LastLag is the change-to-acknowledged time of the last completed
	// transfer: from the first change it carried to the peer's Ack.
	LastLag time.Duration `json:"last_lag_ns"`
	// Transfer is the transfer in flight, if any.
	Transfer  *TransferStatus `json:"transfer,omitempty"`
	Snapshots SnapshotCounts  `json:"snapshots"`
	LastError *Problem        `json:"last_error,omitempty"`
	// Conflict explains why replication cannot proceed on its own
	// (no common snapshot, divergence): an operator's (or issue 5's) call.
	Conflict string `json:"conflict,omitempty"`
	// Stashes are this dataset's divergent copies kept here (filled by the
	// status API from the Controller).
	Stashes []Stash `json:"stashes"`
}

// NotifierStatus names the change-notification tier and why better ones
// were not used.
type NotifierStatus struct {
	Tier    string            `json:"tier"`
	Refused map[string]string `json:"refused,omitempty"` // tier -> reason
	// SafetyNet is the interval of the timer beside an event tier (0: none).
	SafetyNet time.Duration `json:"safety_net_ns,omitempty"`
}

// SnapshotRef names a snapshot.
type SnapshotRef struct {
	Name    string    `json:"name"` // short name, after '@'
	GUID    uint64    `json:"guid"`
	Created time.Time `json:"created"`
}

// TransferStatus is a transfer in flight.
type TransferStatus struct {
	ID      uint64    `json:"id"`
	Kind    string    `json:"kind"` // full, incremental, resume
	Base    string    `json:"base,omitempty"`
	Target  string    `json:"target"`
	Started time.Time `json:"started"`
	Bytes   uint64    `json:"bytes"`
	// Estimate is the expected stream size (0: unknown), and
	// EstimateSource where it came from: "send -nP" or "referenced".
	Estimate       uint64 `json:"estimate"`
	EstimateSource string `json:"estimate_source,omitempty"`
}

// SnapshotCounts counts snapshots and transfers of one dataset.
type SnapshotCounts struct {
	Local           int    `json:"local"`
	Peer            int    `json:"peer"`
	Taken           uint64 `json:"taken"`
	Pruned          uint64 `json:"pruned"`
	Transfers       uint64 `json:"transfers"`        // completed and acknowledged (master) or received (slave)
	FailedTransfers uint64 `json:"failed_transfers"` //
	BytesSent       uint64 `json:"bytes_sent"`
	BytesReceived   uint64 `json:"bytes_received"`
}

// Problem is an error with when it happened.
type Problem struct {
	Code    string    `json:"code"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// board holds the published status of one dataset. The dataset's loop
// publishes a copy after each step; Status reads it and adds the live byte
// counter of the transfer in flight.
type board struct {
	mu    sync.Mutex
	st    DatasetStatus
	bytes func() uint64 // live bytes of the transfer in flight
}

func (b *board) publish(st DatasetStatus, bytes func() uint64) {
	st = st.clone()
	b.mu.Lock()
	b.st, b.bytes = st, bytes
	b.mu.Unlock()
}

func (b *board) read(now time.Time) DatasetStatus {
	b.mu.Lock()
	st, bytes := b.st.clone(), b.bytes
	b.mu.Unlock()
	if st.Transfer != nil && bytes != nil {
		st.Transfer.Bytes = bytes()
	}
	if !st.UnreplicatedSince.IsZero() {
		st.Lag = max(0, now.Sub(st.UnreplicatedSince))
	}
	return st
}

// clone copies everything a pointer or map shares.
func (s DatasetStatus) clone() DatasetStatus {
	if s.NewestLocal != nil {
		c := *s.NewestLocal
		s.NewestLocal = &c
	}
	if s.NewestPeer != nil {
		c := *s.NewestPeer
		s.NewestPeer = &c
	}
	if s.Transfer != nil {
		c := *s.Transfer
		s.Transfer = &c
	}
	if s.LastError != nil {
		c := *s.LastError
		s.LastError = &c
	}
	s.Stashes = slices.Clone(s.Stashes)
	if s.Notifier.Refused != nil {
		m := make(map[string]string, len(s.Notifier.Refused))
		for k, v := range s.Notifier.Refused {
			m[k] = v
		}
		s.Notifier.Refused = m
	}
	return s
}

func (s Status) clone() Status {
	s.Datasets = slices.Clone(s.Datasets)
	for i := range s.Datasets {
		s.Datasets[i] = s.Datasets[i].clone()
	}
	if s.Peer.LastError != nil {
		c := *s.Peer.LastError
		s.Peer.LastError = &c
	}
	if s.Failover != nil {
		c := *s.Failover
		c.Stashes = slices.Clone(c.Stashes)
		s.Failover = &c
	}
	return s
}
