package vmdemo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/vishvananda/netlink"
)

// segment is the demo's Ethernet: the rig's switch (a bridge in a
// namespace of its own, the witness address on it) with client C's
// namespace cabled to it, and one tap device per guest plugged into the
// same bridge. A guest's cable is its tap's state.
type segment struct {
	net  *rig.Network
	taps map[string]*os.File // guest name -> the tap's open file
}

func newSegment(ctx context.Context, log *slog.Logger) (*segment, error) {
	n, err := rig.NewNetwork(ctx, rig.NetworkOptions{Logger: log})
	if err != nil {
		return nil, err
	}
	return &segment{net: n, taps: map[string]*os.File{}}, nil
}

func tapName(guest string) string { return "tap-" + guest }

// addTap creates guest's tap in the switch namespace, on the bridge and
// up. The tap is not persistent: it goes when its last file is closed
// (ours, and qemu's copy).
func (s *segment) addTap(guest string) (*os.File, error) {
	var f *os.File
	err := s.net.Switch.Do(func() error {
		br, err := netlink.LinkByName(rig.BridgeName)
		if err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		t := &netlink.Tuntap{
			LinkAttrs:  netlink.LinkAttrs{Name: tapName(guest), MasterIndex: br.Attrs().Index},
			Mode:       netlink.TUNTAP_MODE_TAP,
			Flags:      netlink.TUNTAP_NO_PI,
			Queues:     1,
			NonPersist: true,
		}
		if err := netlink.LinkAdd(t); err != nil {
			return fmt.Errorf("creating %s: %w", t.Name, err)
		}
		if len(t.Fds) != 1 {
			return fmt.Errorf("creating %s: %d files, want 1", t.Name, len(t.Fds))
		}
		f = t.Fds[0]
		if err := netlink.LinkSetUp(t); err != nil {
			f.Close()
			return fmt.Errorf("%s up: %w", t.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tap for guest %s: %w", guest, err)
	}
	s.taps[guest] = f
	return f, nil
}

// setCable plugs guest's cable in or pulls it: its tap up or down.
func (s *segment) setCable(guest string, in bool) error {
	return s.net.Switch.Do(func() error {
		l, err := netlink.LinkByName(tapName(guest))
		if err != nil {
			return err
		}
		if in {
			return netlink.LinkSetUp(l)
		}
		return netlink.LinkSetDown(l)
	})
}

// dial opens a TCP connection from client C's namespace.
func (s *segment) dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := s.net.C.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// get is client C's request: GET /name from addr over plain HTTP/1.0.
func (s *segment) get(ctx context.Context, addr netip.AddrPort, name string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := s.dial(ctx, addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "GET /%s HTTP/1.0\r\n\r\n", name); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	head, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok {
		return "", fmt.Errorf("malformed answer %q", b)
	}
	if status, _, _ := strings.Cut(head, "\r\n"); !strings.Contains(status, " 200 ") {
		return "", fmt.Errorf("answer %q", status)
	}
	return body, nil
}

func (s *segment) Close() error {
	var errs []error
	for _, f := range s.taps {
		errs = append(errs, f.Close())
	}
	errs = append(errs, s.net.Close())
	return errors.Join(errs...)
}
