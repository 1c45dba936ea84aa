package agent

import (
	"context"
	"time"
)

// Tier names, best first. `auto` picks the first that loads and attaches for a
// target; the timer always works and also runs beside every eBPF tier as a slow
// safety net.
const (
	TierFentry     = "fentry"
	TierKprobe     = "kprobe"
	TierTracepoint = "tracepoint"
	TierBlock      = "block"
	TierFanotify   = "fanotify"
	TierTimer      = "timer"
)

// Tiers lists every tier in order of preference.
var Tiers = []string{TierFentry, TierKprobe, TierTracepoint, TierBlock, TierFanotify, TierTimer}

// Target is one filesystem to watch: a mounted ZFS dataset (or, in tests, any
// mounted filesystem).
type Target struct {
	Name       string // dataset name, the key for Remove and in every Change
	Mountpoint string
}

// Change reports that a target went from clean to dirty: one per dirty period,
// however many writes it holds. By the time a Change is delivered the notifier
// has re-armed (cleared its flag) and flushed the filesystem (syncfs), so a
// snapshot taken now includes every write that caused it. A notifier built to
// leave the flush to its consumer (EBPFNoFlush, WatcherOptions.ConsumerFlushes)
// only re-arms; the consumer runs syncfs right before its snapshot.
type Change struct {
	Time    time.Time
	Dataset string
	Tier    string
	Hook    string // the hook that saw the first change, e.g. "sys_exit/pwrite64"
}

// Notifier tells the agent when a watched filesystem changes. One notifier per
// tier serves all of that tier's targets.
type Notifier interface {
	Tier() string
	// Add starts watching t. An error means this tier cannot watch this
	// target; the error is the reason shown in status.
	Add(ctx context.Context, t Target) error
	// Remove stops watching the named target.
	Remove(name string) error
	// Changes delivers coalesced changes; it is closed by Close.
	Changes() <-chan Change
	// Close stops the notifier and waits for its goroutines.
	Close() error
}

// Refusal is why one tier could not watch one target.
type Refusal struct {
	Tier   string `json:"tier"`
	Reason string `json:"reason"`
}

// TargetStatus is what the watcher knows about one target.
type TargetStatus struct {
	Target Target `json:"target"`
	// Tier watching it now; empty while its filesystem is not mounted.
	Tier string `json:"tier"`
	// Refused lists, best first, each better tier and why it was refused.
	Refused []Refusal `json:"refused"`
	// SafetyNet is the interval of the timer beside Tier (0: none).
	SafetyNet time.Duration `json:"safety_net"`
	Dev       uint64        `json:"dev"`
}
