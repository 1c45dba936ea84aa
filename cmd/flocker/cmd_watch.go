package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/snapshot"
)

// watchLine is one change as `flocker watch --json` prints it.
type watchLine struct {
	Time       string `json:"time"`
	Dataset    string `json:"dataset"`
	Tier       string `json:"tier"`
	Hook       string `json:"hook"`
	Mountpoint string `json:"mountpoint"`
}

// watchTimeFormat is RFC 3339 with milliseconds.
const watchTimeFormat = "2006-01-02T15:04:05.000Z07:00"

func init() {
	register(command{
		name:    "watch",
		summary: "print one line per coalesced change of a dataset (a diagnostic of the change notifiers)",
		usage:   "[--mode auto|" + strings.Join(agent.Tiers, "|") + "] [--json] MOUNTPOINT|DATASET",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			mode := fs.String("mode", agent.ModeAuto, "notifier tier: auto picks the best that works; a tier name forces it")
			asJSON := fs.Bool("json", false, "print one JSON object per change: time, dataset, tier, hook, mountpoint")
			timer := fs.Duration("timer", agent.DefaultTimerInterval, "interval of the timer tier when it is the one watching")
			safety := fs.Duration("safety-net", agent.DefaultSafetyNet, "interval of the safety-net timer beside an event tier")
			return func(ctx context.Context, e *env, args []string) int {
				if len(args) != 1 {
					return fail(e, "watch", fmt.Errorf("%w: want one MOUNTPOINT or DATASET, got %d arguments", errUsage, len(args)))
				}
				if *timer <= 0 || *safety <= 0 {
					return fail(e, "watch", fmt.Errorf("%w: --timer and --safety-net must be positive", errUsage))
				}
				return watch(ctx, e, args[0], agent.WatcherOptions{Mode: *mode, TimerInterval: *timer, SafetyNet: *safety, Log: e.log}, *asJSON)
			}
		},
	})
}

func watch(ctx context.Context, e *env, arg string, opts agent.WatcherOptions, asJSON bool) int {
	if opts.Mode != agent.ModeAuto && !slices.Contains(agent.Tiers, opts.Mode) {
		return fail(e, "watch", fmt.Errorf("%w: --mode %q: want auto or one of %s", errUsage, opts.Mode, strings.Join(agent.Tiers, ", ")))
	}
	var (
		tg  agent.Target
		m   agent.Mount
		z   *snapshot.ZFS
		err error
	)
	cli := snapshot.NewCLI("", "", e.log)
	zfs := func() (*snapshot.ZFS, error) {
		if z == nil {
			var err error
			if z, err = snapshot.New(ctx, cli, e.log); err != nil {
				return nil, fmt.Errorf("asking ZFS: %w", err)
			}
		}
		return z, nil
	}
	if agent.IsPath(arg) {
		tg, m, err = agent.ResolveMountpoint(arg)
	} else if _, err = zfs(); err == nil {
		tg, m, err = agent.ResolveDataset(ctx, z, arg)
	} else {
		err = fmt.Errorf("dataset %s: %w", arg, err)
	}
	var bad *agent.BadTargetError
	if errors.As(err, &bad) {
		return fail(e, "watch", fmt.Errorf("%w: %w", errUsage, err))
	}
	if err != nil {
		return fail(e, "watch", err)
	}
	if m.IsZFS() {
		// The timers skip a dataset whose `written` says nothing changed,
		// where the dialect has the property.
		if _, err := zfs(); err != nil {
			return fail(e, "watch", err)
		}
		opts.Written = agent.WrittenFromZFS(z, z.Dialect())
		opts.Block = agent.ZFSBlockQueries{CLI: cli, ZFS: z}
	}

	w, err := agent.NewWatcher(opts)
	if err != nil {
		return fail(e, "watch", err)
	}
	defer w.Close()
	st, err := w.Watch(ctx, tg)
	if err != nil {
		return fail(e, "watch", err)
	}
	// The watcher has logged why each better tier was refused.
	e.log.Info("flocker watch: watching", "dataset", tg.Name, "mountpoint", tg.Mountpoint, "tier", st.Tier, "safety_net", st.SafetyNet)

	enc := json.NewEncoder(e.stdout)
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case c, ok := <-w.Changes():
			if !ok {
				return fail(e, "watch", errors.New("the notifier stopped"))
			}
			l := watchLine{Time: c.Time.Format(watchTimeFormat), Dataset: c.Dataset, Tier: c.Tier, Hook: c.Hook, Mountpoint: tg.Mountpoint}
			if asJSON {
				err = enc.Encode(l)
			} else {
				_, err = fmt.Fprintf(e.stdout, "%s %s %s %s\n", l.Time, l.Dataset, l.Tier, l.Hook)
			}
			if err != nil {
				return fail(e, "watch", fmt.Errorf("writing: %w", err))
			}
		}
	}
}
