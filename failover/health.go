package failover

import (
	"context"
	"time"
)

// Health-check defaults.
const (
	// DefaultHealthEvery: one check a second costs one process per second
	// and notices a failed service within a second.
	DefaultHealthEvery = time.Second
	// DefaultHealthFailures: three failures in a row (about three seconds)
	// before the master hands over: one slow or flaky check must not move
	// a service, because a handoff stops it for a moment on purpose.
	DefaultHealthFailures = 3
)

// HealthCounter counts consecutive failed checks. It is pure: the caller
// feeds it each check's outcome.
type HealthCounter struct {
	Threshold int // failures in a row that trip it; 0 means DefaultHealthFailures
	failures  int
}

// Observe records one check and reports the failures in a row so far and
// whether this check tripped the threshold. It trips once per run of
// failures (when the count reaches the threshold, not after), so the agent
// sends one HealthFailed per outage; a passing check starts counting anew.
func (h *HealthCounter) Observe(ok bool) (failures int, tripped bool) {
	if ok {
		h.failures = 0
		return 0, false
	}
	h.failures++
	threshold := h.Threshold
	if threshold <= 0 {
		threshold = DefaultHealthFailures
	}
	return h.failures, h.failures == threshold
}

// HealthReport is one check's outcome as RunHealthChecks reports it.
type HealthReport struct {
	Dataset  string
	Err      error // nil: healthy
	Failures int   // in a row, this one included
	Tripped  bool  // this check reached the threshold: send HealthFailed
}

// RunHealthChecks runs svc's check every interval (0: DefaultHealthEvery)
// until ctx ends, reporting each outcome to report. It blocks: the caller
// runs it in a goroutine it owns and stops it by cancelling ctx.
func RunHealthChecks(ctx context.Context, svc *Service, every time.Duration, counter *HealthCounter, report func(HealthReport)) {
	every = orDefault(every, DefaultHealthEvery)
	for {
		err := svc.Check(ctx)
		if ctx.Err() != nil {
			return
		}
		n, tripped := counter.Observe(err == nil)
		report(HealthReport{Dataset: svc.Dataset, Err: err, Failures: n, Tripped: tripped})
		if sleep(ctx, every) != nil {
			return
		}
	}
}
