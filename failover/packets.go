package failover

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Announcements are built here as whole Ethernet frames by pure functions
// and sent elsewhere (announcer in vip_linux.go), so their bytes are tested
// as text. gopacket/layers builds them: its layers cover ARP, IPv6 and
// ICMPv6 neighbour discovery with options, compute the ICMPv6 checksum
// over the IPv6 pseudo-header, and decode captures in tests with the same
// code; mdlayher/packet, the other library at hand, is an AF_PACKET socket,
// not a packet builder, and is what sends them.

var (
	ethernetBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// allNodesMAC is ff02::1 mapped to Ethernet (RFC 2464 section 7).
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}
	allNodes    = netip.MustParseAddr("ff02::1")
)

// naOverride is the Override flag of a neighbour advertisement: receivers
// replace a cached link-layer address with the one advertised.
const naOverride = 0x20

// Announcement returns the frame that tells a segment "ip is at mac":
// GratuitousARP for IPv4, UnsolicitedNA for IPv6.
func Announcement(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if ip.Is4() {
		return GratuitousARP(mac, ip)
	}
	return UnsolicitedNA(mac, ip)
}

// GratuitousARP builds an ARP announcement (RFC 5227 section 2.3): an ARP
// request broadcast with sender and target protocol address both ip and the
// target hardware address zero. Linux (and most stacks) treat a request with
// sender = target as gratuitous and update an existing cache entry for ip
// at once, whatever its state; requests are more widely honoured than
// gratuitous replies.
func GratuitousARP(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("gratuitous ARP: hardware address %v is not Ethernet", mac)
	}
	if !ip.Is4() {
		return nil, fmt.Errorf("gratuitous ARP: %v is not an IPv4 address", ip)
	}
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: ethernetBroadcast, EthernetType: layers.EthernetTypeARP}
	a4 := ip.As4()
	arp := &layers.ARP{
		AddrType:          layers.LinkTypeEthernet,
		Protocol:          layers.EthernetTypeIPv4,
		HwAddressSize:     6,
		ProtAddressSize:   4,
		Operation:         layers.ARPRequest,
		SourceHwAddress:   mac,
		SourceProtAddress: a4[:],
		DstHwAddress:      make([]byte, 6),
		DstProtAddress:    a4[:],
	}
	return serialize(eth, arp)
}

// UnsolicitedNA builds an unsolicited neighbour advertisement (RFC 4861
// section 7.2.6) for ip: from ip to all-nodes (ff02::1), hop limit 255
// (receivers drop neighbour discovery with any other), Override set and
// Solicited clear, with the target link-layer address option carrying mac.
// Receivers that cache ip update the entry to mac (state STALE, so they
// confirm it on first use); that is the IPv6 counterpart of a gratuitous
// ARP.
func UnsolicitedNA(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("neighbour advertisement: hardware address %v is not Ethernet", mac)
	}
	if !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("neighbour advertisement: %v is not an IPv6 address", ip)
	}
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: allNodesMAC, EthernetType: layers.EthernetTypeIPv6}
	ip6 := &layers.IPv6{
		Version:    6,
		NextHeader: layers.IPProtocolICMPv6,
		HopLimit:   255,
		SrcIP:      ip.AsSlice(),
		DstIP:      allNodes.AsSlice(),
	}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		return nil, fmt.Errorf("neighbour advertisement: %w", err)
	}
	na := &layers.ICMPv6NeighborAdvertisement{
		Flags:         naOverride,
		TargetAddress: ip.AsSlice(),
		Options:       layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: mac}},
	}
	return serialize(eth, ip6, icmp, na)
}

func serialize(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("building frame: %w", err)
	}
	return buf.Bytes(), nil
}

// DescribeFrame decodes an announcement (or any ARP or neighbour
// advertisement frame) into one line of text, for tests and debug logs:
// "arp request 192.0.2.100 is-at 02:00:00:00:00:0a (to ff:ff:ff:ff:ff:ff)".
// It returns "" for frames that are neither.
func DescribeFrame(frame []byte) string {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil {
		return ""
	}
	if a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok {
		op := map[uint16]string{layers.ARPRequest: "request", layers.ARPReply: "reply"}[a.Operation]
		return fmt.Sprintf("arp %s from %v %v for %v %v (eth %v > %v)", op,
			net.IP(a.SourceProtAddress), net.HardwareAddr(a.SourceHwAddress),
			net.IP(a.DstProtAddress), net.HardwareAddr(a.DstHwAddress), eth.SrcMAC, eth.DstMAC)
	}
	na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok {
		return ""
	}
	ip6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	var lladdr net.HardwareAddr
	for _, o := range na.Options {
		if o.Type == layers.ICMPv6OptTargetAddress {
			lladdr = o.Data
		}
	}
	s := fmt.Sprintf("na target %v lladdr %v router=%v solicited=%v override=%v", na.TargetAddress, lladdr,
		na.Router(), na.Solicited(), na.Override())
	if ip6 != nil {
		s += fmt.Sprintf(" (ip6 %v > %v hlim %d", ip6.SrcIP, ip6.DstIP, ip6.HopLimit)
		if icmp != nil {
			s += fmt.Sprintf(" csum %#04x", icmp.Checksum)
		}
		s += ")"
	}
	return s + fmt.Sprintf(" (eth %v > %v)", eth.SrcMAC, eth.DstMAC)
}
