// Command flocker is the single binary of the flocker HA service: the agent
// daemon and every operator command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/flockerha/flocker/internal/logging"
)

// Exit codes shared by every subcommand. `flocker status` adds its own
// (0 healthy, 1 degraded, 2 broken) on top of these meanings.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed (or found problems)
	exitUsage = 2 // bad arguments: nothing was done
)

// env is what main hands to a subcommand: streams, a logger built from the
// common flags, and nothing global.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

// command is one subcommand. flags registers its own flags on fs; run gets the
// remaining positional arguments.
type command struct {
	name    string
	summary string
	usage   string // argument synopsis after the command name
	flags   func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int
}

var commands = map[string]command{}

// register adds a subcommand; each cmd_*.go file registers its own in init.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("flocker: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error in the command line rather than in the work.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printHelp(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "flocker: unknown command %q (run 'flocker help')\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("flocker "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	logFormat := fs.String("log-format", logging.FormatText, "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	body := cmd.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: flocker %s %s\n\n%s\n\nflags:\n", cmd.name, cmd.usage, cmd.summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	log, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "flocker %s: %v\n", cmd.name, err)
		return exitUsage
	}
	return body(ctx, &env{stdout: stdout, stderr: stderr, log: log}, fs.Args())
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "flocker: high availability for stateful services on ZFS")
	fmt.Fprintln(w, "\nusage: flocker COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --log-format text|json and --log-level debug|info|warn|error.")
	fmt.Fprintln(w, "Run 'flocker COMMAND -h' for its flags.")
}

// fail prints a command's error and returns the matching exit code.
func fail(e *env, name string, err error) int {
	fmt.Fprintf(e.stderr, "flocker %s: %v\n", name, err)
	if errors.Is(err, errUsage) {
		return exitUsage
	}
	return exitFail
}
