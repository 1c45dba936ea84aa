package failover

import (
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
)

var testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x0a}

// hexLines prints a frame 16 bytes a line, for goldens a reader can match
// against the protocol's field layout.
func hexLines(b []byte) string {
	var lines []string
	for i := 0; i < len(b); i += 16 {
		lines = append(lines, hex.EncodeToString(b[i:min(i+16, len(b))]))
	}
	return strings.Join(lines, "\n")
}

func TestAnnouncementFrames(t *testing.T) {
	tests := []struct {
		ip       string
		hex      string
		describe string
	}{
		{
			ip: "192.0.2.100",
			// eth dst broadcast, src mac, type 0806 | htype 1 ptype 0800
			// hlen 6 plen 4 op 1 (request) | sha mac spa 192.0.2.100 |
			// tha zero tpa 192.0.2.100 | zero padding to Ethernet's
			// 60-byte minimum
			hex: `
ffffffffffff02005e10000a08060001
08000604000102005e10000ac0000264
000000000000c0000264000000000000
000000000000000000000000`,
			describe: "arp request from 192.0.2.100 02:00:5e:10:00:0a for 192.0.2.100 00:00:00:00:00:00 (eth 02:00:5e:10:00:0a > ff:ff:ff:ff:ff:ff)",
		},
		{
			ip: "2001:db8::100",
			// eth dst 33:33:00:00:00:01, type 86dd | ip6 payload 32, next
			// 58 (icmpv6), hop limit 255, src 2001:db8::100, dst ff02::1 |
			// icmpv6 type 136 code 0, checksum 0x9913 (checked by hand
			// over the pseudo-header), flags 0x20 (override),
			// target 2001:db8::100, option 2 len 1 (8 bytes) mac
			hex: `
33330000000102005e10000a86dd6000
000000203aff20010db8000000000000
000000000100ff020000000000000000
00000000000188009913200000002001
0db80000000000000000000001000201
02005e10000a`,
			describe: "na target 2001:db8::100 lladdr 02:00:5e:10:00:0a router=false solicited=false override=true (ip6 2001:db8::100 > ff02::1 hlim 255 csum 0x9913) (eth 02:00:5e:10:00:0a > 33:33:00:00:00:01)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			frame, err := Announcement(testMAC, netip.MustParseAddr(tt.ip))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := hexLines(frame), strings.TrimPrefix(tt.hex, "\n"); got != want {
				t.Errorf("bytes:\n%s\nwant:\n%s", got, want)
			}
			if got := DescribeFrame(frame); got != tt.describe {
				t.Errorf("decoded:\n%s\nwant:\n%s", got, tt.describe)
			}
		})
	}
}

func TestAnnouncementErrors(t *testing.T) {
	tests := []struct {
		name string
		fn   func() ([]byte, error)
		want string
	}{
		{"garp of v6", func() ([]byte, error) { return GratuitousARP(testMAC, netip.MustParseAddr("2001:db8::1")) },
			"gratuitous ARP: 2001:db8::1 is not an IPv4 address"},
		{"na of v4", func() ([]byte, error) { return UnsolicitedNA(testMAC, netip.MustParseAddr("192.0.2.1")) },
			"neighbour advertisement: 192.0.2.1 is not an IPv6 address"},
		{"na of v4-in-v6", func() ([]byte, error) { return UnsolicitedNA(testMAC, netip.MustParseAddr("::ffff:192.0.2.1")) },
			"neighbour advertisement: ::ffff:192.0.2.1 is not an IPv6 address"},
		{"short mac", func() ([]byte, error) { return GratuitousARP(testMAC[:4], netip.MustParseAddr("192.0.2.1")) },
			"gratuitous ARP: hardware address 02:00:5e:10 is not Ethernet"},
	}
	for _, tt := range tests {
		if _, err := tt.fn(); err == nil || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	if DescribeFrame([]byte{1, 2, 3}) != "" {
		t.Error("DescribeFrame of garbage is not empty")
	}
}
