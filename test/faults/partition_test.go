package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/chaos"
	"github.com/flockerha/flocker/internal/failpair"
)

// partitionFor is the partition length.
const partitionFor = 30 * time.Second

// TestPartition cuts the pair apart for 30 s in four ways, without and
// with a witness, while a writer makes acknowledged writes on whichever
// host serves (both, during a split brain):
//
//   - cable-out: the master's cable is pulled (it reaches nobody; with a
//     witness it fences, without one it serves on, unaware);
//   - drop-both: nftables on the master drops everything to and from the
//     slave; both still reach the witness and C;
//   - drop-out: only what the master sends to the slave is dropped;
//   - drop-in: only what the slave sends to the master is dropped.
//
// Both one-way cuts matter and differ: heartbeats are QUIC datagrams, so a
// one-way cut kills the connection both ways within the idle timeout, and
// the slave's probes (ICMP echo, TCP to the floating address) need a round
// trip, so in either direction the slave soon finds the master dead and,
// reaching the witness, promotes. What differs is who keeps hearing whom
// in the first second: with drop-out the master still receives the
// slave's packets, with drop-in the slave still receives the master's.
//
// After the heal: exactly one master holding the address and serving C,
// an identical replica, and every acknowledged write in the winner or in
// a stash. The cases run one after the other on one pair per witness
// setting, each starting from where the last one settled.
func TestPartition(t *testing.T) {
	for _, witness := range []bool{false, true} {
		name := "no-witness"
		if witness {
			name = "witness"
		}
		t.Run(name, func(t *testing.T) {
			p := newFailPair(t, witness)
			s := startServing(t, p)
			for _, cut := range chaos.Cuts {
				if !t.Run(cut.String(), func(t *testing.T) { s = partition(t, p, s, cut, name) }) {
					return // the pair's state is unknown: the next case would prove nothing
				}
			}
		})
	}
}

// partition runs one case from the settled pair s and returns the pair
// settled again.
func partition(t *testing.T, p *failpair.Pair, s chaos.Settled, cut chaos.Cut, setting string) chaos.Settled {
	w := chaos.NewWriter(p, fmt.Sprintf("%s-%s", setting, cut), 4096, 200*time.Millisecond)
	w.Start()
	defer w.Stop()
	time.Sleep(2 * time.Second) // some writes replicated before the cut

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	heal, err := chaos.Apply(ctx, cut, s.Master.Host, s.Slave.Host)
	if err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			if err := heal(); err != nil {
				t.Error(err)
			}
		}
	}()
	t.Logf("%s on %s (master at epoch %d), %s slave", cut, s.Master.Name, s.Epoch, s.Slave.Name)
	// Who holds the address, sampled through the partition.
	served := map[string]int{}
	samples := 0
	for end := time.Now().Add(partitionFor); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		h, err := p.Holders()
		if err != nil {
			t.Fatal(err)
		}
		served[strings.Join(h, "+")]++
		samples++
	}
	roles, err := chaos.Roles(p)
	if err != nil {
		t.Fatal(err)
	}
	var during []string
	for n, st := range roles {
		during = append(during, fmt.Sprintf("%s %s/%d", n.Name, st.Role, st.Epoch))
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	healed = true
	both := served[s.Master.Name+"+"+s.Slave.Name] + served[s.Slave.Name+"+"+s.Master.Name]
	if setting == "witness" && cut == chaos.CableOut && both > 0 {
		// The cut-off master loses peer and witness and must fence before
		// the slave may promote.
		t.Errorf("both hosts held the floating address in %d of %d samples", both, samples)
	}
	t.Logf("healed after %v; at the heal: %s; address holders over %d samples: %v; acknowledged writes per host: %v",
		partitionFor, strings.Join(during, ", "), samples, served, w.Acked())
	// Writes go on for a moment across the heal, where a demoting master
	// races its clients.
	time.Sleep(3 * time.Second)
	w.Stop()

	after := waitSettled(t, p)
	acc, err := chaos.Account(p, after, w.Ledgers()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("settled: %s master at epoch %d; %s", after.Master.Name, after.Epoch, acc)
	if !acc.OK() {
		t.Fatalf("acknowledged writes lost: %s", acc)
	}
	if acc.Acked == 0 {
		t.Fatal("no write was acknowledged: the case proved nothing")
	}
	if after.Epoch < s.Epoch {
		t.Fatalf("epoch went back from %d to %d", s.Epoch, after.Epoch)
	}
	if st := roles[after.Slave]; st.Role == config.RoleMaster && after.Epoch <= st.Epoch && after.Master != s.Master {
		t.Errorf("%s won at epoch %d over %s's epoch %d", after.Master.Name, after.Epoch, after.Slave.Name, st.Epoch)
	}
	return after
}
