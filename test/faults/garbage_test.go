package faults

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/chaos"
	"github.com/flockerha/flocker/internal/rig"
	"golang.org/x/sys/unix"
)

// udpPacket is one captured UDP datagram between the agents.
type udpPacket struct {
	src, dst netip.AddrPort
	payload  []byte
}

// capture reads UDP datagrams to or from port on h's interface for d
// (an AF_PACKET socket opened in h's namespace sees both directions).
func capture(t *testing.T, h *rig.Host, port uint16, d time.Duration) []udpPacket {
	t.Helper()
	var fd int
	err := h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in %v: %v", h, err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	var out []udpPacket
	buf := make([]byte, 65536)
	for end := time.Now().Add(d); time.Now().Before(end); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout
		}
		if p, ok := parseUDP4(buf[:n]); ok && (p.src.Port() == port || p.dst.Port() == port) {
			out = append(out, p)
		}
	}
	return out
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func parseUDP4(b []byte) (udpPacket, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_UDP {
		return udpPacket{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total > len(b) || ihl+8 > total {
		return udpPacket{}, false
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	u := b[ihl:total]
	return udpPacket{
		src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:2])),
		dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:4])),
		payload: append([]byte(nil), u[8:]...),
	}, true
}

// spoofer sends UDP datagrams with any source address from h's namespace
// (a raw IPv4 socket: the kernel fills in the IP checksum; the UDP
// checksum is left 0, which IPv4 allows).
type spoofer struct{ fd int }

func newSpoofer(t *testing.T, h *rig.Host) *spoofer {
	t.Helper()
	var fd int
	err := h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		t.Fatalf("raw socket in %v: %v", h, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &spoofer{fd: fd}
}

func (s *spoofer) send(src, dst netip.AddrPort, payload []byte) error {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	binary.BigEndian.PutUint16(b[20:22], src.Port())
	binary.BigEndian.PutUint16(b[22:24], dst.Port())
	binary.BigEndian.PutUint16(b[24:26], uint16(8+len(payload)))
	copy(b[28:], payload)
	return unix.Sendto(s.fd, b, 0, &unix.SockaddrInet4{Addr: d4})
}

// garbage is the attack's material, drawn from r: random bytes, QUIC long
// headers (Initial, Handshake, 0-RTT, Retry, unknown versions) with random
// or truncated bodies, and copies of the captured packets truncated or
// with bytes flipped (short headers that name the live connection).
func garbage(r *rand.Rand, captured []udpPacket) [][]byte {
	var out [][]byte
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for range 1500 {
		out = append(out, randBytes(1+r.IntN(1400)))
	}
	for range 1500 {
		// Long header: form and fixed bits, a packet type, a version (1,
		// 2, or anything), connection ids of random length, random rest;
		// padded to an Initial's 1200 bytes half of the time.
		h := []byte{0xc0 | byte(r.IntN(4))<<4 | byte(r.IntN(16))}
		h = binary.BigEndian.AppendUint32(h, []uint32{1, 0x6b3343cf, r.Uint32(), 0}[r.IntN(4)])
		for range 2 {
			l := r.IntN(21)
			h = append(h, byte(l))
			h = append(h, randBytes(l)...)
		}
		size := len(h) + r.IntN(200)
		if r.IntN(2) == 0 {
			size = 1200
		}
		b := append(h, randBytes(max(0, size-len(h)))...)
		out = append(out, b[:1+r.IntN(len(b))]) // truncated anywhere
	}
	for i := range 2000 {
		if len(captured) == 0 {
			break
		}
		b := append([]byte(nil), captured[i%len(captured)].payload...)
		if len(b) < 2 {
			continue
		}
		if r.IntN(2) == 0 {
			b = b[:1+r.IntN(len(b)-1)]
		} else {
			for range 1 + r.IntN(3) {
				b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
			}
		}
		out = append(out, b)
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestGarbageDatagrams: while the pair replicates, host C sends both
// agents' QUIC ports thousands of hostile datagrams: random bytes, QUIC
// long headers truncated anywhere, and, with the source address forged as
// the peer's, exact replays of the agents' own packets plus truncated and
// bit-flipped copies of them (short headers naming the live connection).
// The agents keep serving: no agent exits, neither side suspects the other
// dead, roles and epochs do not move, and every acknowledged write written
// during the attack reaches the replica.
func TestGarbageDatagrams(t *testing.T) {
	p := newFailPair(t, false)
	s := startServing(t, p)
	a, b := s.Master, s.Slave
	port := uint16(agentpair.Port)

	caught := capture(t, a.Host, port, 2*time.Second)
	t.Logf("captured %d datagrams between the agents", len(caught))
	if len(caught) < 5 {
		t.Fatalf("captured only %d datagrams: heartbeats should flow every 100 ms", len(caught))
	}
	marks := map[*agentpair.Node]int{a: a.Log.Len(), b: b.Log.Len()}
	rolesBefore, err := chaos.Roles(p)
	if err != nil {
		t.Fatal(err)
	}

	w := chaos.NewWriter(p, "garbage", 4096, 200*time.Millisecond)
	w.Start()
	defer w.Stop()

	r := rand.New(rand.NewPCG(8, 8))
	spoof := newSpoofer(t, p.Net.C)
	from := netip.AddrPortFrom(p.Net.C.IPv4.Addr(), 40000)
	var plain *net.UDPConn
	if err := p.Net.C.Do(func() error {
		var err error
		plain, err = net.ListenUDP("udp4", &net.UDPAddr{IP: from.Addr().AsSlice(), Port: int(from.Port())})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	targets := []netip.AddrPort{
		netip.AddrPortFrom(a.Host.IPv4.Addr(), port),
		netip.AddrPortFrom(b.Host.IPv4.Addr(), port),
	}
	sent := map[string]int{}
	// Replays first, at the rate the agents send (the replay window is
	// what is attacked), then everything else mixed, paced over ~15 s.
	for i, c := range caught {
		if err := spoof.send(c.src, c.dst, c.payload); err != nil {
			t.Fatalf("replaying: %v", err)
		}
		sent["exact replays, source forged"]++
		if i%10 == 9 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	junk := garbage(r, caught)
	for i, d := range junk {
		dst := targets[i%2]
		if i%3 == 0 && len(caught) > 0 {
			// Forged as the peer, to the live connection's 4-tuple.
			c := caught[r.IntN(len(caught))]
			if err := spoof.send(c.src, c.dst, d); err != nil {
				t.Fatalf("spoofing: %v", err)
			}
			sent["forged as the peer"]++
		} else {
			if _, err := plain.WriteToUDPAddrPort(d, dst); err != nil {
				t.Fatalf("sending: %v", err)
			}
			sent["from C"]++
		}
		if i%50 == 49 {
			time.Sleep(150 * time.Millisecond)
		}
	}
	t.Logf("sent %d hostile datagrams: %v", len(caught)+len(junk), sent)
	time.Sleep(2 * time.Second)
	w.Stop()

	for _, n := range []*agentpair.Node{a, b} {
		if !n.Running() {
			t.Fatalf("%s: agent exited under garbage", n.Name)
		}
		if k := n.Log.Count(marks[n], func(r agentpair.Record) bool {
			return r.Msg() == "failover decision" && strings.HasPrefix(r.Str("event"), "peer-dead")
		}); k > 0 {
			t.Errorf("%s: %d peer-dead decisions during the attack", n.Name, k)
		}
	}
	rolesAfter, err := chaos.Roles(p)
	if err != nil {
		t.Fatal(err)
	}
	for n, st := range rolesBefore {
		if rolesAfter[n] != st {
			t.Errorf("%s: %s/%d before the attack, %s/%d after", n.Name, st.Role, st.Epoch, rolesAfter[n].Role, rolesAfter[n].Epoch)
		}
	}
	after := waitSettled(t, p)
	if after.Master != a {
		t.Fatalf("%s is master after the attack", after.Master.Name)
	}
	acc, err := chaos.Account(p, after, w.Ledgers()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", acc)
	if !acc.OK() || acc.Acked == 0 || acc.Stashed != 0 {
		t.Fatalf("writes during the attack: %s", acc)
	}
}
