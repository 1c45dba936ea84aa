package agent

import (
	"log/slog"
	"testing"
	"time"

	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport"
)

// TestAnswerSyncs: a handoff's sync is answered once the peer holds the
// snapshot taken for it or a later one (a snapshot that waited for a
// transfer may be skipped for a newer one); a sync with no snapshot yet,
// or whose snapshot the peer does not hold yet, waits.
func TestAnswerSyncs(t *testing.T) {
	local := []snapshot.Snapshot{
		{Name: "p/d@flocker-0-1", GUID: 11, CreateTXG: 10},
		{Name: "p/d@flocker-0-2", GUID: 12, CreateTXG: 20},
		{Name: "p/d@flocker-0-3", GUID: 13, CreateTXG: 30},
	}
	// The peer's TXGs are its own pool's: only GUIDs match ours.
	peerHas := func(guids ...uint64) []snapshot.Snapshot {
		var out []snapshot.Snapshot
		for i, g := range guids {
			out = append(out, snapshot.Snapshot{Name: "q/d@x", GUID: g, CreateTXG: uint64(100 + i)})
		}
		return out
	}
	tests := []struct {
		name string
		peer []snapshot.Snapshot
		txgs []uint64 // per waiting sync; 0: no snapshot taken for it yet
		want []bool   // answered
	}{
		{"peer holds the sync's snapshot", peerHas(11, 12), []uint64{20}, []bool{true}},
		{"peer holds a later one only", peerHas(11, 13), []uint64{20, 30}, []bool{true, true}},
		{"peer is behind", peerHas(11), []uint64{20}, []bool{false}},
		{"no snapshot taken yet", peerHas(11, 12, 13), []uint64{0}, []bool{false}},
		{"peer knows nothing", nil, []uint64{10}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &master{log: slog.New(slog.DiscardHandler), local: local, peer: tt.peer}
			replies := make([]chan error, len(tt.txgs))
			for i, txg := range tt.txgs {
				replies[i] = make(chan error, 1)
				m.syncs = append(m.syncs, evSync{at: time.Now(), txg: txg, reply: replies[i]})
			}
			m.answerSyncs(time.Now())
			waiting := 0
			for i, ch := range replies {
				select {
				case err := <-ch:
					if !tt.want[i] || err != nil {
						t.Errorf("sync %d (txg %d) answered %v, want answered=%v", i, tt.txgs[i], err, tt.want[i])
					}
				default:
					waiting++
					if tt.want[i] {
						t.Errorf("sync %d (txg %d) still waits; the peer holds %v", i, tt.txgs[i], tt.peer)
					}
				}
			}
			if len(m.syncs) != waiting {
				t.Errorf("%d syncs kept, %d wait", len(m.syncs), waiting)
			}
		})
	}
}

// TestAckLostEarlier: a refusal because the peer already holds the target
// (its list, sent first, shows it) completes the transfer; any other
// refusal fails it and schedules a retry.
func TestAckLostEarlier(t *testing.T) {
	target := snapshot.Snapshot{Name: "p/d@flocker-0-2", GUID: 12, CreateTXG: 20}
	local := []snapshot.Snapshot{{Name: "p/d@flocker-0-1", GUID: 11, CreateTXG: 10}, target}
	for _, tt := range []struct {
		name     string
		peer     []snapshot.Snapshot
		code     string
		complete bool
	}{
		{"peer holds the target", []snapshot.Snapshot{{GUID: 11}, {GUID: 12}}, codeRefused, true},
		{"peer does not hold it", []snapshot.Snapshot{{GUID: 11}}, codeRefused, false},
		{"another error with the target held", []snapshot.Snapshot{{GUID: 11}, {GUID: 12}}, codeReceiveFailed, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &master{log: slog.New(slog.DiscardHandler), local: local, peer: tt.peer, covers: map[uint64]time.Time{},
				cfg: datasetConfig{observer: nopObserver{}}}
			x := &outgoing{id: 7, kind: "incremental", target: target}
			m.xfer = x
			m.ack(evAck{m: &transport.Ack{ID: 7, Error: "the replica already holds the target", Code: tt.code}}, time.Now())
			if done := m.xfer == nil && !x.failed && m.st.Snapshots.Transfers == 1; done != tt.complete {
				t.Fatalf("completed=%v (xfer %v, failed %v, transfers %d), want %v", done, m.xfer, x.failed, m.st.Snapshots.Transfers, tt.complete)
			}
			if !tt.complete && (!x.failed || m.retryAt.IsZero()) {
				t.Fatalf("failed=%v retryAt=%v: want a failure with a retry", x.failed, m.retryAt)
			}
		})
	}
}
