package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/agent/api"
	"github.com/flockerha/flocker/agent/config"
	"golang.org/x/sys/unix"
)

func init() {
	register(command{
		name:    "status",
		summary: "both hosts side by side, problems first; exit 0 healthy, 1 degraded, 2 broken",
		usage:   "[--config PATH] [--json] [--watch [--interval D]]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			path := fs.String("config", config.DefaultPath, "config file: where this host's agent and the peer's status port are")
			asJSON := fs.Bool("json", false, "print JSON: health, findings and both status documents")
			watch := fs.Bool("watch", false, "redraw every --interval until interrupted")
			interval := fs.Duration("interval", 2*time.Second, "with --watch: time between redraws")
			return func(ctx context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return fail(e, "status", fmt.Errorf("%w: unexpected argument %q", errUsage, args[0]))
				}
				if *interval <= 0 {
					return fail(e, "status", fmt.Errorf("%w: --interval %v: must be positive", errUsage, *interval))
				}
				c, err := config.Load(*path)
				if err != nil {
					if errors.Is(err, os.ErrPermission) {
						err = fmt.Errorf("%w: run as root (the config holds the admin socket's and the peer's addresses)", err)
					}
					fmt.Fprintf(e.stderr, "flocker status: %v\n", err)
					return int(api.Broken)
				}
				tty := isTerminal(e.stdout)
				if !*watch {
					return showStatus(e, c, gather(ctx, c), *asJSON, tty)
				}
				// Interrupted: the last complete round's health, not the
				// round the interrupt cut short.
				last := int(api.Broken)
				for {
					v := gather(ctx, c)
					if ctx.Err() != nil {
						return last
					}
					if tty && !*asJSON {
						fmt.Fprint(e.stdout, "\033[H\033[2J")
					}
					last = showStatus(e, c, v, *asJSON, tty)
					select {
					case <-ctx.Done():
						return last
					case <-time.After(*interval):
					}
				}
			}
		},
	})
}

// statusTimeout bounds each question to an agent: a status check must
// answer even when an agent hangs.
const statusTimeout = 5 * time.Second

// statusReport is `flocker status --json`.
type statusReport struct {
	Health    api.Level     `json:"health"`
	Exit      int           `json:"exit"`
	Findings  []api.Finding `json:"findings"`
	Local     *api.Document `json:"local"`
	LocalErr  string        `json:"local_error,omitempty"`
	Peer      *api.Document `json:"peer"`
	PeerErr   string        `json:"peer_error,omitempty"`
	Threshold time.Duration `json:"lag_threshold_ns"`
}

// gather asks this host's agent (its socket when this process may open it,
// else [node] status) and, when [peer] status is set, the peer.
func gather(ctx context.Context, c *config.Config) api.View {
	var v api.View
	local := localStatusClient(c)
	ctx1, cancel := context.WithTimeout(ctx, statusTimeout)
	v.Local, v.LocalErr = local.Status(ctx1)
	cancel()
	if c.Peer.Status.IsValid() {
		v.PeerAsked = true
		ctx2, cancel := context.WithTimeout(ctx, statusTimeout)
		v.Peer, v.PeerErr = api.NewHTTPClient(c.Peer.Status, "").Status(ctx2)
		cancel()
	}
	return v
}

func localStatusClient(c *config.Config) *api.Client {
	if conn, err := net.Dial("unix", c.Admin.Socket); err == nil {
		conn.Close()
		return api.NewUnixClient(c.Admin.Socket)
	}
	return api.NewHTTPClient(c.Node.Status, "")
}

func showStatus(e *env, c *config.Config, v api.View, asJSON, colour bool) int {
	level, findings := api.Assess(v, c.Replication.LagThreshold)
	if asJSON {
		r := statusReport{Health: level, Exit: int(level), Findings: findings, Local: v.Local, Peer: v.Peer,
			Threshold: c.Replication.LagThreshold}
		if r.Findings == nil {
			r.Findings = []api.Finding{}
		}
		if v.LocalErr != nil {
			r.LocalErr = v.LocalErr.Error()
		}
		if v.PeerErr != nil {
			r.PeerErr = v.PeerErr.Error()
		}
		out, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return fail(e, "status", err)
		}
		fmt.Fprintf(e.stdout, "%s\n", out)
		return int(level)
	}
	renderStatus(e.stdout, c, v, level, findings, time.Now(), colour, outputWidth(e.stdout))
	return int(level)
}

// ANSI colours, only on a terminal.
const (
	ansiRed    = "\033[31m"
	ansiYellow = "\033[33m"
	ansiGreen  = "\033[32m"
	ansiBold   = "\033[1m"
	ansiReset  = "\033[0m"
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// renderStatus prints the headline, the findings, then both hosts side by
// side: this host from its own agent, the peer from its status port when
// it answered, else as this host's agent sees it. Lines stay within width:
// long cells wrap, very long ones are cut (--json has the full text).
func renderStatus(w io.Writer, c *config.Config, v api.View, level api.Level, findings []api.Finding, now time.Time, colour bool, width int) {
	paint := func(code, s string) string {
		if !colour {
			return s
		}
		return code + s + ansiReset
	}
	levelColour := map[api.Level]string{api.Healthy: ansiGreen, api.Degraded: ansiYellow, api.Broken: ansiRed}
	fmt.Fprintf(w, "%s %s: %s (exit %d)\n", paint(ansiBold, "flocker status"), c.Node.Name+" + "+c.Peer.Name,
		paint(levelColour[level], strings.ToUpper(level.String())), int(level))
	for _, f := range findings {
		where := ""
		switch {
		case f.Node != "" && f.Dataset != "":
			where = f.Node + "/" + f.Dataset + ": "
		case f.Dataset != "":
			where = f.Dataset + ": "
		}
		fmt.Fprint(w, wrapIndented("  "+paint(levelColour[f.Level], "!")+" ", 4, where+f.Message, width))
	}
	fmt.Fprintln(w)
	if v.Local == nil {
		return
	}
	l := v.Local
	peerHead := c.Peer.Name + " (as " + l.Node + " sees it)"
	if v.Peer != nil {
		peerHead = v.Peer.Node
	}
	var tw table
	row := tw.row
	row("", l.Node+" (this host)", peerHead)
	row("role", fmt.Sprintf("%s, epoch %d", l.Role, l.Epoch), peerRole(l, v.Peer))
	row("peer link", linkText(l, now), peerLinkText(v.Peer, now))
	row("heartbeat", heartbeatText(l.Peer), peerHeartbeatText(v.Peer))
	peerDS := map[string]agent.DatasetStatus{}
	if v.Peer != nil {
		for _, d := range v.Peer.Datasets {
			peerDS[d.Name] = d
		}
	}
	for _, d := range l.Datasets {
		p, havePeer := peerDS[d.Name]
		other := func(f func(agent.DatasetStatus) string) string {
			if !havePeer {
				return "-"
			}
			return f(p)
		}
		row("dataset "+d.Name, d.ZFS+" ("+d.Role+")", other(func(p agent.DatasetStatus) string { return p.ZFS + " (" + p.Role + ")" }))
		row("  lag", lagText(d), other(lagText))
		row("  newest snapshot", snapText(d.NewestLocal, now), other(func(p agent.DatasetStatus) string { return snapText(p.NewestLocal, now) }))
		row("  transfer", transferText(d.Transfer, now), other(func(p agent.DatasetStatus) string { return transferText(p.Transfer, now) }))
		row("  snapshots", countsText(d), other(countsText))
		row("  notifier", notifierText(d), other(notifierText))
		row("  dirty since", sinceText(d.DirtySince, now), other(func(p agent.DatasetStatus) string { return sinceText(p.DirtySince, now) }))
		row("  stashes", fmt.Sprint(len(d.Stashes)), other(func(p agent.DatasetStatus) string { return fmt.Sprint(len(p.Stashes)) }))
		row("  last error", problemText(d.LastError, now), other(func(p agent.DatasetStatus) string { return problemText(p.LastError, now) }))
	}
	tw.render(w, width)
}

func peerRole(l *api.Document, p *api.Document) string {
	switch {
	case p != nil:
		return fmt.Sprintf("%s, epoch %d", p.Role, p.Epoch)
	case l.Peer.Connected:
		return fmt.Sprintf("%s, epoch %d (when it connected)", l.Peer.Role, l.Peer.Epoch)
	}
	return "unknown"
}

func linkText(d *api.Document, now time.Time) string {
	state := "down"
	if d.Peer.Connected {
		state = "up"
	}
	if d.Peer.Since.IsZero() {
		return state
	}
	return fmt.Sprintf("%s for %s", state, api.HumanDuration(now.Sub(d.Peer.Since)))
}

func peerLinkText(p *api.Document, now time.Time) string {
	if p == nil {
		return "-"
	}
	return linkText(p, now)
}

func heartbeatText(p agent.PeerStatus) string {
	if p.LastHeartbeat.IsZero() {
		return "none yet"
	}
	return fmt.Sprintf("%s ago, rtt %s", api.HumanDuration(p.HeartbeatAge), api.HumanDuration(p.RTT))
}

func peerHeartbeatText(p *api.Document) string {
	if p == nil {
		return "-"
	}
	return heartbeatText(p.Peer)
}

func lagText(d agent.DatasetStatus) string {
	if d.Role != "master" {
		return "-"
	}
	s := api.HumanDuration(d.Lag)
	if d.Lag == 0 {
		s = "current"
	}
	if d.LastLag > 0 {
		s += fmt.Sprintf(" (last transfer %s)", api.HumanDuration(d.LastLag))
	}
	return s
}

func snapText(s *agent.SnapshotRef, now time.Time) string {
	if s == nil {
		return "none"
	}
	return fmt.Sprintf("%s, %s ago", s.Name, api.HumanDuration(now.Sub(s.Created)))
}

func transferText(x *agent.TransferStatus, now time.Time) string {
	if x == nil {
		return "none"
	}
	size := api.HumanBytes(x.Bytes)
	if x.Estimate > 0 {
		size += " of ~" + api.HumanBytes(x.Estimate)
	}
	return fmt.Sprintf("%s %s, %s, for %s", x.Kind, x.Target, size, api.HumanDuration(now.Sub(x.Started)))
}

func countsText(d agent.DatasetStatus) string {
	s := d.Snapshots
	moved := "sent"
	if d.Role != "master" {
		moved = "received"
	}
	return fmt.Sprintf("%d here, %d on peer; %d taken, %d pruned; %d %s (%d failed)",
		s.Local, s.Peer, s.Taken, s.Pruned, s.Transfers, moved, s.FailedTransfers)
}

func notifierText(d agent.DatasetStatus) string {
	if d.Notifier.Tier == "" {
		return "-"
	}
	if n := len(d.Notifier.Refused); n > 0 {
		return fmt.Sprintf("%s (%d other tiers refused: --json says why)", d.Notifier.Tier, n)
	}
	return d.Notifier.Tier
}

func sinceText(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return api.HumanDuration(now.Sub(t)) + " ago"
}

func problemText(p *agent.Problem, now time.Time) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprintf("%s: %s (%s ago)", p.Code, p.Message, api.HumanDuration(now.Sub(p.At)))
}
