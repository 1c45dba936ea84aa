package failover

import (
	"log/slog"
	"testing"

	"github.com/flockerha/flocker/internal/rig/rigtest"
)

func testLogger(t testing.TB) *slog.Logger { return rigtest.Logger(t) }
