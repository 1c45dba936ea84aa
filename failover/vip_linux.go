package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Announcement defaults.
const (
	// DefaultAnnounceCount: three frames per takeover, the number RFC 4861
	// allows for unsolicited advertisements (MAX_NEIGHBOR_ADVERTISEMENT)
	// and the number keepalived sends by default. One is enough on a quiet
	// segment; the repeats cover a frame lost on a busy switch or to a
	// receiver's full backlog, and a neighbour that was mid-probe when the
	// first arrived.
	DefaultAnnounceCount = 3
	// DefaultAnnounceInterval: far shorter than the RFCs' 1-2 s spacing,
	// because until a client hears one it sends to the dead master's MAC:
	// the whole train (first at once, last after 400 ms) stays well inside
	// the 1.5 s failover budget.
	DefaultAnnounceInterval = 200 * time.Millisecond
)

// FloatingIP is one floating address on one interface.
//
// Its netlink handle and packet socket belong to the network namespace of
// the thread that called NewFloatingIP, and keep it for their life: build it
// inside the namespace (rig's Host.Do in tests) and use it from anywhere.
type FloatingIP struct {
	prefix   netip.Prefix
	iface    string
	count    int
	interval time.Duration
	log      *slog.Logger

	handle *netlink.Handle
	index  int
	mac    net.HardwareAddr
	conn   *packet.Conn

	// The rest of an announcement train runs after Add returned: it is
	// stopped (and waited for) by the next Add, Remove and Close, so an
	// address is never announced after it was dropped.
	mu    sync.Mutex
	train context.CancelFunc
	done  chan struct{}
}

// VIPOptions tunes a FloatingIP; zero values mean the defaults.
type VIPOptions struct {
	AnnounceCount    int
	AnnounceInterval time.Duration
	Logger           *slog.Logger
}

// NewFloatingIP prepares prefix (the address and its prefix length, as in
// [dataset] vip) on interface iface. It changes nothing yet.
func NewFloatingIP(iface string, prefix netip.Prefix, opts VIPOptions) (_ *FloatingIP, err error) {
	if !prefix.IsValid() || prefix.Addr().Is4In6() || prefix.Addr().Zone() != "" {
		return nil, fmt.Errorf("floating address %v: not a plain IPv4 or IPv6 prefix", prefix)
	}
	f := &FloatingIP{prefix: prefix, iface: iface, count: opts.AnnounceCount, interval: opts.AnnounceInterval, log: opts.Logger}
	if f.count <= 0 {
		f.count = DefaultAnnounceCount
	}
	if f.interval <= 0 {
		f.interval = DefaultAnnounceInterval
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.log = f.log.With("vip", prefix.String(), "interface", iface)
	if f.handle, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("floating address %v: netlink: %w", prefix, err)
	}
	defer func() {
		if err != nil {
			f.handle.Close()
		}
	}()
	link, err := f.handle.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("floating address %v: interface %s: %w", prefix, iface, err)
	}
	attrs := link.Attrs()
	f.index, f.mac = attrs.Index, attrs.HardwareAddr
	if len(f.mac) != 6 {
		return nil, fmt.Errorf("floating address %v: interface %s has no Ethernet address (%v)", prefix, iface, f.mac)
	}
	// Protocol 0: a send-only socket that receives nothing, so no queue of
	// unread frames builds up while the agent runs.
	f.conn, err = packet.Listen(&net.Interface{Index: attrs.Index, Name: iface, HardwareAddr: f.mac}, packet.Raw, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("floating address %v: packet socket on %s: %w", prefix, iface, err)
	}
	return f, nil
}

// Prefix returns the floating address with its prefix length.
func (f *FloatingIP) Prefix() netip.Prefix { return f.prefix }

// MAC returns the interface's hardware address, the one announced.
func (f *FloatingIP) MAC() net.HardwareAddr { return f.mac }

func (f *FloatingIP) addr() *netlink.Addr {
	p := f.prefix
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		// Usable at once: duplicate address detection would keep it
		// tentative for a second, and "detect" the old holder that is
		// about to be gone anyway.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// Add puts the address on the interface (already present is success) and
// announces it: the first frame before it returns (clients move at once),
// the rest of the train in the background. An announcement that fails
// leaves the address in place: calling Add again is the retry, and it
// announces again.
func (f *FloatingIP) Add(ctx context.Context) error {
	f.stopTrain()
	link, err := f.handle.LinkByIndex(f.index)
	if err != nil {
		return fmt.Errorf("adding %v: interface %s: %w", f.prefix, f.iface, err)
	}
	switch err := f.handle.AddrAdd(link, f.addr()); {
	case err == nil:
		f.log.Info("floating address added")
	case errors.Is(err, unix.EEXIST):
		f.log.Info("floating address already present")
	default:
		return fmt.Errorf("adding %v to %s: %w", f.prefix, f.iface, err)
	}
	frame, dst, err := f.announcement()
	if err != nil {
		return err
	}
	if err := f.send(frame, dst); err != nil {
		return err
	}
	if f.count == 1 {
		f.log.Info("floating address announced", "frames", 1, "mac", f.mac.String())
		return nil
	}
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	f.mu.Lock()
	f.train, f.done = cancel, done
	f.mu.Unlock()
	go func() {
		defer close(done)
		if err := f.repeat(tctx, frame, dst, f.count-1); err != nil && tctx.Err() == nil {
			f.log.Warn("announcing the floating address again failed", "err", err)
			return
		}
		if tctx.Err() == nil {
			f.log.Info("floating address announced", "frames", f.count, "mac", f.mac.String())
		}
	}()
	return nil
}

// stopTrain stops the background announcements and waits for them.
func (f *FloatingIP) stopTrain() {
	f.mu.Lock()
	cancel, done := f.train, f.done
	f.train, f.done = nil, nil
	f.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Remove takes the address off the interface (already absent is success).
func (f *FloatingIP) Remove(ctx context.Context) error {
	f.stopTrain()
	if err := ctx.Err(); err != nil {
		return err
	}
	link, err := f.handle.LinkByIndex(f.index)
	if err != nil {
		return fmt.Errorf("removing %v: interface %s: %w", f.prefix, f.iface, err)
	}
	switch err := f.handle.AddrDel(link, f.addr()); {
	case err == nil:
		f.log.Info("floating address removed")
	case errors.Is(err, unix.EADDRNOTAVAIL):
		f.log.Info("floating address already absent")
	default:
		return fmt.Errorf("removing %v from %s: %w", f.prefix, f.iface, err)
	}
	return nil
}

// Held reports whether the address is on the interface.
func (f *FloatingIP) Held() (bool, error) {
	family := unix.AF_INET
	if f.prefix.Addr().Is6() {
		family = unix.AF_INET6
	}
	link, err := f.handle.LinkByIndex(f.index)
	if err != nil {
		return false, fmt.Errorf("listing addresses of %s: %w", f.iface, err)
	}
	addrs, err := f.handle.AddrList(link, family)
	if err != nil {
		return false, fmt.Errorf("listing addresses of %s: %w", f.iface, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == f.prefix.Addr() {
			return true, nil
		}
	}
	return false, nil
}

// Announce sends the announcement train: the first frame at once, then
// count-1 more, interval apart. It stops early when ctx ends.
func (f *FloatingIP) Announce(ctx context.Context) error {
	frame, dst, err := f.announcement()
	if err != nil {
		return err
	}
	if err := f.send(frame, dst); err != nil {
		return err
	}
	if err := f.repeat(ctx, frame, dst, f.count-1); err != nil {
		return err
	}
	f.log.Info("floating address announced", "frames", f.count, "mac", f.mac.String())
	return nil
}

// announcement is the frame and its destination MAC.
func (f *FloatingIP) announcement() ([]byte, net.HardwareAddr, error) {
	frame, err := Announcement(f.mac, f.prefix.Addr())
	if err != nil {
		return nil, nil, err
	}
	if f.prefix.Addr().Is6() {
		return frame, allNodesMAC, nil
	}
	return frame, ethernetBroadcast, nil
}

func (f *FloatingIP) send(frame []byte, dst net.HardwareAddr) error {
	if _, err := f.conn.WriteTo(frame, &packet.Addr{HardwareAddr: dst}); err != nil {
		return fmt.Errorf("announcing %v on %s: %w", f.prefix, f.iface, err)
	}
	return nil
}

// repeat sends n more frames, interval apart, the first after one interval.
func (f *FloatingIP) repeat(ctx context.Context, frame []byte, dst net.HardwareAddr, n int) error {
	for range n {
		if err := sleep(ctx, f.interval); err != nil {
			return fmt.Errorf("announcing %v: %w", f.prefix, err)
		}
		if err := f.send(frame, dst); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the announcements and releases the sockets; the address
// stays as it is.
func (f *FloatingIP) Close() error {
	f.stopTrain()
	f.handle.Close()
	return f.conn.Close()
}

// VIPSet maps logical dataset names to their floating addresses and
// implements Addresses for the Executor. A dataset without a floating
// address ([dataset] vip unset) is absent: its VIP effects succeed with
// nothing to do.
type VIPSet map[string]*FloatingIP

// AddVIP implements Addresses.
func (s VIPSet) AddVIP(ctx context.Context, dataset string) error {
	if f := s[dataset]; f != nil {
		return f.Add(ctx)
	}
	return nil
}

// DropVIP implements Addresses.
func (s VIPSet) DropVIP(ctx context.Context, dataset string) error {
	if f := s[dataset]; f != nil {
		return f.Remove(ctx)
	}
	return nil
}

var _ Addresses = VIPSet(nil)
