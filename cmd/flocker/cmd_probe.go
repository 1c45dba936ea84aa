package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/snapshot"
)

func init() {
	register(command{
		name:    "probe",
		summary: "show which notifier tiers this kernel offers, and why the others do not, and the ZFS dialect",
		usage:   "[--json] [--mountpoint PATH]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			asJSON := fs.Bool("json", false, "print the report as JSON")
			mountpoint := fs.String("mountpoint", "", "check fanotify marks and the fsid on the filesystem at `PATH` (a dataset's mountpoint) instead of /")
			return func(ctx context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return fail(e, "probe", fmt.Errorf("%w: unexpected argument %q", errUsage, args[0]))
				}
				r, err := agent.Probe(ctx, agent.ProbeOptions{
					Mountpoint: *mountpoint,
					ZFS:        snapshot.NewCLI("", "", e.log),
					Log:        e.log,
				})
				if err != nil && *mountpoint != "" && errors.Is(err, os.ErrNotExist) {
					// Checked by the probe itself, not by a stat here: on a
					// FUSE mount whose daemon hangs, only the probe has a timeout.
					return fail(e, "probe", fmt.Errorf("%w: --mountpoint: %w", errUsage, err))
				}
				if err != nil {
					return fail(e, "probe", err)
				}
				if *asJSON {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					err = enc.Encode(r)
				} else {
					err = r.WriteText(e.stdout)
				}
				if err != nil {
					return fail(e, "probe", fmt.Errorf("writing the report: %w", err))
				}
				return exitOK
			}
		},
	})
}
