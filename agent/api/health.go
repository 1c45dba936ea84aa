package api

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Level is how healthy a pair is; its value is `flocker status`'s exit
// status.
type Level int

const (
	Healthy  Level = 0
	Degraded Level = 1 // serving, but not protected as configured
	Broken   Level = 2 // not serving, or cannot tell
)

func (l Level) String() string {
	switch l {
	case Healthy:
		return "healthy"
	case Degraded:
		return "degraded"
	}
	return "broken"
}

// MarshalText names the level in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a level's name.
func (l *Level) UnmarshalText(b []byte) error {
	for _, x := range []Level{Healthy, Degraded, Broken} {
		if string(b) == x.String() {
			*l = x
			return nil
		}
	}
	return fmt.Errorf("unknown health level %q", b)
}

// Finding is one problem found in a pair's status.
type Finding struct {
	Level   Level  `json:"level"`
	Node    string `json:"node,omitempty"`
	Dataset string `json:"dataset,omitempty"`
	Message string `json:"message"`
}

// View is what `flocker status` learnt: this host's agent's document (or
// why there is none) and, when the peer's status port is configured
// (PeerAsked), the peer's.
type View struct {
	Local     *Document
	LocalErr  error
	PeerAsked bool
	Peer      *Document
	PeerErr   error
}

// Assess grades a view: Broken when this host's agent does not answer,
// when no node is master or both are, or when a dataset's replication
// is stuck on a conflict; Degraded when the peer is away, a dataset's lag
// is over lagThreshold, a stash is waiting for the operator, or the peer's
// status port does not answer. Findings come worst first.
func Assess(v View, lagThreshold time.Duration) (Level, []Finding) {
	var fs []Finding
	add := func(l Level, node, ds, format string, args ...any) {
		fs = append(fs, Finding{Level: l, Node: node, Dataset: ds, Message: fmt.Sprintf(format, args...)})
	}
	if v.Local == nil {
		add(Broken, "", "", "this host's agent does not answer: %v", v.LocalErr)
		return Broken, fs
	}
	l := v.Local
	peerName := l.Peer.Name
	if v.PeerAsked && v.Peer == nil {
		add(Degraded, peerName, "", "the peer's status port does not answer: %v", v.PeerErr)
	}
	if !l.Peer.Connected {
		since := ""
		if !l.Peer.Since.IsZero() {
			since = fmt.Sprintf(" for %s", HumanDuration(l.Time.Sub(l.Peer.Since)))
		}
		add(Degraded, peerName, "", "peer %s is unreachable from %s%s", peerName, l.Node, since)
	}

	// Who is master: the peer's own word when it answered, else what it
	// said when it connected here (only while connected).
	peerRole := ""
	switch {
	case v.Peer != nil:
		peerRole = v.Peer.Role
	case l.Peer.Connected:
		peerRole = l.Peer.Role
	}
	switch {
	case l.Role == "master" && peerRole == "master":
		add(Broken, "", "", "both %s and %s are master (split brain): demote one (flocker demote) after checking which has the newer data", l.Node, peerName)
	case l.Role != "master" && peerRole != "master":
		if peerRole == "" {
			add(Broken, "", "", "no reachable master: %s is %s and %s cannot be reached", l.Node, l.Role, peerName)
		} else {
			add(Broken, "", "", "no master: %s is %s and %s is %s", l.Node, l.Role, peerName, peerRole)
		}
	}

	for _, d := range [](*Document){l, v.Peer} {
		if d == nil {
			continue
		}
		for _, ds := range d.Datasets {
			if ds.Conflict != "" {
				add(Broken, d.Node, ds.Name, "replication stopped: %s", ds.Conflict)
			}
			if ds.Role == "master" && ds.Lag > lagThreshold {
				add(Degraded, d.Node, ds.Name, "replication lag %s is over %s", HumanDuration(ds.Lag), HumanDuration(lagThreshold))
			}
			for _, s := range ds.Stashes {
				add(Degraded, d.Node, ds.Name, "stash %s (epoch %d, %s) waits for the operator: keep what you need, then flocker stash rm", s.Name, s.Epoch, HumanBytes(s.Bytes))
			}
		}
		if d.StashesError != "" {
			add(Degraded, d.Node, "", "stashes could not be listed: %s", d.StashesError)
		}
	}
	slices.SortStableFunc(fs, func(a, b Finding) int { return cmp.Compare(b.Level, a.Level) })
	level := Healthy
	if len(fs) > 0 {
		level = fs[0].Level
	}
	return level, fs
}

// HumanDuration rounds d for people: 850ms, 12.3s, 4m10s, 3h5m, 2d4h.
func HumanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + HumanDuration(-d)
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	d = d.Round(time.Hour)
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// HumanBytes renders a size with a binary unit: 512 B, 3.0 MiB.
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
