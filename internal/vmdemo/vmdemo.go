// Package vmdemo is `make demo VM=1`: the story of the host demo
// (test/demo) told on two qemu guests with Debian's stock kernel and real
// OpenZFS 2.3 (the VM tier's images, internal/vmtest). Hosts a and b are the
// guests; each guest's NIC is a tap device on the rig's switch, where
// client C's namespace and the witness address are too, so C reaches the
// floating address over a real L2 segment and a's cable can be pulled from
// outside. The driver on this machine works the guests through guestexec
// (a small HTTP command server, built here and shipped on the share disk).
package vmdemo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/demotext"
	"github.com/flockerha/flocker/internal/vmtest"
)

// Options configures Run.
type Options struct {
	Images *vmtest.Images
	// GuestExec is a static guestexec binary; when empty Run builds one
	// with the go tool.
	GuestExec string
	Log       *slog.Logger // the rig's and the VM harness's own log
}

// Summary is what Run measured.
type Summary struct {
	Boot        time.Duration   // qemu start -> both guests answer
	FirstSync   time.Duration   // agents started -> beta's replica holds the first file
	Lags        []time.Duration // write on alpha -> visible on beta, sorted
	Failover    time.Duration   // a killed and cut off -> C served by beta
	Answered    int             // C's requests answered
	NotAnswered int
	Stash       string // the stash holding alpha's divergent write
	Total       time.Duration
}

// Median and Max of the lags.
func (s Summary) Median() time.Duration { return s.Lags[len(s.Lags)/2] }
func (s Summary) Max() time.Duration    { return s.Lags[len(s.Lags)-1] }

const (
	configPath     = "/etc/flocker/flocker.ini"
	agentLog       = "/var/log/flocker-agent.log"
	agentPID       = "/run/flocker-agent.pid"
	httpdPID       = "/run/httpd.pid"
	servicePort    = 8080
	servedFile     = "service.txt"
	servedBefore   = "served from the replicated dataset\n"
	afterContent   = "written on beta after the failover\n"
	offlineFile    = "written-while-cut-off.txt"
	offlineContent = "written on alpha while its cable was out\n"
	clientEvery    = 200 * time.Millisecond
	// clientTimeout is C's patience per request: the host demo's 1 s is
	// tight for emulated guests on a busy machine.
	clientTimeout = 2 * time.Second
	// [failover] timing for guests in software emulation on a busy
	// machine: they stall for a second or more at times, and a master
	// that hears neither its peer nor the witness for (timeout -
	// heartbeat)/2 fences itself, so the host demo's 100ms/2s would fence
	// it over and over.
	heartbeat       = "500ms"
	failoverTimeout = "8s"
)

var vip = netip.MustParsePrefix("192.0.2.100/24")

// script is every guest's /share/run.sh: load ZFS, then hand the guest to
// the driver until it says exit.
const script = `set -eu
modprobe zfs
mkdir -p /etc/flocker /var/log /usr/bin
# OpenZFS mounts a snapshot under .zfs/snapshot by running /usr/bin/env
# mount: the image has env in /bin only.
[ -e /usr/bin/env ] || ln -s /bin/env /usr/bin/env
: >/var/log/flocker-agent.log
# The agent's log also goes to the console, which outlives the network:
# Run prints the console's end when the story fails.
tail -F /var/log/flocker-agent.log 2>/dev/null | sed 's/^/agent: /' >/dev/console &
exec /share/guestexec -listen "${FLOCKER_VM_IP%/*}:9200"
`

// Run tells the story on w and returns what it measured. It removes
// everything it made (guests, taps, namespaces) before it returns.
func Run(ctx context.Context, w io.Writer, opts Options) (sum Summary, err error) {
	out := &demotext.SyncWriter{W: w}
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(out, "\n[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
		if err == nil {
			fmt.Fprintf(out, "\n[%5.1fs] cleaned up: agents stopped (SIGTERM, waited), guests powered off, taps and namespaces removed\n", time.Since(start).Seconds())
		}
	}()

	step("the network: a switch (a bridge in a namespace of its own, the witness address %s on it),", "192.0.2.254")
	fmt.Fprintln(out, "  client C in a namespace cabled to it, and one tap device per guest plugged into it")
	step("two qemu guests boot (software emulation): Debian's kernel %s, OpenZFS %s, this checkout's flocker", opts.Images.KernelRelease, opts.Images.ZFSVersion)
	cl, err := Boot(ctx, opts, out)
	if err != nil {
		return sum, err
	}
	closers = append(closers, func() error { return cl.Close(err != nil) })
	seg, a, b := cl.seg, cl.A, cl.B
	guests := []*guest{a, b}
	sum.Boot = cl.BootTime
	fmt.Fprintf(out, "  C is %v; guests a (%s) and b (%s); the floating address is %v\n", seg.net.C.IPv4.Addr(), a.ip, b.ip, vip.Addr())
	for _, g := range guests {
		res, err := g.sh(ctx, "uname -r; zfs version | head -1")
		if err != nil {
			return sum, err
		}
		fmt.Fprintf(out, "  %s answers: %s\n", g.name, strings.ReplaceAll(strings.TrimSpace(res), "\n", ", "))
	}
	fmt.Fprintf(out, "  both guests up and ZFS loaded %v after qemu started\n", sum.Boot.Round(100*time.Millisecond))

	step("a makes pool tank and dataset tank/app, b makes pool backup (a whole virtio disk each); each host")
	fmt.Fprintln(out, "  is configured with flocker init, then flocker trust with the other's fingerprint")
	if _, err := a.sh(ctx, "zpool create -f tank /dev/disk/by-id/virtio-pool0 && zfs create tank/app"); err != nil {
		return sum, err
	}
	if _, err := b.sh(ctx, "zpool create -f backup /dev/disk/by-id/virtio-pool0"); err != nil {
		return sum, err
	}
	prints := map[*guest]string{}
	peer := map[*guest]*guest{a: b, b: a}
	for _, g := range guests {
		p := peer[g]
		res, err := g.sh(ctx, fmt.Sprintf("flocker init --config %s --name %s --listen %s:7946 --peer-name %s --peer-address %s:7946 --role %s --dataset app=%s --vip %s --interface eth0 2>/dev/null",
			configPath, g.node, g.ip, p.node, p.ip, g.role, g.zfs, vip))
		if err != nil {
			return sum, err
		}
		prints[g] = strings.TrimSpace(res)
	}
	for _, g := range guests {
		p := peer[g]
		if _, err := g.sh(ctx, fmt.Sprintf("flocker trust --config %s %s", configPath, prints[p])); err != nil {
			return sum, err
		}
		keys := []struct {
			section string
			kv      []string
		}{
			{"node", []string{"status", g.ip + ":9946"}},
			{"peer", []string{"status", p.ip + ":9946"}},
			{`dataset "app"`, []string{
				"start", fmt.Sprintf("cd %s && busybox httpd -f -p %d -h %s & echo $! > %s", g.mountpoint, servicePort, g.mountpoint, httpdPID),
				"stop", fmt.Sprintf("if [ -f %[1]s ]; then kill $(cat %[1]s) 2>/dev/null; rm -f %[1]s; fi; true", httpdPID),
				"check", fmt.Sprintf("timeout 2 busybox wget -q -O /dev/null http://127.0.0.1:%d/flocker-check.txt", servicePort),
				"probe", fmt.Sprintf("tcp:%d", servicePort),
			}},
			{"failover", []string{"heartbeat", heartbeat, "timeout", failoverTimeout, "witness", "192.0.2.254"}},
		}
		for _, k := range keys {
			if err := g.setKeys(ctx, k.section, k.kv...); err != nil {
				return sum, err
			}
		}
	}
	for _, g := range guests {
		if res, err := g.sh(ctx, "ping -c 3 -W 2 192.0.2.254"); err != nil {
			return sum, fmt.Errorf("the witness does not answer %s: %w: %s", g.name, err, res)
		}
	}
	for _, g := range guests {
		fmt.Fprintf(out, "  %-5s (%s) on guest %s %s:7946: dataset %s\n", g.node, g.role, g.name, g.ip, g.zfs)
		fmt.Fprintf(out, "        fingerprint %s\n", prints[g])
	}
	fmt.Fprintf(out, "  the service: busybox httpd on port %d serving the dataset, started by the dataset's start hook\n", servicePort)
	fmt.Fprintf(out, "  on the master only, behind the floating address %v; [failover] heartbeat %s, timeout %s, witness 192.0.2.254\n",
		vip.Addr(), heartbeat, failoverTimeout)
	for _, g := range guests {
		res, code, err := g.flocker(ctx, "check --config "+configPath)
		if err != nil {
			return sum, err
		}
		if code != 0 {
			return sum, fmt.Errorf("flocker check on %s: exit %d: %s", g.node, code, res)
		}
		fmt.Fprintf(out, "  flocker check on %s:\n%s", g.node, demotext.Indent(res, "    "))
	}

	step("flocker probe on alpha: what this kernel and this ZFS offer flocker")
	res, err := a.sh(ctx, "flocker probe --json --mountpoint "+a.mountpoint+" 2>/dev/null")
	if err != nil {
		return sum, err
	}
	summary, err := demotext.SummarizeProbe(res)
	if err != nil {
		return sum, fmt.Errorf("probe on alpha: %w", err)
	}
	fmt.Fprint(out, demotext.Indent(summary, "  "))

	step("alpha writes some files, then both agents start (flocker agent --config %s, one per guest)", configPath)
	if _, err := a.sh(ctx, fmt.Sprintf(`set -e
mkdir -p %[1]s/docs
for i in $(seq 0 19); do
	n=0; while [ $n -lt 200 ]; do echo "line $i of file $i"; n=$((n+1)); done >%[1]s/docs/file-$(printf %%02d $i).txt
done
echo ok >%[1]s/flocker-check.txt
printf '%%s' '%[2]s' >%[1]s/%[3]s`, a.mountpoint, servedBefore, servedFile)); err != nil {
		return sum, err
	}
	agentsStart := time.Now()
	for _, g := range []*guest{b, a} {
		if err := startAgent(ctx, g); err != nil {
			return sum, err
		}
	}
	if err := b.wait(ctx, b.mountpoint+"/"+servedFile, servedBefore, 3*time.Minute); err != nil {
		return sum, err
	}
	sum.FirstSync = time.Since(agentsStart)
	// The replica is mounted before the receive is logged.
	r, err := waitRecord(ctx, b, "received", time.Minute)
	if err != nil {
		return sum, err
	}
	fmt.Fprintf(out, "  first sync: a full send of %s (%s) over QUIC; beta's replica holds %s %v after the agents started\n",
		r.Str("target"), demotext.Human(r.Num("bytes")), servedFile, sum.FirstSync.Round(time.Millisecond))
	if recs, err := a.agentLog(ctx); err == nil {
		if r, ok := firstRecord(recs, "watching"); ok {
			fmt.Fprintf(out, "  alpha watches %s with the %s tier ([notify] mode = auto picked it)\n", r.Str("mountpoint"), r.Str("tier"))
		}
	}
	t0 := time.Now()
	if _, err := waitServed(ctx, seg, time.Minute); err != nil {
		return sum, err
	}
	fmt.Fprintf(out, "  alpha holds %v and its start hook started the service: C is served %s after %v\n", vip.Addr(), servedFile, time.Since(t0).Round(time.Millisecond))

	step("client C requests %s through %v every %v from now on (it prints only changes)", servedFile, vip.Addr(), clientEvery)
	c := demotext.StartClient(ctx, out, start, clientEvery, func(ctx context.Context) (string, error) {
		return seg.get(ctx, netip.AddrPortFrom(vip.Addr(), servicePort), servedFile, clientTimeout)
	})
	closers = append(closers, func() error { c.Stop(); return nil })

	step("write on alpha, read it back on beta's replica: the lag, from alpha's write() returning to beta seeing the file")
	fmt.Fprintln(out, "  (both ends timed on this machine through guestexec: a write request to a, a wait request to b)")
	for i := range 5 {
		name := fmt.Sprintf("note-%d.txt", i)
		content := fmt.Sprintf("note %d written on alpha at %s\n", i, time.Now().Format(time.RFC3339Nano))
		seen := make(chan error, 1)
		var seenAt time.Time
		go func() {
			err := b.wait(ctx, b.mountpoint+"/"+name, content, 2*time.Minute)
			seenAt = time.Now()
			seen <- err
		}()
		if err := a.write(ctx, a.mountpoint+"/"+name, content); err != nil {
			return sum, err
		}
		wrote := time.Now()
		if err := <-seen; err != nil {
			return sum, err
		}
		lag := seenAt.Sub(wrote)
		sum.Lags = append(sum.Lags, lag)
		fmt.Fprintf(out, "  %s: visible in beta's replica after %v\n", name, lag.Round(time.Millisecond))
		time.Sleep(300 * time.Millisecond)
	}
	slices.Sort(sum.Lags)
	fmt.Fprintf(out, "  write-to-replica lag: median %v, max %v over %d writes\n", sum.Median().Round(time.Millisecond),
		sum.Max().Round(time.Millisecond), len(sum.Lags))
	if recs, err := a.agentLog(ctx); err == nil {
		var cycle []float64
		taken := 0
		for _, r := range recs {
			switch {
			case r.Msg() == "replicated" && r.Str("kind") == "incremental":
				cycle = append(cycle, r.Num("lag_ms"))
			case r.Msg() == "snapshot taken":
				taken++
			}
		}
		fmt.Fprintf(out, "  alpha so far: %d snapshots taken, %d incremental transfers acknowledged by beta\n", taken, len(cycle))
		if len(cycle) > 0 {
			slices.Sort(cycle)
			fmt.Fprintf(out, "  alpha's own log: from the notifier's change report to beta's ack, median %.0f ms, max %.0f ms\n",
				cycle[len(cycle)/2], cycle[len(cycle)-1])
		}
	}
	before, err := seg.get(ctx, netip.AddrPortFrom(vip.Addr(), servicePort), "note-4.txt", clientTimeout)
	if err != nil {
		return sum, fmt.Errorf("client C reading note-4.txt from alpha: %w", err)
	}
	_, aEpoch, err := a.state(ctx)
	if err != nil {
		return sum, err
	}

	step("host a loses power: its agent and service are killed (SIGKILL), then its cable is pulled")
	killed := time.Now()
	if _, err := a.sh(ctx, fmt.Sprintf("kill -KILL $(cat %s); kill -KILL $(cat %s)", agentPID, httpdPID)); err != nil {
		return sum, err
	}
	if err := seg.setCable(a.name, false); err != nil {
		return sum, err
	}
	if _, err := waitServed(ctx, seg, 2*time.Minute); err != nil {
		return sum, fmt.Errorf("failover: %w", err)
	}
	sum.Failover = time.Since(killed)
	if recs, err := b.agentLog(ctx); err == nil {
		for _, r := range recs {
			if r.Msg() == "failover decision" {
				fmt.Fprintf(out, "  beta's log: %s\n", r.Str("note"))
			}
		}
	}
	bRole, bEpoch, err := waitRole(ctx, b, "master", aEpoch+1)
	if err != nil {
		return sum, err
	}
	if held, err := b.holdsVIP(ctx); err != nil || !held {
		return sum, fmt.Errorf("beta does not hold %v after the failover (err %v)", vip.Addr(), err)
	}
	fmt.Fprintf(out, "  beta is %s at epoch %d and holds %v; failover took %v (kill -> C's first answer from beta)\n",
		bRole, bEpoch, vip.Addr(), sum.Failover.Round(time.Millisecond))
	after, err := seg.get(ctx, netip.AddrPortFrom(vip.Addr(), servicePort), "note-4.txt", clientTimeout)
	if err != nil {
		return sum, fmt.Errorf("client C reading note-4.txt from beta: %w", err)
	}
	if after != before {
		return sum, fmt.Errorf("client C got %q for note-4.txt from beta, alpha had served %q", after, before)
	}
	fmt.Fprintf(out, "  C reads note-4.txt through %v from beta: the replicated content, same as alpha served:\n    %s", vip.Addr(), after)
	if err := b.write(ctx, b.mountpoint+"/after.txt", afterContent); err != nil {
		return sum, err
	}
	fmt.Fprintln(out, "  beta, now master, takes a new write: after.txt")

	step("host a comes back: its cable goes back in, and before its agent starts a local program writes")
	fmt.Fprintln(out, "  to its dataset, a write beta never saw, so alpha's history and beta's diverge")
	if err := seg.setCable(a.name, true); err != nil {
		return sum, err
	}
	if err := waitUp(ctx, a, cl.vmEnded, time.Minute); err != nil {
		return sum, err
	}
	if err := a.write(ctx, a.mountpoint+"/"+offlineFile, offlineContent); err != nil {
		return sum, err
	}
	// zpool sync: the write reaches a synced transaction group, where
	// the agent's divergence check (the dataset's `written`) sees it.
	if _, err := a.sh(ctx, "sync; zpool sync tank"); err != nil {
		return sum, err
	}
	aLogFrom := 0
	if recs, err := a.agentLog(ctx); err == nil {
		aLogFrom = len(recs)
	}
	if err := startAgent(ctx, a); err != nil {
		return sum, err
	}
	_, aEpoch, err = waitRole(ctx, a, "slave", bEpoch)
	if err != nil {
		return sum, err
	}
	if err := a.wait(ctx, a.mountpoint+"/after.txt", afterContent, 2*time.Minute); err != nil {
		return sum, err
	}
	fmt.Fprintf(out, "  alpha demoted itself: slave at epoch %d; beta's after.txt replicated to it\n", aEpoch)
	recs, err := a.agentLog(ctx)
	if err != nil {
		return sum, err
	}
	for _, r := range recs[min(aLogFrom, len(recs)):] {
		switch r.Msg() {
		case "failover decision":
			fmt.Fprintf(out, "  alpha's log: %s\n", r.Str("note"))
		case "divergence":
			fmt.Fprintf(out, "  alpha's log: divergence after %s, winner %s, decided by %s\n", r.Str("base"), r.Str("winner"), r.Str("decided_by"))
		case "divergent history stashed":
			fmt.Fprintf(out, "  alpha's log: divergent history stashed as %s\n", r.Str("stash"))
		}
	}
	if _, code, err := a.run(ctx, "test -e "+a.mountpoint+"/"+offlineFile); err != nil || code == 0 {
		return sum, fmt.Errorf("alpha's replica still holds %s (err %v): it should follow beta", offlineFile, err)
	}
	res, code, err := a.flocker(ctx, "stash list --config "+configPath)
	if err != nil || code != 0 {
		return sum, fmt.Errorf("flocker stash list on alpha: exit %d, %v: %s", code, err, res)
	}
	fmt.Fprintf(out, "  flocker stash list on alpha:\n%s", demotext.Indent(res, "    "))
	found, err := a.sh(ctx, fmt.Sprintf(`for s in $(zfs list -H -o name -r -d 1 tank/flocker-stash | grep -v '^tank/flocker-stash$'); do
	mp=$(zfs get -H -o value mountpoint "$s")
	if [ "$(cat "$mp/%s" 2>/dev/null)" = "%s" ]; then echo "$s"; fi
done`, offlineFile, strings.TrimSuffix(offlineContent, "\n")))
	if err != nil {
		return sum, err
	}
	sum.Stash = strings.TrimSpace(found)
	if sum.Stash == "" || strings.Contains(sum.Stash, "\n") {
		return sum, fmt.Errorf("want one stash of alpha holding %s, found %q", offlineFile, sum.Stash)
	}
	fmt.Fprintf(out, "  %s in stash %s: %s", offlineFile, sum.Stash, offlineContent)
	for _, g := range guests {
		held, err := g.holdsVIP(ctx)
		if err != nil {
			return sum, err
		}
		if held != (g == b) {
			return sum, fmt.Errorf("%v held by %s: %v; want beta only", vip.Addr(), g.node, held)
		}
	}
	fmt.Fprintf(out, "  %v is held by beta only\n", vip.Addr())

	step("flocker status, from each side")
	for _, g := range []*guest{b, a} {
		res, code, err := g.flocker(ctx, "status --config "+configPath)
		if err != nil {
			return sum, err
		}
		fmt.Fprintf(out, "  flocker status on %s (exit %d):\n%s", g.node, code, demotext.Indent(res, "    "))
	}
	c.Stop()
	sum.Answered, sum.NotAnswered = c.Counts()
	sum.Total = time.Since(start)

	step("summary")
	fmt.Fprintf(out, "  guests: Debian %s, OpenZFS %s, in qemu software emulation; boot to ZFS loaded %v\n",
		opts.Images.KernelRelease, opts.Images.ZFSVersion, sum.Boot.Round(100*time.Millisecond))
	fmt.Fprintf(out, "  replication lag (write on the master -> visible on the replica): median %v, max %v\n",
		sum.Median().Round(time.Millisecond), sum.Max().Round(time.Millisecond))
	fmt.Fprintf(out, "  failover time (host a killed -> C served by beta through %v): %v\n", vip.Addr(), sum.Failover.Round(time.Millisecond))
	fmt.Fprintf(out, "  client C: %d requests answered, %d not answered\n", sum.Answered, sum.NotAnswered)
	fmt.Fprintf(out, "  alpha returned as slave at epoch %d; its divergent write kept in %s\n", aEpoch, sum.Stash)
	fmt.Fprintf(out, "  demo wall time so far %v\n", sum.Total.Round(100*time.Millisecond))
	return sum, nil
}

// waitUp waits until g's guestexec answers, or the VM run ends.
func waitUp(ctx context.Context, g *guest, vmEnded <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !g.ping(ctx) {
		select {
		case <-vmEnded:
			return fmt.Errorf("guest %s: the VM run ended before it answered", g.name)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("guest %s: guestexec did not answer within %v", g.name, timeout)
		}
	}
	return nil
}

func startAgent(ctx context.Context, g *guest) error {
	level := ""
	if g.agentLevel != "" {
		level = " --log-level " + g.agentLevel
	}
	_, err := g.sh(ctx, fmt.Sprintf("flocker agent --config %s --log-format json%s </dev/null >>%s 2>&1 & echo $! >%s",
		configPath, level, agentLog, agentPID))
	return err
}

// stopAgent sends SIGTERM and waits up to a minute for the agent (and so
// its zfs children) to exit; nothing to do when it is not running.
func stopAgent(ctx context.Context, g *guest) error {
	out, err := g.sh(ctx, fmt.Sprintf(`pid=$(cat %s 2>/dev/null) || exit 0
kill -TERM "$pid" 2>/dev/null || exit 0
end=$(($(date +%%s) + 60))
while kill -0 "$pid" 2>/dev/null; do
	[ "$(date +%%s)" -lt "$end" ] || { echo "agent $pid still running after 60 s"; exit 1; }
	sleep 0.1
done`, agentPID))
	if err != nil {
		return fmt.Errorf("stopping %s's agent: %w: %s", g.node, err, out)
	}
	return nil
}

// waitRole polls g's persisted [state] until it records role at an epoch
// of at least epoch.
func waitRole(ctx context.Context, g *guest, role string, epoch int) (string, int, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, e, err := g.state(ctx)
		if err != nil {
			return "", 0, err
		}
		if r == role && e >= epoch {
			return r, e, nil
		}
		if time.Now().After(deadline) {
			return r, e, fmt.Errorf("%s is %s at epoch %d, want %s at epoch >= %d", g.node, r, e, role, epoch)
		}
		select {
		case <-ctx.Done():
			return r, e, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitServed(ctx context.Context, seg *segment, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		body, err := seg.get(ctx, netip.AddrPortFrom(vip.Addr(), servicePort), servedFile, clientTimeout)
		if err == nil && body == servedBefore {
			return body, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("client C not served %s through %v within %v: %v", servedFile, vip.Addr(), timeout, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitRecord polls g's agent log for a record with msg.
func waitRecord(ctx context.Context, g *guest, msg string, timeout time.Duration) (agentpair.Record, error) {
	deadline := time.Now().Add(timeout)
	for {
		recs, err := g.agentLog(ctx)
		if err != nil {
			return nil, err
		}
		if r, ok := firstRecord(recs, msg); ok {
			return r, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s's agent log has no %q record after %v", g.node, msg, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func firstRecord(recs []agentpair.Record, msg string) (agentpair.Record, bool) {
	for _, r := range recs {
		if r.Msg() == msg {
			return r, true
		}
	}
	return nil, false
}

func tailRecords(recs []agentpair.Record, n int) string {
	var b strings.Builder
	for _, r := range recs[max(len(recs)-n, 0):] {
		fmt.Fprintf(&b, "  %s %s %v\n", r.Str("level"), r.Msg(), map[string]any(r))
	}
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func firstLine(s string, max int) string { return demotext.FirstLine(s, max) }
