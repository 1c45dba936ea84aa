package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flockerha/flocker/agent/config"
)

// The executor's consumer-side interfaces: what it needs from each adapter,
// nothing more. Every method must be idempotent (doing it twice is doing it
// once) and must leave things either done or as they were, so the executor
// may retry it and a later Run may repeat it.

// StateStore persists role and epoch (config.WriteState through INIState).
type StateStore interface {
	WriteState(role config.Role, epoch uint64) error
}

// Addresses holds the floating addresses, one per dataset (VIPSet).
type Addresses interface {
	AddVIP(ctx context.Context, dataset string) error
	DropVIP(ctx context.Context, dataset string) error
}

// Services runs the datasets' services (ServiceSet).
type Services interface {
	StartService(ctx context.Context, dataset string) error
	StopService(ctx context.Context, dataset string) error
}

// Replicas switches a dataset between replica and primary (the ZFS side).
type Replicas interface {
	AbortReceive(ctx context.Context, dataset string) error
	SetWritable(ctx context.Context, dataset string) error
	SetReadonly(ctx context.Context, dataset string) error
}

// Handover carries a planned handoff to the peer (replication and the
// control stream).
type Handover interface {
	SyncPeer(ctx context.Context, dataset string) error
	OfferHandoff(ctx context.Context, epoch uint64) error
}

// Stasher keeps a divergent dataset as a stash before it is rolled back.
type Stasher interface {
	Stash(ctx context.Context, dataset string) error
}

// INIState writes [state] of the config file at Path.
type INIState struct{ Path string }

// WriteState implements StateStore with config.WriteState.
func (s INIState) WriteState(role config.Role, epoch uint64) error {
	return config.WriteState(s.Path, config.State{Role: role, Epoch: epoch})
}

// Executor defaults.
const (
	// DefaultAttempts: a transient failure (a busy zfs, a netlink socket
	// buffer full, a start hook racing its own previous stop) usually
	// clears on the second try; three tries bound a real failure's delay to
	// about DefaultBackoff x 3 before it is reported and the agent decides.
	DefaultAttempts = 3
	// DefaultBackoff is the wait before the second try, doubled before the
	// third: 100 ms + 200 ms stays well inside the failover budget.
	DefaultBackoff = 100 * time.Millisecond
)

// Executor carries out a Decision's effects in order. An adapter left nil
// makes the effects that need it fail (with an error saying so) rather
// than be skipped.
type Executor struct {
	State     StateStore
	Addresses Addresses
	Services  Services
	Replicas  Replicas
	Handover  Handover
	Stasher   Stasher
	Log       *slog.Logger
	Attempts  int           // tries per effect; 0 means DefaultAttempts
	Backoff   time.Duration // wait before the second try, doubled after; 0 means DefaultBackoff, <0 none
}

// Report says how far a Run got. Remaining starts with the effect that
// failed; running Remaining later is safe because every effect is
// idempotent and everything before it is done.
type Report struct {
	Done      []Effect
	Remaining []Effect
	Err       error // nil when every effect was carried out
}

func (r Report) String() string {
	s := "done: " + Effects(r.Done)
	if r.Err != nil {
		s += "\nfailed: " + r.Err.Error() + "\nremaining: " + Effects(r.Remaining)
	}
	return s
}

// ErrPersistNotFirst: a list that persists role and epoch after another
// effect would let a crash leave the system ahead of the file.
var ErrPersistNotFirst = errors.New("persist must be the first effect")

// Run carries out effects in order, retrying each one, and stops at the
// first that still fails.
func (x *Executor) Run(ctx context.Context, effects []Effect) Report {
	for i, e := range effects {
		if e.Kind == EffectPersist && i > 0 {
			return Report{Remaining: effects, Err: fmt.Errorf("refusing %s: %w (found at position %d)", Effects(effects), ErrPersistNotFirst, i)}
		}
	}
	log := x.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	attempts := x.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	backoff := x.Backoff
	if backoff == 0 {
		backoff = DefaultBackoff
	}
	var rep Report
	for i, e := range effects {
		var err error
		wait := backoff
		for try := 1; try <= attempts; try++ {
			start := time.Now()
			err = x.apply(ctx, e)
			if err == nil {
				log.Info("effect done", "effect", e.String(), "try", try, "took", time.Since(start).Round(time.Microsecond))
				break
			}
			log.Warn("effect failed", "effect", e.String(), "try", try, "of", attempts, "err", err)
			if try == attempts || ctx.Err() != nil {
				break
			}
			if wait > 0 {
				if serr := sleep(ctx, wait); serr != nil {
					break
				}
				wait *= 2
			}
		}
		if err != nil {
			rep.Remaining = effects[i:]
			rep.Err = fmt.Errorf("%s: %w", e, err)
			log.Error("effects stopped", "failed", e.String(), "remaining", Effects(rep.Remaining), "err", err)
			return rep
		}
		rep.Done = append(rep.Done, e)
	}
	return rep
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var errNoAdapter = errors.New("no adapter configured")

func (x *Executor) apply(ctx context.Context, e Effect) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch e.Kind {
	case EffectPersist:
		if x.State == nil {
			return fmt.Errorf("state store: %w", errNoAdapter)
		}
		return x.State.WriteState(e.Role, e.Epoch)
	case EffectAddVIP, EffectDropVIP:
		if x.Addresses == nil {
			return fmt.Errorf("addresses: %w", errNoAdapter)
		}
		if e.Kind == EffectAddVIP {
			return x.Addresses.AddVIP(ctx, e.Dataset)
		}
		return x.Addresses.DropVIP(ctx, e.Dataset)
	case EffectStart, EffectStop:
		if x.Services == nil {
			return fmt.Errorf("services: %w", errNoAdapter)
		}
		if e.Kind == EffectStart {
			return x.Services.StartService(ctx, e.Dataset)
		}
		return x.Services.StopService(ctx, e.Dataset)
	case EffectAbortReceive, EffectWritable, EffectReadonly:
		if x.Replicas == nil {
			return fmt.Errorf("replicas: %w", errNoAdapter)
		}
		switch e.Kind {
		case EffectAbortReceive:
			return x.Replicas.AbortReceive(ctx, e.Dataset)
		case EffectWritable:
			return x.Replicas.SetWritable(ctx, e.Dataset)
		}
		return x.Replicas.SetReadonly(ctx, e.Dataset)
	case EffectSyncPeer, EffectOfferHandoff:
		if x.Handover == nil {
			return fmt.Errorf("handover: %w", errNoAdapter)
		}
		if e.Kind == EffectSyncPeer {
			return x.Handover.SyncPeer(ctx, e.Dataset)
		}
		return x.Handover.OfferHandoff(ctx, e.Epoch)
	case EffectStash:
		if x.Stasher == nil {
			return fmt.Errorf("stasher: %w", errNoAdapter)
		}
		return x.Stasher.Stash(ctx, e.Dataset)
	}
	return fmt.Errorf("unknown effect kind %q", e.Kind)
}
