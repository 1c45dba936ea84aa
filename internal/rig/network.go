package rig

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Names inside the rig's namespaces. They never appear in the machine's own
// namespace, so they need not be unique across rigs.
const (
	BridgeName    = "br0"  // in the switch namespace
	HostInterface = "eth0" // in each host namespace
)

// Addresses. Every Network uses the same documentation ranges (RFC 5737,
// RFC 3849): each lives in namespaces of its own, so two rigs never meet.
var (
	Subnet4 = netip.MustParsePrefix("192.0.2.0/24")
	Subnet6 = netip.MustParsePrefix("2001:db8::/64")
)

// NetworkOptions configures NewNetwork.
type NetworkOptions struct {
	RunDir string // owner records; default DefaultRunDir
	Logger *slog.Logger

	failAt string // test hook: fail the build right after this step
}

// Network is hosts A, B and client C on one L2 segment: each host is a
// network namespace with HostInterface, cabled by a veth pair to a port of
// BridgeName in a fourth, switch namespace. Pulling a host's cable is taking
// its switch port down; a partition isolates bridge ports.
type Network struct {
	ID      string
	A, B, C *Host
	// Switch holds the bridge. The witness addresses are on the bridge
	// itself, so the witness is "the network": every host whose cable is in
	// reaches it, also during Partition, and LinkDown cuts a host off from it.
	// Run a witness service with Switch.Do or Switch.Command.
	Switch *Namespace
	// VIP4/VIP6 are reserved for the floating address: the rig configures
	// them nowhere.
	VIP4, VIP6         netip.Prefix
	Witness4, Witness6 netip.Prefix

	log        *slog.Logger
	owner      *owner
	names      []string     // every namespace name this network may have created
	namespaces []*Namespace // the ones it did, switch first
	mu         sync.Mutex   // guards sw
	sw         *netlink.Handle

	closeOnce sync.Once
	closeErr  error
}

// Host is one machine of the rig.
type Host struct {
	Name      string // "a", "b" or "c"
	NS        *Namespace
	Interface string       // HostInterface
	IPv4      netip.Prefix // 192.0.2.{1,2,3}/24
	IPv6      netip.Prefix // 2001:db8::{1,2,3}/64

	port string // its switch port, in the switch namespace
	net  *Network
}

var errInjected = errors.New("injected failure")

// NewNetwork sweeps what dead rig owners left behind, then builds the
// network. On any error everything built so far is removed again.
func NewNetwork(ctx context.Context, opts NetworkOptions) (_ *Network, err error) {
	log := loggerOr(opts.Logger)
	if err := Sweep(ctx, SweepOptions{RunDir: opts.RunDir, Logger: log}); err != nil {
		log.Warn("sweep left resources behind", "err", err)
	}
	id := newID()
	base := namePrefix + id
	n := &Network{
		ID:       id,
		VIP4:     netip.MustParsePrefix("192.0.2.100/24"),
		VIP6:     netip.MustParsePrefix("2001:db8::100/64"),
		Witness4: netip.MustParsePrefix("192.0.2.254/24"),
		Witness6: netip.MustParsePrefix("2001:db8::254/64"),
		log:      log,
		names:    []string{base + "-sw", base + "-a", base + "-b", base + "-c"},
	}
	n.owner, err = claim(runDirOr(opts.RunDir), id, record{Namespaces: n.names})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()
	step := func(name string) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("building network: %w", err)
		}
		if opts.failAt == name {
			return fmt.Errorf("building network after %s: %w", name, errInjected)
		}
		return nil
	}
	if err := n.buildSwitch(); err != nil {
		return nil, err
	}
	if err := step("switch"); err != nil {
		return nil, err
	}
	for i, name := range []string{"a", "b", "c"} {
		h := &Host{
			Name:      name,
			Interface: HostInterface,
			IPv4:      netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 24),
			IPv6:      netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", i+1)), 64),
			port:      "port-" + name,
			net:       n,
		}
		if err := n.buildHost(h, n.names[i+1]); err != nil {
			return nil, err
		}
		switch name {
		case "a":
			n.A = h
		case "b":
			n.B = h
		case "c":
			n.C = h
		}
		if err := step("host-" + name); err != nil {
			return nil, err
		}
	}
	for _, h := range n.Hosts() {
		if err := h.waitAddressesSettled(ctx, 10*time.Second); err != nil {
			return nil, err
		}
	}
	log.Info("built network", "id", id, "switch", n.Switch.Name,
		"a", n.A.NS.Name, "b", n.B.NS.Name, "c", n.C.NS.Name)
	return n, nil
}

func (n *Network) newNamespace(name string) (*Namespace, error) {
	ns, err := createNamespace(name)
	if err != nil {
		return nil, err
	}
	n.namespaces = append(n.namespaces, ns)
	// Addresses must be usable at once, including ones added later (the
	// VIP): no duplicate address detection on any interface created in here.
	err = ns.Do(func() error {
		for _, conf := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/accept_dad", []byte("0"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("disabling DAD in %s: %w", name, err)
	}
	return ns, nil
}

func (n *Network) buildSwitch() error {
	ns, err := n.newNamespace(n.names[0])
	if err != nil {
		return err
	}
	n.Switch = ns
	if n.sw, err = ns.netlinkHandle(); err != nil {
		return err
	}
	if err := setUp(n.sw, "lo"); err != nil {
		return err
	}
	off := false
	// Multicast snooping off: the bridge then floods IPv6 neighbour
	// discovery like a dumb switch instead of waiting for MLD reports.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName}, MulticastSnooping: &off}
	if err := n.sw.LinkAdd(br); err != nil {
		return fmt.Errorf("creating bridge: %w", err)
	}
	return configure(n.sw, BridgeName, n.Witness4, n.Witness6)
}

func (n *Network) buildHost(h *Host, nsName string) error {
	ns, err := n.newNamespace(nsName)
	if err != nil {
		return err
	}
	h.NS = ns
	// The host end is created directly inside the host namespace under its
	// final name: nothing passes through the machine's own namespace.
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: h.port},
		PeerName:      HostInterface,
		PeerNamespace: netlink.NsFd(ns.handle),
	}
	if err := n.sw.LinkAdd(veth); err != nil {
		return fmt.Errorf("cabling host %s: %w", h.Name, err)
	}
	port, err := n.sw.LinkByName(h.port)
	if err != nil {
		return fmt.Errorf("finding switch port %s: %w", h.port, err)
	}
	br, err := n.sw.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("finding bridge: %w", err)
	}
	if err := n.sw.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("plugging %s into the bridge: %w", h.port, err)
	}
	if err := n.sw.LinkSetUp(port); err != nil {
		return fmt.Errorf("switch port %s up: %w", h.port, err)
	}
	hh, err := ns.netlinkHandle()
	if err != nil {
		return err
	}
	defer hh.Close()
	if err := setUp(hh, "lo"); err != nil {
		return err
	}
	return configure(hh, HostInterface, h.IPv4, h.IPv6)
}

func setUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	return nil
}

// configure adds the addresses (without DAD) and sets the link up.
func configure(h *netlink.Handle, name string, addrs ...netip.Prefix) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("adding %s to %s: %w", p, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Hosts returns A, B and C.
func (n *Network) Hosts() []*Host { return []*Host{n.A, n.B, n.C} }

// Partition isolates the given hosts from each other (at least two) while
// each keeps reaching every other host and the witness: their switch ports
// become isolated bridge ports, which forward only to non-isolated ports and
// the bridge itself. Partition(A, B) is "A and B lose each other, both still
// see C and the witness". Heal undoes it.
func (n *Network) Partition(hosts ...*Host) error {
	seen := map[*Host]bool{}
	for _, h := range hosts {
		if h == nil || h.net != n {
			return fmt.Errorf("partition: host %v is not part of network %s", h, n.ID)
		}
		seen[h] = true
	}
	if len(seen) < 2 {
		return fmt.Errorf("partition: needs at least two distinct hosts, got %d", len(seen))
	}
	for h := range seen {
		if err := n.setIsolated(h, true); err != nil {
			return err
		}
	}
	return nil
}

// Heal ends every partition.
func (n *Network) Heal() error {
	var errs []error
	for _, h := range n.Hosts() {
		if h != nil {
			errs = append(errs, n.setIsolated(h, false))
		}
	}
	return errors.Join(errs...)
}

func (n *Network) setIsolated(h *Host, on bool) error {
	return n.withPort(h, func(sw *netlink.Handle, port netlink.Link) error {
		if err := sw.LinkSetIsolated(port, on); err != nil {
			return fmt.Errorf("setting isolation of %s to %v: %w", h.port, on, err)
		}
		return nil
	})
}

func (n *Network) withPort(h *Host, fn func(*netlink.Handle, netlink.Link) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sw == nil {
		return fmt.Errorf("network %s is closed", n.ID)
	}
	port, err := n.sw.LinkByName(h.port)
	if err != nil {
		return fmt.Errorf("finding switch port %s: %w", h.port, err)
	}
	return fn(n.sw, port)
}

// Close kills every process in the network's namespaces, deletes their links
// and removes the namespaces. It is idempotent and also undoes a half-built
// network.
func (n *Network) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Network) close() error {
	var errs []error
	n.mu.Lock()
	if n.sw != nil {
		n.sw.Close()
		n.sw = nil
	}
	n.mu.Unlock()
	// Hosts first: removing a host's eth0 removes its switch port too.
	for i := len(n.namespaces) - 1; i >= 0; i-- {
		if err := n.namespaces[i].remove(); err != nil {
			errs = append(errs, err)
		}
	}
	// A name whose namespace failed half-way may have left its mountpoint file.
	for _, name := range n.names {
		if err := unmountNamespace(name); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err == nil {
		n.log.Info("removed network", "id", n.ID)
	}
	return errors.Join(err, n.owner.release(err == nil))
}

// Do runs fn inside the host's network namespace (see Namespace.Do).
func (h *Host) Do(fn func() error) error { return h.NS.Do(fn) }

// Command runs a program inside the host's network namespace (see
// Namespace.Command).
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return h.NS.Command(ctx, name, args...)
}

// KillAll kills every process on the host: a power loss.
func (h *Host) KillAll() error { return h.NS.KillAll() }

// LinkDown pulls the host's cable: its switch port goes down, the host sees
// its interface lose carrier and reaches no one (witness included).
func (h *Host) LinkDown() error {
	return h.net.withPort(h, func(sw *netlink.Handle, port netlink.Link) error {
		if err := sw.LinkSetDown(port); err != nil {
			return fmt.Errorf("host %s link down: %w", h.Name, err)
		}
		return nil
	})
}

// LinkUp plugs the cable back in.
func (h *Host) LinkUp() error {
	return h.net.withPort(h, func(sw *netlink.Handle, port netlink.Link) error {
		if err := sw.LinkSetUp(port); err != nil {
			return fmt.Errorf("host %s link up: %w", h.Name, err)
		}
		return nil
	})
}

// String names the host for messages.
func (h *Host) String() string {
	if h == nil {
		return "<nil host>"
	}
	return "host " + h.Name
}

// waitAddressesSettled waits until no address on the host's interface is
// tentative. DAD is off, but the kernel finishes even that in a workqueue,
// so on a loaded machine the link-local address stays tentative a while.
func (h *Host) waitAddressesSettled(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var tentative []string
		err := h.Do(func() error {
			l, err := netlink.LinkByName(h.Interface)
			if err != nil {
				return err
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if a.Flags&unix.IFA_F_TENTATIVE != 0 {
					tentative = append(tentative, a.IPNet.String())
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("host %s: listing addresses: %w", h.Name, err)
		}
		if len(tentative) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("host %s: addresses %v still tentative after %v", h.Name, tentative, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %s: waiting for addresses: %w", h.Name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
