package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/treesum"
	"github.com/flockerha/flocker/transport"
	"github.com/flockerha/flocker/transport/pki"
	"github.com/quic-go/quic-go"
)

// datasetExists asks zfs whether a dataset exists (the zfs-fuse socket
// works from any namespace).
func datasetExists(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("zfs", "list", "-H", "-o", "name", name).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "does not exist") {
			return false
		}
		t.Fatalf("zfs list %s: %v\n%s", name, err, out)
	}
	return true
}

func zfsOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).Output()
	if err != nil {
		t.Fatalf("zfs %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// keyPair loads a node's credentials as flocker init wrote them.
func keyPair(t *testing.T, n *agentpair.Node) tls.Certificate {
	t.Helper()
	c, _, err := pki.LoadKeyPair(filepath.Join(n.Dir, "node.crt"), filepath.Join(n.Dir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// inHost runs fn with the calling goroutine in h's network namespace:
// sockets it opens belong to h.
func inHost(t *testing.T, h *rig.Host, fn func() error) {
	t.Helper()
	if err := h.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// TestOtherCertificateRefused: a QUIC peer presenting another certificate
// (even one naming the pinned node) is refused in the handshake, and the
// agent logs the fingerprint it refused; replication is not disturbed.
func TestOtherCertificateRefused(t *testing.T) {
	p := newPair(t, agentpair.Options{})
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)
	impostor, err := pki.Generate("alpha", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(impostor.CertPEM, impostor.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	mark := p.Slave.Log.Len()
	var ep *transport.Endpoint
	inHost(t, p.Net.C, func() (err error) {
		ep, err = transport.Listen(transport.Config{
			Node: "alpha", Cert: cert, ListenAddr: "0.0.0.0:0", Peer: "beta", PeerFingerprint: p.Slave.Fingerprint,
			LocalState: func() (transport.Role, uint64) { return transport.RoleMaster, 0 }, Logger: rigtest.Logger(t),
		})
		return err
	})
	defer ep.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ep.Dial(ctx, p.Slave.Addr)
	if err == nil {
		// TLS 1.3: the client may finish before the server checks its
		// certificate; the refusal then closes the connection.
		select {
		case <-c.Done():
			err = c.Err()
		case <-ctx.Done():
			t.Fatal("the impostor's connection stayed up")
		}
	}
	var he *transport.HandshakeError
	if !errors.As(err, &he) || !he.Remote {
		t.Fatalf("dial with another certificate: %v, want a handshake refused by the agent", err)
	}
	r := waitRecord(t, p.Slave, mark, 10*time.Second, "the refusal in the agent's log", msg("refused peer in TLS handshake"))
	if r.Str("fingerprint") != impostor.Fingerprint {
		t.Errorf("agent logged fingerprint %q, the impostor presented %s", r.Str("fingerprint"), impostor.Fingerprint)
	}
	t.Logf("agent: %s: %s from %s (%s)", r.Msg(), r.Str("reason"), r.Str("remote"), r.Str("fingerprint"))
	writeAndSync(t, p)
}

// writeAndSync writes a file on the master and waits for the replica.
func writeAndSync(t *testing.T, p *agentpair.Pair) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, "after-"+strconv.FormatInt(time.Now().UnixNano(), 10)), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p, syncTimeout)
}

// TestGarbageClosesOnlyThatConnection: UDP garbage on the agent's port is
// ignored; a QUIC connection with the pinned certificate that sends an
// oversized frame, malformed JSON or a wrong version is closed with the
// matching code. The agents' own connection stays up throughout and
// replication goes on.
func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	p := newPair(t, agentpair.Options{})
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)
	markA, markB := p.Master.Log.Len(), p.Slave.Log.Len()
	alpha := keyPair(t, p.Master)
	dst, err := net.ResolveUDPAddr("udp", p.Slave.Addr)
	if err != nil {
		t.Fatal(err)
	}

	// Plain UDP garbage.
	var udp *net.UDPConn
	inHost(t, p.Net.C, func() (err error) { udp, err = net.ListenUDP("udp", nil); return })
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		b := make([]byte, 1+r.IntN(1400))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%3 == 0 {
			b[0] |= 0xc0 // looks like a QUIC long header
		}
		if _, err := udp.WriteToUDP(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	udp.Close()

	// The pinned certificate but another protocol: refused in the TLS
	// handshake (no_application_protocol), before any frame is read.
	t.Run("unknown ALPN", func(t *testing.T) {
		mark := p.Slave.Log.Len()
		var pc net.PacketConn
		inHost(t, p.Net.C, func() (err error) { pc, err = net.ListenPacket("udp", "0.0.0.0:0"); return })
		defer pc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conf := &tls.Config{Certificates: []tls.Certificate{alpha}, NextProtos: []string{"flocker/0"},
			InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
		qc, err := quic.Dial(ctx, pc, dst, conf, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
		if err == nil {
			select {
			case <-qc.Context().Done():
				err = context.Cause(qc.Context())
			case <-ctx.Done():
				t.Fatal("a connection with ALPN flocker/0 stayed up")
			}
		}
		var te *quic.TransportError
		if !errors.As(err, &te) || !te.Remote || te.ErrorCode != quic.TransportErrorCode(0x100+120) {
			t.Fatalf("dial with ALPN flocker/0: %v, want the agent's no_application_protocol alert", err)
		}
		r := waitRecord(t, p.Slave, mark, 10*time.Second, "the refusal in the agent's log", msg("refused peer in TLS handshake"))
		t.Logf("agent: %s: %s", r.Msg(), r.Str("reason"))
	})

	for _, tc := range []struct {
		name  string
		bytes []byte
		code  transport.CloseCode
	}{
		{"oversized frame", []byte{transport.ProtocolVersion, byte(transport.TypeHello), 0xff, 0xff, 0xff, 0xff}, transport.CloseFrameTooLarge},
		{"malformed JSON", append([]byte{transport.ProtocolVersion, byte(transport.TypeHello), 0, 0, 0, 4}, "{{{{"...), transport.CloseMalformedFrame},
		{"wrong version", []byte("GET / HTTP/1.1\r\n\r\n"), transport.CloseUnsupportedVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pc net.PacketConn
			inHost(t, p.Net.C, func() (err error) { pc, err = net.ListenPacket("udp", "0.0.0.0:0"); return })
			defer pc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conf := &tls.Config{Certificates: []tls.Certificate{alpha}, NextProtos: []string{transport.ALPN},
				InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
			qc, err := quic.Dial(ctx, pc, dst, conf, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("handshake with the pinned certificate: %v", err)
			}
			defer qc.CloseWithError(0, "")
			s, err := qc.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			select {
			case <-qc.Context().Done():
			case <-ctx.Done():
				t.Fatal("the agent did not close the connection")
			}
			var ae *quic.ApplicationError
			if err := context.Cause(qc.Context()); !errors.As(err, &ae) || !ae.Remote || transport.CloseCode(ae.ErrorCode) != tc.code {
				t.Fatalf("closed with %v, want the agent's %s", err, tc.code)
			}
		})
	}
	// The records arrive through the agent's stderr a moment after the close.
	refused := msg("refused connection after the handshake")
	for deadline := time.Now().Add(10 * time.Second); p.Slave.Log.Count(markB, refused) < 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := p.Slave.Log.Count(markB, refused); n != 3 {
		t.Errorf("agent logged %d refused connections, want 3", n)
	}
	for _, node := range p.Nodes() {
		from := markA
		if node == p.Slave {
			from = markB
		}
		if k := node.Log.Count(from, msg("connection down")); k != 0 {
			t.Errorf("%s: the agents' own connection went down %d times", node.Name, k)
		}
		if !node.Running() {
			t.Errorf("%s: agent exited", node.Name)
		}
	}
	writeAndSync(t, p)
}

// fakeMaster is the test speaking as alpha (with alpha's key, from host A)
// to the slave agent, to send it streams no real master would.
type fakeMaster struct {
	sess  *transport.Session
	slave *agentpair.Node
}

// receiving waits until the slave agent logs that it receives transfer id.
func (f *fakeMaster) receiving(ctx context.Context, id uint64) error {
	_, err := f.slave.Log.Wait(ctx, 0, func(r agentpair.Record) bool {
		return r.Msg() == "receiving" && uint64(r.Num("id")) == id
	})
	return err
}

func newFakeMaster(t *testing.T, p *agentpair.Pair) *fakeMaster {
	t.Helper()
	var sess *transport.Session
	inHost(t, p.Master.Host, func() error {
		var err error
		sess, err = transport.NewSession(transport.SessionConfig{
			Config: transport.Config{
				Node: "alpha", Cert: keyPair(t, p.Master), ListenAddr: p.Master.Addr, Peer: "beta",
				PeerFingerprint: p.Slave.Fingerprint, Logger: slog.New(slog.DiscardHandler),
				LocalState: func() (transport.Role, uint64) { return transport.RoleMaster, 0 },
			},
			PeerAddr: p.Slave.Addr,
		})
		if err != nil {
			return err
		}
		return sess.Start()
	})
	return &fakeMaster{sess: sess, slave: p.Slave}
}

// transfer sends one stream and returns the slave's Ack. Both sides dial
// at first, so the connection a transfer starts on may be superseded by
// the other; then the transfer is sent again (with a new ID) on the
// connection that won, once the slave is done with the first attempt (it
// refuses a transfer while another is still being received), as the real
// master's retry does. Any other answer, a refusal included, is returned.
func (f *fakeMaster) transfer(t *testing.T, hdr transport.TransferBegin, data []byte, abort bool) *transport.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := hdr.ID
	for attempt := 1; ; attempt++ {
		c, err := f.sess.WaitConn(ctx, nil)
		if err != nil {
			t.Fatalf("fake master: no connection: %v", err)
		}
		hdr.ID = id*100 + uint64(attempt)
		a, err := sendStream(ctx, c, hdr, data, abort, f.receiving)
		if err == nil && (a.Code != "refused" || !strings.Contains(a.Error, "still being received")) {
			return a
		}
		if err == nil {
			err = errors.New(a.Error)
		}
		if attempt == 10 {
			t.Fatalf("transfer %d: %v", hdr.ID, err)
		}
		t.Logf("transfer %d: %v; sending again", hdr.ID, err)
		time.Sleep(250 * time.Millisecond)
	}
}

// sendStream sends one transfer and waits for its Ack. An aborted one is
// reset only once the slave has started receiving it (receiving waits for
// that): a stream reset before its header was read is dropped unseen.
func sendStream(ctx context.Context, c *transport.Conn, hdr transport.TransferBegin, data []byte, abort bool, receiving func(context.Context, uint64) error) (*transport.Ack, error) {
	ot, err := c.OpenTransfer(ctx, hdr)
	if err != nil {
		return nil, err
	}
	_, err = ot.Write(data)
	var ta *transport.TransferAbortedError
	switch {
	case errors.As(err, &ta) && ta.Remote:
		// The slave refused or failed the stream early; its Ack says why.
	case err != nil:
		return nil, err
	case abort:
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := receiving(rctx, hdr.ID)
		cancel()
		ot.Abort(transport.AbortSendFailed)
		if err != nil {
			return nil, fmt.Errorf("the slave did not start receiving: %w", err)
		}
	default:
		if err := ot.Close(); err != nil {
			return nil, err
		}
	}
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			return nil, err
		}
		if a, ok := m.(*transport.Ack); ok && a.ID == hdr.ID {
			return a, nil
		}
	}
}

// TestBadStreamLeavesNothing: a corrupted, a truncated and an aborted
// stream each leave no half-received dataset on the slave and are answered
// with an error; the real master then retries and replicates.
func TestBadStreamLeavesNothing(t *testing.T) {
	p := newPair(t, agentpair.Options{})
	writeRandom(t, filepath.Join(p.Master.Mountpoint, "data"), 8, 64<<10, 4)
	snap := p.Master.Dataset + "@flocker-0-1"
	zfsOut(t, "snapshot", snap)
	guid, err := strconv.ParseUint(zfsOut(t, "get", "-Hp", "-o", "value", "guid", snap), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := exec.Command("zfs", "send", snap).Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full stream of %s: %d bytes", snap, len(stream))
	start(t, p.Slave)
	f := newFakeMaster(t, p)
	defer f.sess.Close()

	corrupted := bytes.Clone(stream)
	for i := len(corrupted) / 2; i < len(corrupted)/2+64; i++ {
		corrupted[i] ^= 0xff
	}
	for i, tc := range []struct {
		name  string
		bytes []byte
		abort bool
	}{
		{"corrupted", corrupted, false},
		{"truncated", stream[:len(stream)/2], false},
		{"aborted", stream[:len(stream)/3], true},
	} {
		hdr := transport.TransferBegin{ID: uint64(100 + i), Dataset: agentpair.DatasetName, TargetGUID: guid,
			Target: "flocker-0-1", EstimatedBytes: uint64(len(stream))}
		a := f.transfer(t, hdr, tc.bytes, tc.abort)
		if a.Error == "" {
			t.Fatalf("%s stream acknowledged as received", tc.name)
		}
		t.Logf("%s stream: slave answered %s: %.160s", tc.name, a.Code, a.Error)
		if !tc.abort && a.Code != "bad_stream" {
			t.Errorf("%s stream: code %q, want bad_stream", tc.name, a.Code)
		}
		if datasetExists(t, p.Slave.Dataset) {
			t.Fatalf("%s stream left %s behind", tc.name, p.Slave.Dataset)
		}
	}
	f.sess.Close()
	start(t, p.Master)
	waitSame(t, p, firstSyncTimeout)
	if !p.Slave.Running() {
		t.Error("the slave agent exited")
	}
}

// TestHostileIncrementalsKeepTheReplica: with a replica in place, a fake
// master holding alpha's key sends a corrupted and a truncated incremental,
// a replay of a transfer the replica already holds (the honest header, then
// the old bytes under a new header) and a full stream under an incremental
// header. Each is refused or fails with an error; the replica stays
// readable at its last good snapshot and the slave keeps serving. A good
// incremental is then accepted, and the real master carries on from it.
func TestHostileIncrementalsKeepTheReplica(t *testing.T) {
	p := newPair(t, agentpair.Options{})
	writeRandom(t, filepath.Join(p.Master.Mountpoint, "data"), 4, 64<<10, 5)
	start(t, p.Slave, p.Master)
	waitSame(t, p, firstSyncTimeout)
	writeRandom(t, filepath.Join(p.Master.Mountpoint, "more"), 4, 64<<10, 6)
	waitSame(t, p, syncTimeout)
	if err := p.Master.Stop(); err != nil {
		t.Fatal(err)
	}
	replica := snapshotList(t, p.Slave.Dataset)
	if len(replica) < 2 {
		t.Fatalf("replica holds %v, want at least two snapshots", replica)
	}
	// The stopped master's content is what the replica holds (WaitSame);
	// the replica itself may be between an unmount and a mount (zfs-fuse
	// remounts it after each incremental).
	good, err := treesum.Sum(p.Master.Mountpoint)
	if err != nil {
		t.Fatal(err)
	}
	prev, top := short(replica[len(replica)-2]), short(replica[len(replica)-1])
	masterSnap := func(s string) string { return p.Master.Dataset + "@" + s }

	// A new snapshot on the master and the streams to play with.
	writeRandom(t, filepath.Join(p.Master.Mountpoint, "new"), 4, 64<<10, 8)
	next := "flocker-0-999999"
	zfsOut(t, "snapshot", masterSnap(next))
	guid := func(s string) uint64 {
		g, err := strconv.ParseUint(zfsOut(t, "get", "-Hp", "-o", "value", "guid", masterSnap(s)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	send := func(args ...string) []byte {
		out, err := exec.Command("zfs", append([]string{"send"}, args...)...).Output()
		if err != nil {
			t.Fatalf("zfs send %v: %v", args, err)
		}
		return out
	}
	incr := send("-i", masterSnap(top), masterSnap(next))
	old := send("-i", masterSnap(prev), masterSnap(top))
	full := send(masterSnap(replica[0][strings.IndexByte(replica[0], '@')+1:]))
	corrupted := bytes.Clone(incr)
	for i := len(corrupted) / 2; i < len(corrupted)/2+64 && i < len(corrupted); i++ {
		corrupted[i] ^= 0xff
	}
	fresh := transport.TransferBegin{Dataset: agentpair.DatasetName, BaseGUID: guid(top), TargetGUID: guid(next), Target: next}
	replayHdr := transport.TransferBegin{Dataset: agentpair.DatasetName, BaseGUID: guid(prev), TargetGUID: guid(top), Target: top}

	f := newFakeMaster(t, p)
	defer f.sess.Close()
	for i, tc := range []struct {
		name  string
		hdr   transport.TransferBegin
		bytes []byte
		codes []string // acceptable answers
	}{
		{"corrupted incremental", fresh, corrupted, []string{"bad_stream"}},
		{"truncated incremental", fresh, incr[:len(incr)/2], []string{"bad_stream"}},
		{"replay with its own header", replayHdr, old, []string{"refused"}},
		{"replayed bytes under a new header", fresh, old, []string{"bad_stream", "incremental_mismatch", "destination_modified", "destination_exists", "receive_failed"}},
		{"full stream under an incremental header", fresh, full, []string{"bad_stream", "incremental_mismatch", "destination_modified", "destination_exists", "receive_failed"}},
	} {
		hdr := tc.hdr
		hdr.ID = uint64(200 + i)
		hdr.EstimatedBytes = uint64(len(tc.bytes))
		a := f.transfer(t, hdr, tc.bytes, false)
		if a.Error == "" {
			t.Fatalf("%s: acknowledged as received (guid %d)", tc.name, a.ReceivedGUID)
		}
		t.Logf("%s: slave answered %s: %.200s", tc.name, a.Code, a.Error)
		logged := waitRecord(t, p.Slave, 0, 10*time.Second, "a logged refusal or failure", func(r agentpair.Record) bool {
			return (r.Msg() == "receive failed" || r.Msg() == "refused transfer") && uint64(r.Num("id")) == a.ID
		})
		if logged.Str("reason")+logged.Str("err") == "" {
			t.Errorf("%s: the slave's %q record gives no reason", tc.name, logged.Msg())
		}
		if !slices.Contains(tc.codes, a.Code) {
			t.Errorf("%s: code %q, want one of %v", tc.name, a.Code, tc.codes)
		}
		if got := snapshotList(t, p.Slave.Dataset); !slices.Equal(got, replica) {
			t.Fatalf("%s: the replica's snapshots changed: %v, were %v", tc.name, got, replica)
		}
		var sum string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if sum, err = treesum.Sum(p.Slave.Mountpoint); err == nil && sum == good {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the replica is not at its last good snapshot: %s (%v), want %s", tc.name, sum, err, good)
			}
		}
		if !p.Slave.Running() {
			t.Fatalf("%s: the slave agent exited", tc.name)
		}
	}
	hdr := fresh
	hdr.ID, hdr.EstimatedBytes = 300, uint64(len(incr))
	if a := f.transfer(t, hdr, incr, false); a.Error != "" || a.ReceivedGUID != fresh.TargetGUID {
		t.Fatalf("the good incremental: %s %s (guid %d)", a.Code, a.Error, a.ReceivedGUID)
	}
	f.sess.Close()
	start(t, p.Master)
	writeAndSync(t, p)
}

// snapshotList lists a dataset's snapshots, oldest first.
func snapshotList(t *testing.T, dataset string) []string {
	t.Helper()
	var names []string
	for _, l := range strings.Split(zfsOut(t, "list", "-H", "-t", "snapshot", "-o", "name", "-s", "createtxg", "-r", dataset), "\n") {
		if strings.HasPrefix(l, dataset+"@") {
			names = append(names, l)
		}
	}
	return names
}

func short(snap string) string { return snap[strings.IndexByte(snap, '@')+1:] }
