package main

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/agent/api"
	"github.com/flockerha/flocker/agent/config"
)

// newAgentMetrics builds the agent's metrics; status is read at each scrape
// (only once the API serves, after the agent exists).
func newAgentMetrics(status func() agent.Status, n agent.Notifier) *api.Metrics {
	var ring api.RingBufferStats
	switch n := n.(type) {
	case *agent.Watcher: // the agent's notifier: sums its eBPF tiers
		ring = func() uint64 { return n.EBPFStats().Lost }
	case *agent.EBPF:
		ring = func() uint64 { return n.Stats().Lost }
	}
	return api.NewMetrics(status, ring)
}

// startAPI serves the agent's API on [node] status and the admin socket.
// The agent's operator methods (agent.Controller) are served once the agent
// has them (failover wiring); until then the mutating routes answer 501.
func startAPI(c *config.Config, a *agent.Agent, metrics http.Handler, log *slog.Logger) (*api.Server, error) {
	var token []byte
	if c.Admin.TokenFile != "" {
		tok, err := api.ReadToken(c.Admin.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("[admin] token_file: %w", err)
		}
		token = tok
	}
	ctl, _ := any(a).(agent.Controller)
	srv, err := api.NewServer(api.Options{Status: a.Status, Controller: ctl, Metrics: metrics, Token: token, Logger: log})
	if err != nil {
		return nil, err
	}
	tcp, err := api.ListenTCP(c.Node.Status)
	if err != nil {
		return nil, fmt.Errorf("[node] status %s: %w", c.Node.Status, err)
	}
	unix, err := api.ListenUnix(c.Admin.Socket)
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("[admin] socket: %w", err)
	}
	if err := srv.Start(tcp, unix); err != nil {
		tcp.Close()
		unix.Close()
		return nil, err
	}
	return srv, nil
}
