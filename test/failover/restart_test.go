package failover

import (
	"slices"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/failpair"
)

// TestRestartedMasterCutOff: A's host dies and B takes over at the next
// epoch. A's agent restarts while its cable is still out (no witness): it
// cannot reach B, confirms B dead and serves again, at its own epoch, not
// at B's. When the cable is back, A is below B, demotes, and only B holds
// the floating address.
func TestRestartedMasterCutOff(t *testing.T) {
	p := newPair(t, false)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "data.txt", "replicated before the failure\n")
	waitFile(t, p.Slave, "data.txt", "replicated before the failure\n", syncTimeout)
	if err := failpair.KillHost(p.Master); err != nil {
		t.Fatal(err)
	}
	b := waitState(t, p.Slave, config.RoleMaster, e0+1, serveTimeout)

	mark := p.Master.Log.Len()
	if err := p.Master.Start(); err != nil { // the cable is still out
		t.Fatal(err)
	}
	d := waitDecision(t, p.Master, mark, "confirmed dead", 60*time.Second)
	t.Logf("restarted A, cut off: %s -> %s", d.Str("note"), d.Str("state"))
	if a := state(t, p.Master); a.Epoch >= b.Epoch {
		t.Fatalf("restarted A cut off from B is %s at epoch %d; B took over at %d: A must stay below", a.Role, a.Epoch, b.Epoch)
	}
	if err := p.Master.Host.LinkUp(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.Master, config.RoleSlave, b.Epoch, serveTimeout)
	if st := state(t, p.Slave); st.Role != config.RoleMaster || st.Epoch != b.Epoch {
		t.Fatalf("B is %s at epoch %d after A returned; want master at %d", st.Role, st.Epoch, b.Epoch)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := p.Holders()
		if err == nil && slices.Equal(h, []string{p.Slave.Name}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("floating address held by %v (err %v), want only %s", h, err, p.Slave.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
