package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flockerha/flocker/bench"
)

func init() {
	register(command{
		name:    "bench",
		summary: "measure replication lag, probe overhead, throughput and scale on a two-host test rig (root)",
		usage:   "[--quick] [--out DIR] [--scenario NAME[,NAME...]] [--duration D] [--seed N] [--bin PATH] [--agent-logs DIR] [--list]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			quick := fs.Bool("quick", false, "shrink every scenario so the run takes under a minute (CI)")
			out := fs.String("out", filepath.Join("bench", "results"), "write bench.csv, bench.json and the plots into `DIR`")
			scen := fs.String("scenario", "", "run only these scenarios (comma-separated; --list shows them)")
			seed := fs.Uint64("seed", 1, "seed for every random choice")
			bin := fs.String("bin", "", "flocker binary the rig's agents run (default: this one)")
			list := fs.Bool("list", false, "list the scenarios and exit")
			agentLogs := fs.String("agent-logs", "", "run the agents at debug level and copy their JSON logs into `DIR`")
			duration := fs.Duration("duration", 0, "length of the timed scenarios (false-failovers; default: each one's own)")
			return func(ctx context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return fail(e, "bench", fmt.Errorf("%w: unexpected argument %q", errUsage, args[0]))
				}
				if *list {
					for _, s := range bench.Scenarios() {
						fmt.Fprintf(e.stdout, "%-15s %s\n", s.Name, s.Summary)
					}
					return exitOK
				}
				if *duration < 0 {
					return fail(e, "bench", fmt.Errorf("%w: --duration %v is negative", errUsage, *duration))
				}
				if *bin == "" {
					exe, err := os.Executable()
					if err != nil {
						return fail(e, "bench", err)
					}
					*bin = exe
				}
				var names []string
				for _, n := range strings.Split(*scen, ",") {
					if n = strings.TrimSpace(n); n != "" {
						names = append(names, n)
					}
				}
				if err := bench.CheckScenarios(names); err != nil {
					return fail(e, "bench", fmt.Errorf("%w: --scenario: %w", errUsage, err))
				}
				if os.Geteuid() != 0 {
					return fail(e, "bench", fmt.Errorf("needs root: it builds network namespaces and zfs-fuse pools"))
				}
				cmdline := "flocker bench"
				if *quick {
					cmdline += " --quick"
				}
				if len(names) > 0 {
					cmdline += " --scenario " + strings.Join(names, ",")
				}
				if *duration > 0 {
					cmdline += " --duration " + duration.String()
				}
				rep, err := bench.Run(ctx, bench.Options{Bin: *bin, Quick: *quick, Scenarios: names, Seed: *seed, Duration: *duration,
					AgentLogs: *agentLogs,
					Command:   cmdline, Progress: e.stderr, Logger: e.log})
				if rep == nil {
					return fail(e, "bench", err)
				}
				// The figures are written even when tearing the rig down
				// failed afterwards; the exit status still says so.
				if werr := rep.WriteFiles(*out); werr != nil {
					return fail(e, "bench", errors.Join(err, werr))
				}
				if werr := rep.WriteTable(e.stdout); werr != nil {
					return fail(e, "bench", errors.Join(err, werr))
				}
				fmt.Fprintf(e.stdout, "results in %s: %s\n", *out, strings.Join(rep.Files, ", "))
				if err != nil {
					return fail(e, "bench", err)
				}
				return exitOK
			}
		},
	})
}
