package rig_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// peer is something that can send: a host or the switch (witness).
type peer interface {
	Do(func() error) error
}

// echo is a UDP echo server inside a namespace. Its reply carries the
// request and the source address the server saw, so a test knows the packet
// really came from the sending host's address across the segment.
type echo struct {
	conn net.PacketConn
	addr netip.AddrPort
}

func startEcho(t *testing.T, in peer, addr netip.Addr) *echo {
	t.Helper()
	var conn net.PacketConn
	err := in.Do(func() error {
		var err error
		conn, err = net.ListenPacket("udp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("echo server on %s: %v", addr, err)
	}
	e := &echo{conn: conn, addr: netip.MustParseAddrPort(conn.LocalAddr().String())}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			src := from.(*net.UDPAddr).AddrPort().Addr().Unmap()
			conn.WriteTo([]byte(string(buf[:n])+"|"+src.String()), from)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return e
}

// exchange sends one datagram from inside `from` to the echo server and
// checks the reply: the token came back and the server saw source src.
func exchange(from peer, src netip.Addr, to *echo, timeout time.Duration) error {
	var conn net.Conn
	err := from.Do(func() error {
		var err error
		conn, err = net.Dial("udp", to.addr.String())
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	var b [8]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte(token)); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if want := token + "|" + src.String(); string(buf[:n]) != want {
		return fmt.Errorf("reply %q, want %q", buf[:n], want)
	}
	return nil
}

// reaches retries for a while: right after a link comes back, neighbour
// resolution takes a moment (and the machine may be busy).
func reaches(from peer, src netip.Addr, to *echo) error {
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if err = exchange(from, src, to, time.Second); err == nil {
			return nil
		}
	}
	return err
}

// blocked holds when every one of several attempts goes unanswered.
func blocked(from peer, src netip.Addr, to *echo) bool {
	for range 3 {
		if exchange(from, src, to, 500*time.Millisecond) == nil {
			return false
		}
	}
	return true
}

// testNet is a network with an echo server on every host and the witness,
// for both address families.
type testNet struct {
	*rig.Network
	echo map[string]*echo // "a4", "b6", "w4", ...
}

func newTestNet(t *testing.T) *testNet {
	n := rigtest.Network(t, rig.NetworkOptions{})
	tn := &testNet{Network: n, echo: map[string]*echo{}}
	for _, h := range n.Hosts() {
		tn.echo[h.Name+"4"] = startEcho(t, h, h.IPv4.Addr())
		tn.echo[h.Name+"6"] = startEcho(t, h, h.IPv6.Addr())
	}
	tn.echo["w4"] = startEcho(t, n.Switch, n.Witness4.Addr())
	tn.echo["w6"] = startEcho(t, n.Switch, n.Witness6.Addr())
	return tn
}

func addrOf(h *rig.Host, fam string) netip.Addr {
	if fam == "6" {
		return h.IPv6.Addr()
	}
	return h.IPv4.Addr()
}

// expect checks reachability from host `from` to target ("b", "c", "w")
// over both families.
func (tn *testNet) expect(t *testing.T, from *rig.Host, target string, want bool) {
	t.Helper()
	for _, fam := range []string{"4", "6"} {
		to := tn.echo[target+fam]
		if want {
			if err := reaches(from, addrOf(from, fam), to); err != nil {
				t.Errorf("%s -> %s (%s): %v, want reachable", from, target, to.addr, err)
			}
		} else if !blocked(from, addrOf(from, fam), to) {
			t.Errorf("%s -> %s (%s): answered, want blocked", from, target, to.addr)
		}
	}
}

func TestNetworkReachability(t *testing.T) {
	tn := newTestNet(t)
	n := tn.Network
	if !strings.HasPrefix(n.A.NS.Name, "flkrig-") || n.A.NS.Path != filepath.Join(rig.NetnsDir, n.A.NS.Name) {
		t.Errorf("host a namespace %q at %q: want flkrig-* under %s", n.A.NS.Name, n.A.NS.Path, rig.NetnsDir)
	}
	for _, p := range []struct{ from, to string }{{"a", "b"}, {"b", "a"}, {"a", "c"}, {"c", "a"}, {"b", "c"}, {"c", "b"}, {"a", "w"}, {"b", "w"}, {"c", "w"}} {
		from := map[string]*rig.Host{"a": n.A, "b": n.B, "c": n.C}[p.from]
		tn.expect(t, from, p.to, true)
	}
}

// Host addresses are usable at once (no DAD) and only the host's own
// interfaces are in its namespace.
func TestHostInterfaces(t *testing.T) {
	n := rigtest.Network(t, rig.NetworkOptions{})
	for _, h := range n.Hosts() {
		links, err := h.NS.Links()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(links, []string{"eth0", "lo"}) {
			t.Errorf("%s has links %v, want [eth0 lo]", h, links)
		}
		err = h.Do(func() error {
			l, err := netlink.LinkByName(h.Interface)
			if err != nil {
				return err
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
			if err != nil {
				return err
			}
			found := map[netip.Prefix]bool{}
			for _, a := range addrs {
				ip, _ := netip.AddrFromSlice(a.IP)
				ones, _ := a.Mask.Size()
				p := netip.PrefixFrom(ip.Unmap(), ones)
				found[p] = true
				if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
					return fmt.Errorf("address %s is tentative or failed DAD (flags %#x)", p, a.Flags)
				}
			}
			for _, want := range []netip.Prefix{h.IPv4, h.IPv6} {
				if !found[want] {
					return fmt.Errorf("address %s missing (have %v)", want, addrs)
				}
			}
			dad, err := os.ReadFile("/proc/sys/net/ipv6/conf/eth0/accept_dad")
			if err != nil || strings.TrimSpace(string(dad)) != "0" {
				return fmt.Errorf("eth0 accept_dad = %q (%v), want 0 so a VIP added later is usable at once", dad, err)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	// Operators inspect a rig the iproute2 way.
	_, err := exec.LookPath("ip")
	testutil.RequireNoError(t, "ip (iproute2)", err)
	out, err := exec.Command("ip", "netns", "exec", n.B.NS.Name, "ip", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 192.0.2.2/24 ") || !strings.Contains(string(out), " 2001:db8::2/64 ") {
		t.Errorf("ip netns exec %s ip addr: %v\n%s", n.B.NS.Name, err, out)
	}
	if n.VIP4.Addr() != netip.MustParseAddr("192.0.2.100") || !rig.Subnet4.Contains(n.VIP4.Addr()) || !rig.Subnet6.Contains(n.VIP6.Addr()) {
		t.Errorf("VIPs %s %s not in %s %s", n.VIP4, n.VIP6, rig.Subnet4, rig.Subnet6)
	}
}

// A process started with Command is in the host's network namespace but
// shares this process's mount namespace: it sees the zfs-fuse mounts and can
// run zfs.
func TestCommandSeesNamespaceAndHostMounts(t *testing.T) {
	p := rigtest.Pool(t, rig.PoolOptions{Size: 128 << 20})
	ds := rigtest.Dataset(t, p, "app", nil)
	token := fmt.Sprintf("token-%d", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(ds.Mountpoint, "token"), []byte(token), 0o644); err != nil {
		t.Fatal(err)
	}
	n := rigtest.Network(t, rig.NetworkOptions{})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	script := `readlink /proc/self/ns/net; readlink /proc/self/ns/mnt; echo; cat "$1"; echo; zfs list -H -o name "$2"; tail -n +3 /proc/net/dev | cut -d: -f1`
	out, err := n.A.Command(ctx, "sh", "-c", script, "sh", filepath.Join(ds.Mountpoint, "token"), ds.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("command in host a: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 5 {
		t.Fatalf("unexpected output:\n%s", out)
	}
	var st unix.Stat_t
	if err := unix.Stat(n.A.NS.Path, &st); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("net:[%d]", st.Ino); lines[0] != want {
		t.Errorf("process network namespace %s, want host a's %s", lines[0], want)
	}
	if self, _ := os.Readlink("/proc/self/ns/mnt"); lines[1] != self {
		t.Errorf("process mount namespace %s, want ours %s (zfs-fuse mounts must stay visible)", lines[1], self)
	}
	if lines[3] != token {
		t.Errorf("read %q from the dataset inside host a, want %q", lines[3], token)
	}
	if lines[4] != ds.Name {
		t.Errorf("zfs list inside host a printed %q, want %q", lines[4], ds.Name)
	}
	var ifaces []string
	for _, l := range lines[5:] {
		ifaces = append(ifaces, strings.TrimSpace(l))
	}
	slices.Sort(ifaces)
	if !slices.Equal(ifaces, []string{"eth0", "lo"}) {
		t.Errorf("interfaces seen by the process: %v, want [eth0 lo]", ifaces)
	}
}

func TestLinkDownAndUp(t *testing.T) {
	tn := newTestNet(t)
	n := tn.Network
	tn.expect(t, n.A, "b", true)
	if err := n.A.LinkDown(); err != nil {
		t.Fatal(err)
	}
	tn.expect(t, n.A, "b", false)
	tn.expect(t, n.A, "c", false)
	tn.expect(t, n.A, "w", false)
	tn.expect(t, n.B, "a", false)
	tn.expect(t, n.B, "c", true)
	if err := n.A.LinkUp(); err != nil {
		t.Fatal(err)
	}
	tn.expect(t, n.A, "b", true)
	tn.expect(t, n.B, "a", true)
	tn.expect(t, n.A, "w", true)
}

func TestPartition(t *testing.T) {
	tn := newTestNet(t)
	n := tn.Network
	if err := n.Partition(n.A, n.B); err != nil {
		t.Fatal(err)
	}
	tn.expect(t, n.A, "b", false)
	tn.expect(t, n.B, "a", false)
	tn.expect(t, n.A, "c", true)
	tn.expect(t, n.C, "a", true)
	tn.expect(t, n.B, "c", true)
	tn.expect(t, n.A, "w", true)
	tn.expect(t, n.B, "w", true)
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	tn.expect(t, n.A, "b", true)
	tn.expect(t, n.B, "a", true)

	if err := n.Partition(n.A); err == nil {
		t.Error("Partition of one host succeeded, want an error")
	}
	if err := n.Partition(n.A, n.A); err == nil {
		t.Error("Partition(A, A) succeeded, want an error")
	}
	if err := n.Partition(n.A, &rig.Host{Name: "stranger"}); err == nil || !strings.Contains(err.Error(), "stranger") {
		t.Errorf("Partition with a foreign host = %v, want an error naming it", err)
	}
}

func TestKillAll(t *testing.T) {
	n := rigtest.Network(t, rig.NetworkOptions{})
	ctx := context.Background()
	// A shell with a background child: both must die.
	cmd := n.A.Command(ctx, "sh", "-c", "sleep 1000 & exec sleep 1001")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	other := n.B.Command(ctx, "sleep", "1000")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		other.Process.Kill()
		other.Wait()
	}()
	for deadline := time.Now().Add(10 * time.Second); len(n.A.NS.Processes()) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("processes in host a: %v, want the shell's two sleeps", n.A.NS.Processes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := n.A.KillAll(); err != nil {
		t.Fatal(err)
	}
	if left := n.A.NS.Processes(); len(left) != 0 {
		t.Errorf("processes left in host a after KillAll: %v", left)
	}
	err := cmd.Wait()
	var exit interface{ Sys() any }
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("command in host a ended with %v, want killed by SIGKILL", err)
	}
	if !slices.Contains(n.B.NS.Processes(), other.Process.Pid) {
		t.Errorf("KillAll on host a touched host b's process %d", other.Process.Pid)
	}
}

func netnsNames(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(rig.NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// Close removes every namespace and link, kills what runs inside, and does
// not depend on nobody holding a namespace open.
func TestNetworkCloseRemovesEverything(t *testing.T) {
	runDir := t.TempDir()
	n := rigtest.Network(t, rig.NetworkOptions{RunDir: runDir})
	sleeper := n.B.Command(context.Background(), "sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	// Keep two namespaces alive past Close: a socket in A and an open
	// handle on the switch, through which we look at what is left.
	var sock net.PacketConn
	if err := n.A.Do(func() (err error) { sock, err = net.ListenPacket("udp", ":0"); return }); err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	sw, err := netns.GetFromPath(n.Switch.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	aNS, err := netns.GetFromPath(n.A.NS.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer aNS.Close()

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := netnsNames(t, "flkrig-"+n.ID); len(left) != 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
	if err := sleeper.Wait(); err == nil {
		t.Error("process in host b survived Close")
	}
	for what, h := range map[string]netns.NsHandle{"switch": sw, "host a": aNS} {
		nl, err := netlink.NewHandleAt(h)
		if err != nil {
			t.Fatal(err)
		}
		links, err := nl.LinkList()
		nl.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				t.Errorf("%s still has link %s after Close", what, l.Attrs().Name)
			}
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(runDir, "owners")); len(entries) != 0 {
		t.Errorf("owner record left after Close: %v", entries)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := n.A.LinkDown(); err == nil {
		t.Error("LinkDown on a closed network succeeded")
	}
}

// A build that fails half-way removes what it built.
func TestHalfBuiltNetworkIsRemoved(t *testing.T) {
	rigtest.Network(t, rig.NetworkOptions{}) // root check, and a network that must survive the others' failures
	prefix := fmt.Sprintf("flkrig-%d-", os.Getpid())
	before := netnsNames(t, prefix)
	runDir := t.TempDir()
	for _, step := range []string{"switch", "host-a", "host-b", "host-c"} {
		n, err := rig.NewNetwork(context.Background(), rig.WithFailAt(rig.NetworkOptions{RunDir: runDir, Logger: rigtest.Logger(t)}, step))
		if !errors.Is(err, rig.ErrInjected) || n != nil {
			t.Fatalf("failing after %s: got %v, %v; want nil and the injected error", step, n, err)
		}
		if after := netnsNames(t, prefix); !slices.Equal(after, before) {
			t.Errorf("failing after %s left namespaces: before %v, after %v", step, before, after)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(runDir, "owners")); len(entries) != 0 {
		t.Errorf("owner records left: %v", entries)
	}
}
