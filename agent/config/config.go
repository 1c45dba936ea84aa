// Package config reads, checks and rewrites flocker.ini, the one file that
// configures a flocker node (and in which the agent records its role and
// epoch).
//
// The file is INI, parsed by gopkg.in/ini.v1 with its leniencies turned off
// where they would let a mistake pass unnoticed:
//
//   - Sections and keys are case-sensitive and each appears once; every key
//     belongs to a section. Unknown sections and keys are errors.
//   - '=' is the only key/value delimiter (':' belongs to addresses and
//     fingerprints).
//   - A line starting with ';' or '#' is a comment. An inline comment starts
//     at " ;" or " #" (whitespace first), so "a;b" and "http://h/#x" stay
//     whole. A value that must contain " ;" or " #" goes in backticks on one
//     line: start = `a ; b`.
//   - Otherwise a value is taken as written: quotes stay (a start command
//     reaches the shell as typed), a trailing backslash does not continue the
//     line, there are no multi-line values, and ini.v1's %(key)s
//     interpolation is not applied.
//
// Every problem is reported with file, line, section and key, and all of them
// at once (see Problems), so `flocker check` can list them like `nginx -t`.
package config

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/flockerha/flocker/snapshot"
)

// DefaultPath is where the agent and the operator commands look by default.
const DefaultPath = "/etc/flocker/flocker.ini"

// Defaults, each with the reason for its value.
const (
	// DefaultListen is the QUIC (UDP) address for the peer: all interfaces,
	// since which one the peer's traffic arrives on is the network's business.
	DefaultListen = "0.0.0.0:7946"
	// DefaultStatus serves /status and /metrics over plain HTTP; loopback
	// only, because nothing there is authenticated.
	DefaultStatus = "127.0.0.1:9946"
	// DefaultHeartbeat: a heartbeat is one small datagram each way, cheap
	// enough at 10 per second, and bounds how stale the view of the peer is.
	DefaultHeartbeat = 100 * time.Millisecond
	// DefaultTimeout is 10 x DefaultHeartbeat: the peer is declared dead only
	// after about nine heartbeats in a row went missing (a burst of loss, a
	// long GC pause, a loaded two-core host), while a real failure is still
	// acted on within about a second.
	DefaultTimeout = 10 * DefaultHeartbeat
	// MinTimeoutHeartbeats bounds timeout/heartbeat from below: with fewer
	// than three heartbeats per timeout, one lost datagram plus ordinary
	// jitter declares a live peer dead, and a needless failover (the service
	// restarts on the other host) costs more than a slightly slower one.
	MinTimeoutHeartbeats = 3
	// DefaultDivergence: when both hosts wrote after their last common
	// snapshot, the side promoted later keeps its history (it is where
	// clients were sent last); the other side's writes are stashed, never
	// destroyed.
	DefaultDivergence = DivergeNewerEpoch
	// DefaultCheckFailures: three failed checks in a row (about three
	// seconds at one check a second) before a master hands over; one slow
	// or flaky check must not move a service, since a handoff stops it for
	// a moment on purpose.
	DefaultCheckFailures = 3
	// DefaultNotifyMode lets the agent pick the best change-notification tier
	// this kernel supports.
	DefaultNotifyMode = NotifyAuto
	// DefaultNotifyInterval is the timer tier's period: when no better tier
	// loads it bounds how long a write can wait for its snapshot, so one
	// second keeps at most about a second of writes on one host only. A tick
	// costs one `zfs get written` where ZFS has that property, and where it
	// has not (zfs-fuse) a snapshot and an empty incremental send, a few
	// zfs commands per second per dataset.
	DefaultNotifyInterval = time.Second
	// DefaultMinInterval is 0: a change is snapshotted at once. Coalescing
	// needs no floor here: while a transfer is in flight at most one
	// snapshot waits and later changes fold into it, so the snapshot rate
	// follows what the link and the peer absorb, not the write rate.
	DefaultMinInterval = time.Duration(0)
	// DefaultBandwidth is 0: replication sends as fast as QUIC flow control
	// and the peer's receive allow.
	DefaultBandwidth = uint64(0)
	// DefaultRole is slave: a node that knows nothing better must not claim
	// the data; one node is made master on purpose (init --role master,
	// promote).
	DefaultRole = RoleSlave
	// DefaultAdminSocket is where the agent serves its admin API to root:
	// /run is a tmpfs cleared at boot, so a stale socket never outlives a
	// reboot, and systemd's RuntimeDirectory=flocker creates the directory.
	DefaultAdminSocket = "/run/flocker/admin.sock"
	// DefaultLagThreshold is when `flocker status` calls a replica degraded:
	// 10 x DefaultNotifyInterval, so a healthy pair on the slowest tier (the
	// timer) never crosses it, while a replica that has fallen behind by
	// more than a few snapshot cycles (a stalled link, a full slave pool) is
	// reported within seconds. A first full sync of a big dataset crosses it
	// too, rightly: the replica is not current until it ends.
	DefaultLagThreshold = 10 * DefaultNotifyInterval
	// DefaultCert and DefaultKey sit beside the config file, where
	// `flocker init` writes them.
	DefaultCert = "node.crt"
	DefaultKey  = "node.key"
)

// Divergence policies ([failover] divergence), as snapshot.ParseDivergencePolicy
// reads them.
const (
	DivergeNewerEpoch  = "newer-epoch"
	DivergeMostChanges = "most-changes"
)

// MaxNameLen limits node and dataset names: they appear in certificates,
// logs and metric labels, and 63 is a DNS label's limit.
const MaxNameLen = 63

// Role is a node's part for its datasets.
type Role string

// Roles.
const (
	RoleMaster Role = "master"
	RoleSlave  Role = "slave"
)

// Notification modes ([notify] mode). auto picks the best tier that loads;
// the others force one (the agent's tiers, best first).
const (
	NotifyAuto       = "auto"
	NotifyFentry     = "fentry"
	NotifyKprobe     = "kprobe"
	NotifyTracepoint = "tracepoint"
	NotifyBlock      = "block"
	NotifyFanotify   = "fanotify"
	NotifyTimer      = "timer"
)

// NotifyModes lists the accepted [notify] mode values.
var NotifyModes = []string{NotifyAuto, NotifyFentry, NotifyKprobe, NotifyTracepoint, NotifyBlock, NotifyFanotify, NotifyTimer}

// Config is a decoded flocker.ini. Paths are resolved: a relative path in
// the file is taken relative to the file's directory.
type Config struct {
	Node        Node        `json:"node"`
	Peer        Peer        `json:"peer"`
	TLS         TLS         `json:"tls"`
	Admin       Admin       `json:"admin"`
	Datasets    []Dataset   `json:"datasets"` // in file order
	Snapshot    Snapshot    `json:"snapshot"`
	Replication Replication `json:"replication"`
	Notify      Notify      `json:"notify"`
	Failover    Failover    `json:"failover"`
	State       State       `json:"state"`

	src *source // where each value came from; nil for a Config built in code
}

// Node is this host.
type Node struct {
	Name   string         `json:"name"`
	Listen netip.AddrPort `json:"listen"`
	Status netip.AddrPort `json:"status"`
}

// Peer is the other host.
type Peer struct {
	Name        string         `json:"name"`
	Address     netip.AddrPort `json:"address"`
	Fingerprint string         `json:"fingerprint"` // pinned certificate, "sha256:HEX"
	// Status is the peer's [node] status address, where `flocker status`
	// asks it directly; unset (zero): status shows the peer as this node's
	// agent sees it.
	Status netip.AddrPort `json:"status"`
}

// TLS names this node's certificate and key files.
type TLS struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Admin holds settings for operator access to the agent.
type Admin struct {
	// TokenFile holds the bearer token of the mutating routes on [node]
	// status; empty: they are reachable on the socket only.
	TokenFile string `json:"token_file,omitempty"`
	// Socket is the unix socket of the admin API, for root.
	Socket string `json:"socket"`
}

// Dataset is one protected dataset.
type Dataset struct {
	Name      string       `json:"name"`            // logical name, the same on both hosts
	ZFS       string       `json:"zfs"`             // this host's dataset
	VIP       netip.Prefix `json:"vip"`             // floating address; zero when none
	Interface string       `json:"interface"`       // where the VIP lives
	Start     string       `json:"start,omitempty"` // shell command that starts the service
	Stop      string       `json:"stop,omitempty"`  // shell command that stops it
	Check     string       `json:"check,omitempty"` // shell command, exit 0 = healthy
	// ProbePort is the TCP port the service answers on at the floating
	// address ([dataset] probe = tcp:PORT; 0 when unset): before promoting,
	// the slave connects to it to tell a dead host from a dead agent.
	ProbePort uint16 `json:"probe_port,omitempty"`
}

// Snapshot configures when the agent snapshots and what it keeps.
type Snapshot struct {
	// MinInterval is the least time between two snapshots of one dataset.
	MinInterval time.Duration `json:"min_interval"`
	// Retention prunes flocker's own snapshots on both hosts.
	Retention snapshot.RetentionPolicy `json:"retention"`
}

// Replication configures the transfers to the peer.
type Replication struct {
	// Bandwidth caps one dataset's send rate in bytes per second; 0 is
	// no cap.
	Bandwidth uint64 `json:"bandwidth"`
	// LagThreshold: a replication lag above it makes `flocker status`
	// report the pair degraded.
	LagThreshold time.Duration `json:"lag_threshold"`
}

// Notify selects how the agent learns that a dataset changed.
type Notify struct {
	Mode string `json:"mode"`
	// Interval is the timer tier's period.
	Interval time.Duration `json:"interval"`
}

// Failover holds the failure detector's timing and the optional witness.
type Failover struct {
	Heartbeat time.Duration `json:"heartbeat"`
	Timeout   time.Duration `json:"timeout"`
	Witness   netip.Addr    `json:"witness"` // zero when none
	// Divergence names the policy that decides between two hosts that both
	// wrote after their last common snapshot: newer-epoch or most-changes
	// ("" in a Config built in code: the default).
	Divergence string `json:"divergence"`
	// CheckFailures is how many failed checks in a row make a master hand
	// over to a healthy, current peer (0 in a Config built in code: the
	// default).
	CheckFailures int `json:"check_failures"`
}

// State is what the agent records about itself.
type State struct {
	Role  Role   `json:"role"`
	Epoch uint64 `json:"epoch"`
}

// defaults returns a Config holding every default; paths stay relative until
// the file's directory is known.
func defaults() *Config {
	return &Config{
		Node:        Node{Listen: netip.MustParseAddrPort(DefaultListen), Status: netip.MustParseAddrPort(DefaultStatus)},
		TLS:         TLS{Cert: DefaultCert, Key: DefaultKey},
		Snapshot:    Snapshot{MinInterval: DefaultMinInterval, Retention: snapshot.DefaultRetention()},
		Admin:       Admin{Socket: DefaultAdminSocket},
		Replication: Replication{Bandwidth: DefaultBandwidth, LagThreshold: DefaultLagThreshold},
		Notify:      Notify{Mode: DefaultNotifyMode, Interval: DefaultNotifyInterval},
		Failover:    Failover{Heartbeat: DefaultHeartbeat, Timeout: DefaultTimeout, Divergence: DefaultDivergence, CheckFailures: DefaultCheckFailures},
		State:       State{Role: DefaultRole},
	}
}

// DatasetSection is the section name of the dataset called name.
func DatasetSection(name string) string { return fmt.Sprintf("dataset %q", name) }

// Line returns the line of section's key in the file the Config was parsed
// from, the section header's line when the key is absent, or 0 when neither
// is known (including for a Config built in code). Diagnostics use it to
// point at the place to fix.
func (c *Config) Line(section, key string) int {
	if c.src == nil {
		return 0
	}
	return c.src.line(section, key)
}

// File is the name the Config was parsed from ("" when built in code).
func (c *Config) File() string {
	if c.src == nil {
		return ""
	}
	return c.src.file
}

// written reports whether section's key appears in the file.
func (c *Config) written(section, key string) bool {
	return c.src != nil && c.src.keys[section][key] > 0
}
