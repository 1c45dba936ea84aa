package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The value parsers below are exported so that command-line flags carrying
// the same values (flocker init) are checked by the same rules as the file.

// CheckName checks a node or dataset name: 1 to 63 letters, digits, '.',
// '_' or '-', not starting with '-' and not "." or "..".
func CheckName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("invalid name %q: empty", s)
	case len(s) > MaxNameLen:
		return fmt.Errorf("invalid name %q: %d characters, at most %d", s, len(s), MaxNameLen)
	case s[0] == '-':
		return fmt.Errorf("invalid name %q: must not start with '-'", s)
	case s == "." || s == "..":
		return fmt.Errorf("invalid name %q: not a name", s)
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("invalid name %q: character %q not allowed (letters, digits, '.', '_', '-')", s, r)
		}
	}
	return nil
}

// ParseAddrPort parses IP:port (an IPv6 address in brackets). Host names are
// refused on purpose: name resolution is one more thing that can fail in the
// middle of a failover.
func ParseAddrPort(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: want IP:PORT, e.g. 192.0.2.10:7946 or [2001:db8::10]:7946", s)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: %q is not an IP address (host names are not resolved)", s, host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: port %q is not a number from 0 to 65535", s, port)
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// ParsePeerAddress is ParseAddrPort for an address flocker connects to,
// where port 0 and the unspecified address mean nothing.
func ParsePeerAddress(s string) (netip.AddrPort, error) {
	ap, err := ParseAddrPort(s)
	if err != nil {
		return ap, err
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: %s cannot be connected to", s, ap.Addr())
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: port 0 cannot be connected to", s)
	}
	return ap, nil
}

// ParseIP parses a single IP address, v4 or v6.
func ParseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	if ip.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q: unspecified address", s)
	}
	return ip, nil
}

// ParseVIP parses a floating address in CIDR form, ADDRESS/PREFIXLEN: the
// address is the one the master holds, the length gives the subnet the
// interface route covers.
func ParseVIP(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want ADDRESS/PREFIXLEN, e.g. 192.0.2.100/24", s)
	}
	a := p.Addr()
	switch {
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast():
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %s cannot be a floating address", s, a)
	case a.Is4() && p.Bits() <= 30 && a == p.Masked().Addr():
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %s is the network address of %s", s, a, p.Masked())
	case a.Is4() && p.Bits() <= 30 && a == lastAddr(p):
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %s is the broadcast address of %s", s, a, p.Masked())
	}
	return p, nil
}

// lastAddr is the highest address in an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ifNameMax is the longest Linux interface name (IFNAMSIZ 16, less the NUL).
const ifNameMax = 15

// CheckInterface checks a Linux network interface name by the kernel's rules
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or
// whitespace.
func CheckInterface(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("invalid interface name %q: empty", s)
	case len(s) > ifNameMax:
		return fmt.Errorf("invalid interface name %q: %d bytes, Linux allows at most %d", s, len(s), ifNameMax)
	case s == "." || s == "..":
		return fmt.Errorf("invalid interface name %q", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r >= 0x7f {
			return fmt.Errorf("invalid interface name %q: character %q not allowed", s, r)
		}
	}
	return nil
}

// ParseRole parses master or slave.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleMaster, RoleSlave:
		return r, nil
	}
	return "", fmt.Errorf("invalid role %q (want master or slave)", s)
}

func parseNotifyMode(s string) (string, error) {
	for _, m := range NotifyModes {
		if s == m {
			return s, nil
		}
	}
	return "", fmt.Errorf("invalid mode %q (want one of: %s)", s, strings.Join(NotifyModes, ", "))
}

func parsePositiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want a number with a unit, e.g. 100ms or 2s)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: must be positive", s)
	}
	return d, nil
}

// parseDuration accepts zero and positive durations ("0" needs no unit).
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want a number with a unit, e.g. 100ms or 2s, or 0)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return d, nil
}

// bandwidthUnits are the accepted rate units, per second: IEC binary and SI
// decimal multiples, spelled as `df -h --si` and `ip -s` users expect.
var bandwidthUnits = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"B", 1},
}

// ParseBandwidth parses a rate in bytes per second: 0 (no cap), or a whole
// number with a unit B, kB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers
// of 1024), optionally followed by "/s", e.g. 20MiB or 500kB/s.
func ParseBandwidth(s string) (uint64, error) {
	body := strings.TrimSuffix(s, "/s")
	if body == "0" {
		return 0, nil
	}
	for _, u := range bandwidthUnits {
		digits, ok := strings.CutSuffix(body, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || digits == "" || digits[0] == '+' {
			break
		}
		if n > (1<<64-1)/u.mult {
			return 0, fmt.Errorf("invalid bandwidth %q: too large", s)
		}
		return n * u.mult, nil
	}
	return 0, fmt.Errorf("invalid bandwidth %q (want 0 for no cap, or a whole number and a unit: B, kB, MB, GB, KiB, MiB, GiB, e.g. 20MiB)", s)
}

func parseUint(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid integer %q (want 0 to %d)", s, uint64(1<<64-1))
	}
	return n, nil
}

// ParseProbe parses a service probe, "tcp:PORT" with PORT 1 to 65535.
func ParseProbe(s string) (uint16, error) {
	port, ok := strings.CutPrefix(s, "tcp:")
	if !ok {
		return 0, fmt.Errorf("invalid probe %q (want tcp:PORT, e.g. tcp:8080)", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || port[0] == '+' {
		return 0, fmt.Errorf("invalid probe %q: port must be 1 to 65535", s)
	}
	return uint16(n), nil
}

func parseDivergence(s string) (string, error) {
	switch s {
	case DivergeNewerEpoch, DivergeMostChanges:
		return s, nil
	}
	return "", fmt.Errorf("invalid divergence policy %q (want %s or %s)", s, DivergeNewerEpoch, DivergeMostChanges)
}

// parseCount parses a whole number of at least 1.
func parseCount(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || s[0] == '+' {
		return 0, fmt.Errorf("invalid count %q (want a whole number from 1 to 65535)", s)
	}
	return int(n), nil
}
