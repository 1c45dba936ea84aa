// Package e2e runs flocker agents as real processes on the host tier: hosts
// A and B in network namespaces, each agent started from its own INI file
// (written by `flocker init` and `flocker trust`), each node on its own
// zfs-fuse pool.
package e2e

import (
	"testing"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/agentpair/pairtest"
)

// bin is the flocker binary built once for the package.
var bin string

func TestMain(m *testing.M) { pairtest.Main(m, &bin) }

// timerInterval is the timer tier's period in these tests (when it is the
// tier forced): 200 ms keeps the tests quick.
const timerInterval = "200ms"

// newPair builds the pair for a test, torn down with it (pairtest.New).
func newPair(t *testing.T, opts agentpair.Options) *agentpair.Pair {
	t.Helper()
	return pairtest.New(t, bin, opts, map[string]string{"interval": timerInterval})
}

var (
	start      = pairtest.Start
	waitRecord = pairtest.WaitRecord
	msg        = pairtest.Msg
	waitSame   = pairtest.WaitSame
)
