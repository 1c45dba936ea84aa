package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/atomicfile"
	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport/pki"
)

func init() {
	register(command{
		name:    "agent",
		summary: "run the flocker daemon: snapshot on change and replicate every dataset",
		usage:   "[--config PATH]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			path := fs.String("config", config.DefaultPath, "config file")
			zfsBin := fs.String("zfs", "", "zfs binary (default: zfs in PATH)")
			zpoolBin := fs.String("zpool", "", "zpool binary (default: zpool in PATH)")
			zfsTimeout := fs.Duration("zfs-timeout", agent.DefaultZFSTimeout, "kill a zfs command (other than send and receive) after this long, log it and retry")
			return func(ctx context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return fail(e, "agent", fmt.Errorf("%w: unexpected argument %q", errUsage, args[0]))
				}
				if *zfsTimeout <= 0 {
					return fail(e, "agent", fmt.Errorf("%w: --zfs-timeout %v: must be positive", errUsage, *zfsTimeout))
				}
				return runAgent(ctx, e, *path, *zfsBin, *zpoolBin, *zfsTimeout)
			}
		},
	})
}

// runAgent starts the agent and runs it until ctx ends (SIGTERM or SIGINT
// in main), then stops it in order. It refuses to start with the problems
// `flocker check` would list.
func runAgent(ctx context.Context, e *env, path, zfsBin, zpoolBin string, zfsTimeout time.Duration) int {
	c, err := config.Load(path)
	var probs config.Problems
	if err != nil && !errors.As(err, &probs) {
		return fail(e, "agent", err)
	}
	if len(probs) == 0 {
		_, fileProbs := checkCredentials(c)
		probs = fileProbs
	}
	if len(probs) > 0 {
		probs.Sort()
		for _, p := range probs {
			fmt.Fprintln(e.stderr, p)
		}
		return fail(e, "agent", fmt.Errorf("refusing to start: %d problem(s) in %s (flocker check lists them)", len(probs), path))
	}
	// A writer killed mid-rewrite of [state] leaves its temporary behind;
	// an hour is far beyond any rewrite still running.
	if removed, err := atomicfile.RemoveStale(path, time.Now().Add(-time.Hour)); err != nil {
		e.log.Warn("stale config temporaries not removed", "config", path, "err", err)
	} else if len(removed) > 0 {
		e.log.Info("removed stale config temporaries", "config", path, "files", removed)
	}
	cert, fingerprint, err := pki.LoadKeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return fail(e, "agent", err)
	}
	cli := snapshot.NewCLI(zfsBin, zpoolBin, e.log)
	dialect, err := cli.Detect(ctx)
	if err != nil {
		return fail(e, "agent", err)
	}
	z := snapshot.NewWithDialect(cli, dialect, e.log)
	notifier, err := selectNotifier(c, cli, z, dialect, e.log)
	if err != nil {
		return fail(e, "agent", err)
	}
	var a *agent.Agent
	metrics := newAgentMetrics(func() agent.Status { return a.Status() }, notifier)
	a, err = agent.New(agent.Options{
		Config: c, Cert: cert, ZFS: z, Dialect: dialect, Notifier: notifier, Logger: e.log,
		Observer:   metrics,
		ZFSTimeout: zfsTimeout,
		Children:   agent.CLIChildren{CLI: cli},
	})
	if err != nil {
		if notifier != nil {
			notifier.Close()
		}
		return fail(e, "agent", err)
	}
	procs, restoreProcs := limitProcs()
	defer restoreProcs()
	e.log.Info("starting agent", "config", path, "certificate", fingerprint, "zfs_dialect", dialect.Name,
		"zfs_version", dialect.Version, "features", dialect.Features, "gomaxprocs", procs)
	if err := a.Start(ctx); err != nil {
		a.Close()
		return fail(e, "agent", err)
	}
	srv, err := startAPI(c, a, metrics.Handler(), e.log)
	if err != nil {
		a.Close()
		return fail(e, "agent", err)
	}
	<-ctx.Done()
	e.log.Info("stopping agent", "reason", context.Cause(ctx))
	// The API first: no operator request starts while the agent stops.
	srvErr := srv.Close()
	if err := errors.Join(a.Close(), srvErr); err != nil {
		return fail(e, "agent", err)
	}
	return exitOK
}

// selectNotifier builds the change notifier: a Watcher that picks, per
// dataset, the best tier that loads and attaches ([notify] mode = auto) or
// runs the one tier forced, with the safety-net timer beside an event tier.
// A slave gets one too (failover may promote it; tiers load only when a
// dataset is first watched). A forced tier this kernel refuses fails the
// master's start, naming why; each dataset's status names its tier and why
// better ones were refused.
func selectNotifier(c *config.Config, cli *snapshot.CLI, z *snapshot.ZFS, d snapshot.Dialect, log *slog.Logger) (agent.Notifier, error) {
	w, err := agent.NewWatcher(agent.WatcherOptions{
		Mode:          c.Notify.Mode,
		TimerInterval: c.Notify.Interval,
		Written:       agent.WrittenFromZFS(z, d),
		Block:         agent.ZFSBlockQueries{CLI: cli, ZFS: z},
		// The master flushes right before each snapshot: one syncfs per
		// snapshot, not one per event while writes keep coming.
		ConsumerFlushes: true,
		Log:             log,
	})
	if err != nil {
		return nil, err // not a nil *Watcher inside a non-nil Notifier
	}
	return w, nil
}
