package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/flockerha/flocker/agent/api"
	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/transport/pki"
)

func init() {
	register(command{
		name:    "check",
		summary: "validate a config and its credentials, listing every problem",
		usage:   "[--config PATH]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			path := fs.String("config", config.DefaultPath, "config file to check")
			return func(_ context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return fail(e, "check", fmt.Errorf("%w: unexpected argument %q", errUsage, args[0]))
				}
				return runCheck(e, *path)
			}
		},
	})
}

// runCheck prints every problem, one per line on stdout, and exits 1 when
// there is any; otherwise it prints a summary of what the config sets up.
func runCheck(e *env, path string) int {
	c, err := config.Load(path)
	var probs config.Problems
	if err != nil && !errors.As(err, &probs) {
		return fail(e, "check", err)
	}
	own := ""
	if !mentions(probs, "tls") {
		var fileProbs config.Problems
		own, fileProbs = checkCredentials(c)
		probs = append(probs, fileProbs...)
		probs.Sort()
	}
	if len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintln(e.stdout, p)
		}
		e.log.Debug("config check failed", "config", path, "problems", len(probs))
		fmt.Fprintf(e.stderr, "flocker check: %d problem(s) in %s\n", len(probs), path)
		return exitFail
	}
	printSummary(e.stdout, path, c, own)
	return exitOK
}

// checkCredentials loads the key pair the config names (existence, key mode,
// key matching the certificate) and makes sure the peer pin is not this
// node's own certificate.
func checkCredentials(c *config.Config) (fingerprint string, probs config.Problems) {
	at := func(section, key, msg string) {
		probs = append(probs, config.Problem{File: c.File(), Line: c.Line(section, key), Section: section, Key: key, Msg: msg})
	}
	_, fingerprint, err := pki.LoadKeyPair(c.TLS.Cert, c.TLS.Key)
	switch {
	case errors.Is(err, pki.ErrKeyFile):
		at("tls", "key", err.Error())
	case err != nil:
		at("tls", "cert", err.Error())
	case c.Peer.Fingerprint == fingerprint:
		at("peer", "fingerprint", "is this node's own certificate: pin the one 'flocker init' printed on the peer")
	}
	if c.Admin.TokenFile != "" {
		if _, err := api.ReadToken(c.Admin.TokenFile); err != nil {
			at("admin", "token_file", err.Error())
		}
	}
	return fingerprint, probs
}

func mentions(probs config.Problems, section string) bool {
	for _, p := range probs {
		if p.Section == section {
			return true
		}
	}
	return false
}

func printSummary(w io.Writer, path string, c *config.Config, own string) {
	fmt.Fprintf(w, "%s: ok\n", path)
	fmt.Fprintf(w, "node     %s, listening on %s, status on %s\n", c.Node.Name, c.Node.Listen, c.Node.Status)
	fmt.Fprintf(w, "         certificate %s\n", own)
	fmt.Fprintf(w, "peer     %s at %s, pinned %s\n", c.Peer.Name, c.Peer.Address, c.Peer.Fingerprint)
	for _, d := range c.Datasets {
		fmt.Fprintf(w, "dataset  %s: %s", d.Name, d.ZFS)
		if d.VIP.IsValid() {
			fmt.Fprintf(w, ", vip %s on %s", d.VIP, d.Interface)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "snapshot min interval %v, retention %s\n", c.Snapshot.MinInterval, c.Snapshot.Retention)
	bw := "no bandwidth cap"
	if c.Replication.Bandwidth > 0 {
		bw = fmt.Sprintf("bandwidth cap %d bytes/s", c.Replication.Bandwidth)
	}
	fmt.Fprintf(w, "notify   mode %s, timer interval %v; %s\n", c.Notify.Mode, c.Notify.Interval, bw)
	fmt.Fprintf(w, "failover heartbeat %v, timeout %v", c.Failover.Heartbeat, c.Failover.Timeout)
	if c.Failover.Witness.IsValid() {
		fmt.Fprintf(w, ", witness %s", c.Failover.Witness)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "state    role %s, epoch %d\n", c.State.Role, c.State.Epoch)
}
