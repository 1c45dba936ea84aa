package failover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
)

const servicePort = 8080

// serveName runs, on host h, a TCP service on every address (the VIP
// included, once the host holds it) that answers each connection with the
// host's name. It stops at cleanup.
func serveName(t *testing.T, h *rig.Host) {
	t.Helper()
	var ln net.Listener
	err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", servicePort))
		return err
	})
	if err != nil {
		t.Fatalf("listening on %s: %v", h, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, h.Name)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// ask connects from h to addr and returns the first line answered.
func ask(h *rig.Host, addr netip.Addr, port int) (string, error) {
	var conn net.Conn
	err := h.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(addr, uint16(port)).String(), 2*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

func hostMAC(t *testing.T, h *rig.Host) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := h.Do(func() error {
		l, err := netlink.LinkByName(h.Interface)
		if err != nil {
			return err
		}
		mac = l.Attrs().HardwareAddr
		return nil
	})
	if err != nil {
		t.Fatalf("MAC of %s: %v", h, err)
	}
	return mac
}

// neighbour returns the MAC h's neighbour table has for addr ("" if none).
func neighbour(t *testing.T, h *rig.Host, addr netip.Addr) string {
	t.Helper()
	var mac string
	err := h.Do(func() error {
		l, err := netlink.LinkByName(h.Interface)
		if err != nil {
			return err
		}
		family := netlink.FAMILY_V4
		if addr.Is6() {
			family = netlink.FAMILY_V6
		}
		neighs, err := netlink.NeighList(l.Attrs().Index, family)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr && n.HardwareAddr != nil {
				mac = n.HardwareAddr.String()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("neighbours of %s: %v", h, err)
	}
	return mac
}

// capture records, in host h, the announcements for addr that leave or
// reach it. ETH_P_ALL: only those sockets see a host's outgoing frames.
type capture struct {
	mu     sync.Mutex
	frames []string
	conn   *packet.Conn
	done   chan struct{}
}

func startCapture(t *testing.T, h *rig.Host, addr netip.Addr) *capture {
	t.Helper()
	proto := unix.ETH_P_ALL
	c := &capture{done: make(chan struct{})}
	err := h.Do(func() error {
		l, err := netlink.LinkByName(h.Interface)
		if err != nil {
			return err
		}
		c.conn, err = packet.Listen(&net.Interface{Index: l.Attrs().Index, Name: h.Interface}, packet.Raw, proto, nil)
		return err
	})
	if err != nil {
		t.Fatalf("capture in %s: %v", h, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 1600)
		for {
			n, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			d := DescribeFrame(buf[:n])
			// Announcements only: sender and target both the VIP.
			if strings.Count(d, addr.String()+" ") >= 2 || strings.HasPrefix(d, "na target "+addr.String()+" ") && strings.Contains(d, "solicited=false") {
				c.mu.Lock()
				c.frames = append(c.frames, d)
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { c.conn.Close(); <-c.done })
	return c
}

// waitFor returns the announcements from mac once there are exactly n, or
// fails. Use it on the sender, where no frame can be lost on the way.
func (c *capture) waitFor(t *testing.T, mac net.HardwareAddr, n int) []string {
	t.Helper()
	return c.wait(t, mac, n, true)
}

// waitSome returns the announcements from mac once there are at least n.
// A receiver may miss some on a loaded machine (a full veth backlog drops
// frames): the train has several frames for that reason.
func (c *capture) waitSome(t *testing.T, mac net.HardwareAddr, n int) []string {
	t.Helper()
	return c.wait(t, mac, n, false)
}

func (c *capture) wait(t *testing.T, mac net.HardwareAddr, n int, exact bool) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		var got []string
		for _, f := range c.frames {
			if strings.HasSuffix(f, "(eth "+mac.String()+" > ff:ff:ff:ff:ff:ff)") || strings.HasSuffix(f, "(eth "+mac.String()+" > 33:33:00:00:00:01)") {
				got = append(got, f)
			}
		}
		c.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) < n || exact && len(got) != n {
				t.Fatalf("captured %d announcements from %v, want %d:\n%s", len(got), mac, n, strings.Join(got, "\n"))
			}
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newVIP(t *testing.T, h *rig.Host, p netip.Prefix) *FloatingIP {
	t.Helper()
	var f *FloatingIP
	err := h.Do(func() (err error) {
		f, err = NewFloatingIP(h.Interface, p, VIPOptions{Logger: testLogger(t).With("host", h.Name)})
		return err
	})
	if err != nil {
		t.Fatalf("floating address on %s: %v", h, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// holders lists which of the hosts hold the address, as text ("a", "b",
// "a+b", "none"); every step below asserts it, so a moment with two
// holders fails the test.
func holders(t *testing.T, vips map[string]*FloatingIP) string {
	t.Helper()
	var who []string
	for _, name := range []string{"a", "b"} {
		held, err := vips[name].Held()
		if err != nil {
			t.Fatal(err)
		}
		if held {
			who = append(who, name)
		}
	}
	if len(who) == 0 {
		return "none"
	}
	return strings.Join(who, "+")
}

// TestFloatingIPMoves moves the floating address from A to B for real in
// the rig's namespaces, IPv4 and IPv6: C sees A's announcements, reaches A
// through the address, then after A drops it and B takes it, C's neighbour
// entry is B's MAC and its connections reach B.
func TestFloatingIPMoves(t *testing.T) {
	n := rigtest.Network(t, rig.NetworkOptions{})
	serveName(t, n.A)
	serveName(t, n.B)
	macA, macB := hostMAC(t, n.A), hostMAC(t, n.B)
	for _, vip := range []netip.Prefix{n.VIP4, n.VIP6} {
		t.Run(vip.String(), func(t *testing.T) {
			ctx := context.Background()
			addr := vip.Addr()
			capA, capB, capC := startCapture(t, n.A, addr), startCapture(t, n.B, addr), startCapture(t, n.C, addr)
			vips := map[string]*FloatingIP{"a": newVIP(t, n.A, vip), "b": newVIP(t, n.B, vip)}
			expect := func(step, want string) {
				t.Helper()
				if got := holders(t, vips); got != want {
					t.Fatalf("%s: address held by %s, want %s", step, got, want)
				}
			}
			expect("start", "none")

			if err := vips["a"].Add(ctx); err != nil {
				t.Fatal(err)
			}
			expect("a added", "a")
			capA.waitFor(t, macA, DefaultAnnounceCount)
			for _, f := range capC.waitSome(t, macA, 1) {
				t.Logf("C captured: %s", f)
			}
			if got, err := ask(n.C, addr, servicePort); err != nil || got != "a" {
				t.Fatalf("C through the address: %q, %v; want a", got, err)
			}
			if got := neighbour(t, n.C, addr); got != macA.String() {
				t.Fatalf("C's neighbour entry for %v: %q, want A's %v", addr, got, macA)
			}
			// Idempotent: adding again is success and announces again.
			if err := vips["a"].Add(ctx); err != nil {
				t.Fatalf("second add: %v", err)
			}
			expect("a added twice", "a")
			capA.waitFor(t, macA, 2*DefaultAnnounceCount)

			// The move: drop first, then add, as the fence and the
			// promotion do.
			if err := vips["a"].Remove(ctx); err != nil {
				t.Fatal(err)
			}
			expect("a removed", "none")
			if err := vips["a"].Remove(ctx); err != nil {
				t.Fatalf("second remove: %v", err)
			}
			expect("a removed twice", "none")
			if err := vips["b"].Add(ctx); err != nil {
				t.Fatal(err)
			}
			expect("b added", "b")
			capB.waitFor(t, macB, DefaultAnnounceCount)
			capC.waitSome(t, macB, 1)
			// C had A's MAC cached as reachable; only the announcement can
			// have changed it this soon.
			if got := neighbour(t, n.C, addr); got != macB.String() {
				t.Fatalf("C's neighbour entry for %v after the move: %q, want B's %v", addr, got, macB)
			}
			if got, err := ask(n.C, addr, servicePort); err != nil || got != "b" {
				t.Fatalf("C through the address after the move: %q, %v; want b", got, err)
			}
			if err := vips["b"].Remove(ctx); err != nil {
				t.Fatal(err)
			}
			expect("end", "none")
		})
	}
}

func TestFloatingIPErrors(t *testing.T) {
	n := rigtest.Network(t, rig.NetworkOptions{})
	err := n.A.Do(func() error {
		_, err := NewFloatingIP("nosuch0", n.VIP4, VIPOptions{})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "floating address 192.0.2.100/24: interface nosuch0:") {
		t.Errorf("missing interface: %v", err)
	}
	_, err = NewFloatingIP("eth0", netip.Prefix{}, VIPOptions{})
	if err == nil || err.Error() != "floating address invalid Prefix: not a plain IPv4 or IPv6 prefix" {
		t.Errorf("invalid prefix: %v", err)
	}
	// A cancelled announcement train reports the cancellation.
	f := newVIP(t, n.A, n.VIP4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Announce(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled announce: %v", err)
	}
}

// TestFloatingIPRemoveStopsAnnouncing: Add returns after the train's first
// frame; a Remove that comes before the rest stops the train, so a host
// never announces an address it dropped (C would send to it). The interval
// is long enough that the Remove comes first even on a loaded machine.
func TestFloatingIPRemoveStopsAnnouncing(t *testing.T) {
	n := rigtest.Network(t, rig.NetworkOptions{})
	macA := hostMAC(t, n.A)
	capA := startCapture(t, n.A, n.VIP4.Addr())
	var f *FloatingIP
	err := n.A.Do(func() (err error) {
		f, err = NewFloatingIP(n.A.Interface, n.VIP4, VIPOptions{AnnounceInterval: 2 * time.Second, Logger: testLogger(t)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ctx := context.Background()
	if err := f.Add(ctx); err != nil {
		t.Fatal(err)
	}
	if held, err := f.Held(); err != nil || !held {
		t.Fatalf("after Add: held %v, %v", held, err)
	}
	capA.waitSome(t, macA, 1)
	if err := f.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	// Two intervals and more: the rest of the train would have gone out.
	time.Sleep(5 * time.Second)
	if got := capA.waitFor(t, macA, 1); len(got) != 1 {
		t.Fatalf("announcements after an early Remove: %d, want the first only", len(got))
	}
}
