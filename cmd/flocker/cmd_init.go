package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/atomicfile"
	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport/pki"
)

type initFlags struct {
	config, name, listen, peerName, peerAddress, role string
	dataset, vip, iface, cert, key                    string
	force                                             bool
}

func init() {
	register(command{
		name:    "init",
		summary: "write this node's config, key and certificate, and print its fingerprint",
		usage: "--name NAME --peer-name NAME --peer-address IP:PORT [--config PATH] [--listen IP:PORT]\n" +
			"       [--role master|slave] [--dataset NAME=POOL/DATASET [--vip CIDR --interface IF]]\n" +
			"       [--cert PATH] [--key PATH] [--force]",
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			var f initFlags
			fs.StringVar(&f.config, "config", config.DefaultPath, "config file to write")
			fs.StringVar(&f.name, "name", "", "this node's name (required)")
			fs.StringVar(&f.listen, "listen", config.DefaultListen, "QUIC address the peer connects to, IP:PORT")
			fs.StringVar(&f.peerName, "peer-name", "", "the other node's name (required)")
			fs.StringVar(&f.peerAddress, "peer-address", "", "the other node's IP:PORT (required)")
			fs.StringVar(&f.role, "role", string(config.DefaultRole), "initial role: master or slave")
			fs.StringVar(&f.dataset, "dataset", "", "protect a dataset: NAME=POOL/DATASET")
			fs.StringVar(&f.vip, "vip", "", "floating address of --dataset, CIDR")
			fs.StringVar(&f.iface, "interface", "", "network interface for --vip")
			fs.StringVar(&f.cert, "cert", "", "certificate file (default "+config.DefaultCert+" beside the config)")
			fs.StringVar(&f.key, "key", "", "key file (default "+config.DefaultKey+" beside the config)")
			fs.BoolVar(&f.force, "force", false, "replace an existing config, key or certificate")
			return func(_ context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return fail(e, "init", fmt.Errorf("%w: unexpected argument %q", errUsage, args[0]))
				}
				return runInit(e, f, time.Now())
			}
		},
	})
}

// initPlan is what init will write, worked out and checked before anything
// is written.
type initPlan struct {
	configPath, certPath, keyPath string
	view                          configView
}

// configView feeds the config template.
type configView struct {
	Created                                   string
	Name, Listen, PeerName, PeerAddress, Role string
	Cert, Key                                 string // as the config names them
	Dataset, ZFS, VIP, Interface              string
	Status, Heartbeat, Timeout, Mode          string // the defaults, written out
	Interval                                  string
}

func runInit(e *env, f initFlags, now time.Time) int {
	plan, err := planInit(f)
	if err != nil {
		return fail(e, "init", err)
	}
	if err := checkOverwrite(plan, f.force); err != nil {
		return fail(e, "init", err)
	}
	creds, err := pki.Generate(f.name, now)
	if err != nil {
		return fail(e, "init", err)
	}
	plan.view.Created = now.UTC().Format(time.RFC3339)
	text, err := renderConfig(plan.view)
	if err != nil {
		return fail(e, "init", err)
	}
	// The flags were checked one by one; this checks what they make together.
	if _, err := config.Decode(plan.configPath, text); err != nil {
		return fail(e, "init", fmt.Errorf("the config made from these flags does not parse:\n%w", err))
	}
	for _, dir := range []string{filepath.Dir(plan.configPath), filepath.Dir(plan.certPath), filepath.Dir(plan.keyPath)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fail(e, "init", fmt.Errorf("creating %s: %w", dir, err))
		}
	}
	// Stage all three files, then put them in place: a failure while
	// staging leaves every old file as it was.
	staged, err := creds.Stage(plan.certPath, plan.keyPath)
	if err != nil {
		return fail(e, "init", err)
	}
	cfg, err := atomicfile.Stage(plan.configPath, text, config.FileMode)
	if err != nil {
		for _, p := range staged {
			p.Discard()
		}
		return fail(e, "init", err)
	}
	for _, p := range append(staged, cfg) {
		if err := p.Commit(); err != nil {
			cfg.Discard()
			for _, q := range staged {
				q.Discard()
			}
			return fail(e, "init", err)
		}
	}
	e.log.Info("wrote node credentials and config", "config", plan.configPath,
		"cert", plan.certPath, "key", plan.keyPath, "node", f.name, "role", f.role)
	fmt.Fprintln(e.stdout, creds.Fingerprint)
	fmt.Fprintf(e.stderr, "\nNext steps:\n"+
		"  1. on %s: flocker trust --config PATH %s\n"+
		"  2. here:   flocker trust --config %s <the fingerprint init printed on %s>\n",
		f.peerName, creds.Fingerprint, plan.configPath, f.peerName)
	if f.dataset == "" {
		fmt.Fprintf(e.stderr, "  3. add a [dataset \"NAME\"] section to %s (an example is in the file)\n", plan.configPath)
	}
	fmt.Fprintf(e.stderr, "  then: flocker check --config %s\n", plan.configPath)
	return exitOK
}

// planInit checks every flag, reporting all mistakes at once as a usage
// error, and works out the paths.
func planInit(f initFlags) (*initPlan, error) {
	var bad []string
	badf := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	required := func(flag, v string) bool {
		if v == "" {
			badf("--%s is required", flag)
		}
		return v != ""
	}
	if required("name", f.name) {
		if err := config.CheckName(f.name); err != nil {
			badf("--name: %v", err)
		}
	}
	if required("peer-name", f.peerName) {
		if err := config.CheckName(f.peerName); err != nil {
			badf("--peer-name: %v", err)
		} else if f.peerName == f.name {
			badf("--peer-name: %q is this node's own name", f.peerName)
		}
	}
	if required("peer-address", f.peerAddress) {
		if _, err := config.ParsePeerAddress(f.peerAddress); err != nil {
			badf("--peer-address: %v", err)
		}
	}
	if _, err := config.ParseAddrPort(f.listen); err != nil {
		badf("--listen: %v", err)
	}
	if _, err := config.ParseRole(f.role); err != nil {
		badf("--role: %v", err)
	}
	v := configView{Name: f.name, Listen: f.listen, PeerName: f.peerName, PeerAddress: f.peerAddress, Role: f.role,
		VIP: f.vip, Interface: f.iface, Status: config.DefaultStatus, Heartbeat: config.DefaultHeartbeat.String(),
		Timeout: config.DefaultTimeout.String(), Mode: config.DefaultNotifyMode,
		Interval: config.DefaultNotifyInterval.String()}
	if f.dataset != "" {
		name, zfs, ok := strings.Cut(f.dataset, "=")
		if !ok {
			badf("--dataset: %q: want NAME=POOL/DATASET, e.g. app=tank/app", f.dataset)
		} else {
			if err := config.CheckName(name); err != nil {
				badf("--dataset: %v", err)
			}
			if err := snapshot.ValidateDataset(zfs); err != nil {
				badf("--dataset: %v", err)
			}
			v.Dataset, v.ZFS = name, zfs
		}
	}
	switch {
	case (f.vip != "" || f.iface != "") && f.dataset == "":
		badf("--vip and --interface belong to a --dataset")
	case f.vip != "" && f.iface == "":
		badf("--vip needs --interface")
	case f.iface != "" && f.vip == "":
		badf("--interface needs --vip")
	}
	if f.vip != "" {
		if _, err := config.ParseVIP(f.vip); err != nil {
			badf("--vip: %v", err)
		}
	}
	if f.iface != "" {
		if err := config.CheckInterface(f.iface); err != nil {
			badf("--interface: %v", err)
		}
	}
	if f.config == "" {
		badf("--config is empty")
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s", errUsage, strings.Join(bad, "\n  "))
	}

	p := &initPlan{}
	var err error
	if p.configPath, err = filepath.Abs(f.config); err != nil {
		return nil, fmt.Errorf("config path: %w", err)
	}
	dir := filepath.Dir(p.configPath)
	// Defaults are written relative, so the config and its credentials can
	// move together; a path given on the command line is made absolute,
	// since the config resolves relative paths against its own directory,
	// not the working directory init ran in.
	p.certPath, v.Cert = filepath.Join(dir, config.DefaultCert), config.DefaultCert
	if f.cert != "" {
		if p.certPath, err = filepath.Abs(f.cert); err != nil {
			return nil, fmt.Errorf("cert path: %w", err)
		}
		v.Cert = p.certPath
	}
	p.keyPath, v.Key = filepath.Join(dir, config.DefaultKey), config.DefaultKey
	if f.key != "" {
		if p.keyPath, err = filepath.Abs(f.key); err != nil {
			return nil, fmt.Errorf("key path: %w", err)
		}
		v.Key = p.keyPath
	}
	if p.certPath == p.keyPath || p.certPath == p.configPath || p.keyPath == p.configPath {
		return nil, fmt.Errorf("%w: the config (%s), certificate (%s) and key (%s) must be three different files",
			errUsage, p.configPath, p.certPath, p.keyPath)
	}
	p.view = v
	return p, nil
}

// checkOverwrite refuses, before anything is written, to replace any of the
// three files unless forced; a directory in the way is refused even then.
func checkOverwrite(p *initPlan, force bool) error {
	var exist []string
	for _, path := range []string{p.configPath, p.keyPath, p.certPath} {
		fi, err := os.Lstat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("checking %s: %w", path, err)
		case fi.IsDir():
			return fmt.Errorf("%s is a directory", path)
		}
		exist = append(exist, path)
	}
	if len(exist) > 0 && !force {
		return fmt.Errorf("refusing to overwrite %s (--force replaces them, and a new key means the peer must trust the new fingerprint)",
			strings.Join(exist, ", "))
	}
	return nil
}

func renderConfig(v configView) ([]byte, error) {
	var b strings.Builder
	if err := configTemplate.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("rendering config: %w", err)
	}
	return []byte(b.String()), nil
}

// configTemplate is the commented config init writes. Every value in it
// passed the same checks as the file's, so none needs quoting.
var configTemplate = template.Must(template.New("flocker.ini").Parse(`; flocker node configuration, written by 'flocker init' at {{.Created}}.
; Check it with 'flocker check --config PATH' after every edit.
;
; Lines starting with ';' or '#' are comments; an inline comment needs a space
; before its ';' or '#'. Sections and keys are case-sensitive.

; [node] is this host: name is how the peer and the logs know it; listen is
; the QUIC (UDP) address the peer connects to; status serves /status and
; /metrics over HTTP, on loopback because nothing there is authenticated.
[node]
name = {{.Name}}
listen = {{.Listen}}
status = {{.Status}}

; [peer] is the other host. fingerprint pins its certificate: 'flocker trust'
; adds it, from the fingerprint 'flocker init' printed there.
[peer]
name = {{.PeerName}}
address = {{.PeerAddress}}

; [tls] names this node's key and self-signed certificate (a relative path is
; taken from this file's directory). The key must stay mode 0600.
[tls]
cert = {{.Cert}}
key = {{.Key}}

; [admin] token_file: a file holding the token operator commands present to
; the agent (optional).
; [admin]
; token_file = admin.token

; [dataset "NAME"]: one section per protected dataset. NAME is the same on
; both hosts; zfs is this host's dataset (the peer's may differ). vip is the
; floating address the master holds, on interface. start and stop run the
; service; check is a health probe (exit 0 = healthy). All three are shell
; commands.
{{- if .Dataset}}
[dataset "{{.Dataset}}"]
zfs = {{.ZFS}}
{{- if .VIP}}
vip = {{.VIP}}
interface = {{.Interface}}
{{- end}}
; start = systemctl start {{.Dataset}}
; stop = systemctl stop {{.Dataset}}
; check = true
{{- else}}
; [dataset "app"]
; zfs = tank/app
; vip = 192.0.2.100/24
; interface = eth0
; start = systemctl start app
; stop = systemctl stop app
; check = true
{{- end}}

; [snapshot]: min_interval is the least time between two snapshots of a
; dataset (0: snapshot every change at once); retention keeps flocker's own
; snapshots by age, PERIOD:EVERY rules, shortest first (never the newest one
; or the one replication continues from).
; [snapshot]
; min_interval = 0
; retention = 1m:all, 1h:1m, 1d:1h, 1w:1d

; [replication] bandwidth caps each dataset's send rate (0: no cap), e.g. 50MiB.
; [replication]
; bandwidth = 0

; [notify] mode: how the agent learns that a dataset changed. auto picks the
; best tier this kernel offers ('flocker probe' lists them); fentry, kprobe,
; tracepoint, block, fanotify or timer force one. interval is the timer
; tier's period (it also runs beside the others as a safety net).
[notify]
mode = {{.Mode}}
interval = {{.Interval}}

; [failover]: the peer sends a heartbeat every heartbeat and is declared dead
; after timeout without one; timeout must be at least 3 x heartbeat, so one
; lost datagram cannot fail over a live peer. witness is an optional third
; host's IP: a slave promotes only if it reaches it, and a master that loses
; both peer and witness steps down.
[failover]
heartbeat = {{.Heartbeat}}
timeout = {{.Timeout}}
; witness = 192.0.2.1

; [state] is written by the agent: do not edit it while the agent runs.
[state]
role = {{.Role}}
epoch = 0
`))
