package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/flockerha/flocker/agent/api"
	"github.com/flockerha/flocker/agent/config"
)

// The operator commands are thin clients of the running agent's admin API:
// the unix socket by default (root), or [node] status over HTTP with the
// admin token (--url, --token-file).

func init() {
	register(command{
		name:    "promote",
		summary: "make this node master now (--force even while the peer claims to be master)",
		usage:   "[--force] [--config PATH | --url URL --token-file PATH]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			force := fs.Bool("force", false, "promote even while the peer is alive and master (split brain is yours to resolve)")
			target := adminFlags(fs)
			return func(ctx context.Context, e *env, args []string) int {
				return adminRun(ctx, e, "promote", args, target, func(ctx context.Context, c *api.Client) error {
					res, err := c.Promote(ctx, *force)
					if err == nil {
						fmt.Fprintf(e.stdout, "%s: this node is %s, epoch %d\n", c.Via(), res.Role, res.Epoch)
					}
					return err
				})
			}
		},
	})
	register(command{
		name:    "demote",
		summary: "make this node slave: service stopped, address dropped, dataset readonly",
		usage:   "[--config PATH | --url URL --token-file PATH]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			target := adminFlags(fs)
			return func(ctx context.Context, e *env, args []string) int {
				return adminRun(ctx, e, "demote", args, target, func(ctx context.Context, c *api.Client) error {
					res, err := c.Demote(ctx)
					if err == nil {
						fmt.Fprintf(e.stdout, "%s: this node is %s, epoch %d\n", c.Via(), res.Role, res.Epoch)
					}
					return err
				})
			}
		},
	})
	register(command{
		name:    "handoff",
		summary: "planned switchover: this master hands its datasets to the peer",
		usage:   "[--config PATH | --url URL --token-file PATH]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			target := adminFlags(fs)
			return func(ctx context.Context, e *env, args []string) int {
				return adminRun(ctx, e, "handoff", args, target, func(ctx context.Context, c *api.Client) error {
					res, err := c.Handoff(ctx)
					if err == nil {
						fmt.Fprintf(e.stdout, "%s is master now, epoch %d; service down for %v\n",
							res.NewMaster, res.Epoch, res.Downtime.Round(time.Millisecond))
					}
					return err
				})
			}
		},
	})
	register(command{
		name:    "stash",
		summary: "list or remove the datasets kept from lost divergences",
		usage:   "list [--json] | rm NAME   [--config PATH | --url URL --token-file PATH]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			asJSON := fs.Bool("json", false, "list: print JSON")
			target := adminFlags(fs)
			return func(ctx context.Context, e *env, args []string) int {
				if len(args) == 0 {
					return fail(e, "stash", fmt.Errorf("%w: want 'stash list' or 'stash rm NAME'", errUsage))
				}
				// Flags may follow the subcommand and its name:
				// stash rm NAME --config PATH.
				rest, err := parseInterspersed(fs, args[1:])
				if err != nil {
					return exitUsage
				}
				switch sub := args[0]; sub {
				case "list", "ls":
					return adminRun(ctx, e, "stash list", rest, target, func(ctx context.Context, c *api.Client) error {
						return stashList(ctx, e, c, *asJSON)
					})
				case "rm":
					if len(rest) != 1 {
						return fail(e, "stash rm", fmt.Errorf("%w: want exactly one stash NAME (see 'flocker stash list')", errUsage))
					}
					return adminRun(ctx, e, "stash rm", nil, target, func(ctx context.Context, c *api.Client) error {
						if err := c.RemoveStash(ctx, rest[0]); err != nil {
							return err
						}
						fmt.Fprintf(e.stdout, "removed %s\n", rest[0])
						return nil
					})
				default:
					return fail(e, "stash", fmt.Errorf("%w: unknown subcommand %q: want list or rm", errUsage, sub))
				}
			}
		},
	})
}

// parseInterspersed parses flags anywhere among args and returns the
// positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func stashList(ctx context.Context, e *env, c *api.Client, asJSON bool) error {
	list, err := c.Stashes(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		out, err := json.MarshalIndent(list, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", out)
		return nil
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stdout, "no stashes")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDATASET\tEPOCH\tCREATED\tSIZE")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Name, s.Dataset, s.Epoch, s.Created.Local().Format(time.DateTime), api.HumanBytes(s.Bytes))
	}
	return tw.Flush()
}

// adminTarget is where an operator command sends its request.
type adminTarget struct {
	config, url, tokenFile *string
}

func adminFlags(fs *flag.FlagSet) adminTarget {
	return adminTarget{
		config:    fs.String("config", config.DefaultPath, "config file: the agent's admin socket is [admin] socket"),
		url:       fs.String("url", "", "ask the agent at http://HOST:PORT ([node] status) instead of the socket"),
		tokenFile: fs.String("token-file", "", "with --url: the admin token file (default: [admin] token_file of --config)"),
	}
}

// adminRun resolves the target, runs call and explains its error.
func adminRun(ctx context.Context, e *env, name string, args []string, t adminTarget, call func(context.Context, *api.Client) error) int {
	if len(args) > 0 {
		return fail(e, name, fmt.Errorf("%w: unexpected argument %q", errUsage, args[0]))
	}
	c, err := t.client()
	if err != nil {
		return fail(e, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := call(ctx, c); err != nil {
		return fail(e, name, explain(err))
	}
	return exitOK
}

// client connects the way the flags say: --url over HTTP with a token,
// else the admin socket of --config, with an error saying what to do when
// the socket cannot be used.
func (t adminTarget) client() (*api.Client, error) {
	if *t.url != "" {
		path := *t.tokenFile
		if path == "" {
			if c, err := config.Load(*t.config); err == nil {
				path = c.Admin.TokenFile
			}
		}
		if path == "" {
			return nil, fmt.Errorf("%w: --url needs --token-file (or [admin] token_file in a readable --config)", errUsage)
		}
		tok, err := api.ReadToken(path)
		if err != nil {
			return nil, err
		}
		return api.NewURLClient(*t.url, string(tok))
	}
	if *t.tokenFile != "" {
		return nil, fmt.Errorf("%w: --token-file goes with --url", errUsage)
	}
	c, err := config.Load(*t.config)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: run as root, or use --url with --token-file", err)
		}
		return nil, err
	}
	return api.NewUnixClient(c.Admin.Socket), probeSocket(c.Admin.Socket)
}

// probeSocket connects once to tell the common failures apart before the
// request is sent.
func probeSocket(path string) error {
	conn, err := net.Dial("unix", path)
	switch {
	case err == nil:
		conn.Close()
		return nil
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("admin socket %s does not exist: is the agent running? (systemctl status flocker)", path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("admin socket %s: permission denied: run as root, or use --url with --token-file", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("admin socket %s: no agent answers (a stale socket: the agent is not running)", path)
	}
	return fmt.Errorf("admin socket %s: %w", path, err)
}

// explain turns an agent's error answer into an operator's sentence.
func explain(err error) error {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case http.StatusConflict:
		return fmt.Errorf("the agent refused: %s", ae.Message)
	case http.StatusNotFound:
		return fmt.Errorf("not found: %s", ae.Message)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("the agent at %s refused the credentials (%d): %s: check --token-file against its [admin] token_file", ae.Via, ae.Code, ae.Message)
	case http.StatusNotImplemented:
		return fmt.Errorf("the agent does not take this request: %s", ae.Message)
	}
	return err
}
