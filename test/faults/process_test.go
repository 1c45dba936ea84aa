package faults

import (
	"path/filepath"
	"testing"

	"github.com/flockerha/flocker/internal/ackcheck"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/treesum"
)

// TestKilledMidIncremental: with a replica in place, an incremental
// transfer is cut by SIGKILL of the master agent (mid-send), of the slave
// agent (mid-receive), or of both. The replica stays readable at its last
// good snapshot; once the killed agents are restarted replication resumes
// and every acknowledged write is on the replica. (test/e2e covers the
// slave killed during the first, full sync.)
func TestKilledMidIncremental(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(p *agentpair.Pair) []*agentpair.Node
	}{
		{"master", func(p *agentpair.Pair) []*agentpair.Node { return []*agentpair.Node{p.Master} }},
		{"slave", func(p *agentpair.Pair) []*agentpair.Node { return []*agentpair.Node{p.Slave} }},
		{"both", func(p *agentpair.Pair) []*agentpair.Node { return []*agentpair.Node{p.Master, p.Slave} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, agentpair.Options{Settings: map[string]map[string]string{
				// 16 MiB at 4 MiB/s: about 4 s in flight, time to cut it.
				"replication": {"bandwidth": "4MiB"},
			}})
			l := ackcheck.New(p.Master.Mountpoint, "w")
			writeN(t, l, 20, 4096)
			start(t, p.Slave, p.Master)
			waitSame(t, p, firstSyncTimeout)
			// The master's content (equal to the replica's, which zfs-fuse may
			// have unmounted for a moment to remount it).
			good, err := treesum.Sum(p.Master.Mountpoint)
			if err != nil {
				t.Fatal(err)
			}

			// The master is stopped while 16 MiB are written, so that they
			// go in one incremental, in flight for seconds.
			if err := p.Master.Stop(); err != nil {
				t.Fatal(err)
			}
			writeRandom(t, filepath.Join(p.Master.Mountpoint, "big"), 16, 1<<20, 7)
			writeN(t, l, 20, 4096)
			mark := p.Master.Log.Len()
			start(t, p.Master)
			inFlight := waitRecord(t, p.Master, mark, syncTimeout, "an incremental in flight", func(r agentpair.Record) bool {
				return r.Msg() == "transfer in flight" && r.Str("kind") == "incremental" && r.Num("bytes") > 0
			})
			killed := tc.kill(p)
			for _, n := range killed {
				if err := n.Kill(); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("killed %s with %.0f bytes of the incremental sent", tc.name, inFlight.Num("bytes"))
			for _, n := range killed {
				waitNoProcesses(t, n)
			}
			// The cut receive is discarded (zfs-fuse cannot resume): the
			// replica is what the last good transfer left.
			waitReplicaSum(t, p, good, syncTimeout)

			writeN(t, l, 20, 4096)
			for _, n := range killed {
				if err := n.Start(); err != nil {
					t.Fatal(err)
				}
			}
			waitSame(t, p, firstSyncTimeout)
			for _, n := range p.Nodes() {
				if !n.Running() {
					t.Errorf("%s: agent not running", n.Name)
				}
			}
			account(t, l, p)
		})
	}
}
