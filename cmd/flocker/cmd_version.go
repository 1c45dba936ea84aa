package main

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
)

func init() {
	register(command{
		name:    "version",
		summary: "print the build's version",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			return func(_ context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return fail(e, "version", fmt.Errorf("%w: unexpected argument %q", errUsage, args[0]))
				}
				v := "(devel)"
				if bi, ok := debug.ReadBuildInfo(); ok {
					v = bi.Main.Version
					for _, s := range bi.Settings {
						if s.Key == "vcs.revision" {
							v += " " + s.Value
						}
					}
				}
				fmt.Fprintln(e.stdout, "flocker", v)
				return exitOK
			}
		},
	})
}
