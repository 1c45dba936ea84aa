package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/transport/pki"
)

func init() {
	register(command{
		name:    "trust",
		summary: "pin the peer's certificate fingerprint in the config",
		usage:   "[--config PATH] FINGERPRINT",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			path := fs.String("config", config.DefaultPath, "config file to update")
			return func(_ context.Context, e *env, args []string) int {
				if len(args) != 1 {
					return fail(e, "trust", fmt.Errorf("%w: want exactly one FINGERPRINT (as 'flocker init' printed it on the peer), got %d arguments", errUsage, len(args)))
				}
				return runTrust(e, *path, args[0])
			}
		},
	})
}

func runTrust(e *env, path, fingerprint string) int {
	if _, err := pki.ParseFingerprint(fingerprint); err != nil {
		return fail(e, "trust", fmt.Errorf("%w: %w", errUsage, err))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fail(e, "trust", fmt.Errorf("reading config: %w", err))
	}
	// Decode, not Parse: the config is incomplete until this very key is set.
	c, err := config.Decode(path, data)
	if err != nil {
		return fail(e, "trust", fmt.Errorf("%s has problems; fix them first:\n%w", path, err))
	}
	own, err := pki.ReadCertFingerprint(c.TLS.Cert)
	switch {
	case err == nil && own == fingerprint:
		return fail(e, "trust", fmt.Errorf("%s is this node's own certificate (%s); pin the one 'flocker init' printed on %s",
			fingerprint, c.TLS.Cert, c.Peer.Name))
	case err != nil && !errors.Is(err, os.ErrNotExist):
		// Only a safety check: the certificate's problems are flocker check's
		// to report.
		e.log.Warn("could not read this node's certificate to compare", "err", err)
	}
	if c.Peer.Fingerprint == fingerprint {
		e.log.Info("peer certificate already pinned", "config", path, "peer", c.Peer.Name, "fingerprint", fingerprint)
		return exitOK
	}
	if err := config.SetKeys(path, "peer", "fingerprint", fingerprint); err != nil {
		return fail(e, "trust", err)
	}
	if c.Peer.Fingerprint != "" {
		e.log.Warn("replaced the pinned peer certificate", "config", path, "peer", c.Peer.Name,
			"old", c.Peer.Fingerprint, "new", fingerprint)
	} else {
		e.log.Info("pinned peer certificate", "config", path, "peer", c.Peer.Name, "fingerprint", fingerprint)
	}
	return exitOK
}
