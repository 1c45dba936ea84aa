package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/transport/pki"
	"github.com/quic-go/quic-go"
)

func TestHandshakePinnedBothWays(t *testing.T) {
	p := newPair(t, nil)
	ab, ba := connect(t, p.a, p.b)
	if got := ab.Peer(); got.Node != "beta" || got.Role != RoleSlave || got.Epoch != 1 || got.Version != ProtocolVersion || got.Instance == 0 {
		t.Fatalf("alpha saw hello %+v", got)
	}
	if got := ba.Peer(); got.Node != "alpha" || got.Role != RoleMaster || got.Epoch != 7 {
		t.Fatalf("beta saw hello %+v", got)
	}
	if ab.Dialer() != "alpha" || ba.Dialer() != "alpha" {
		t.Fatalf("dialer: %q / %q", ab.Dialer(), ba.Dialer())
	}
	for _, c := range []*Conn{ab, ba} {
		st := c.qc.ConnectionState().TLS
		if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != ALPN || len(st.PeerCertificates) != 1 {
			t.Fatalf("tls state: version %x alpn %q certs %d", st.Version, st.NegotiatedProtocol, len(st.PeerCertificates))
		}
		if !c.DatagramsEnabled() {
			t.Fatal("datagrams not negotiated")
		}
	}
	if fp := pki.Fingerprint(ab.qc.ConnectionState().TLS.PeerCertificates[0].Raw); fp != p.beta.fp {
		t.Fatalf("alpha talked to %s, pinned %s", fp, p.beta.fp)
	}
	roundTrip(t, ab, ba, "to_beta")
	roundTrip(t, ba, ab, "to_alpha")
	if p.a.Refused() != 0 || p.b.Refused() != 0 {
		t.Fatalf("refused counters %d/%d", p.a.Refused(), p.b.Refused())
	}
}

func TestHandshakeIPv6Loopback(t *testing.T) {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	testutil.RequireNoError(t, "IPv6 loopback", err)
	c.Close()
	p := newPair(t, func(a, b *Config) { a.ListenAddr, b.ListenAddr = "[::1]:0", "[::1]:0" })
	ab, ba := connect(t, p.a, p.b)
	if ip := ab.RemoteAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv6loopback) {
		t.Fatalf("connected to %v", ip)
	}
	roundTrip(t, ab, ba, "over_ipv6")
}

// rawDial is a QUIC client outside the Endpoint, for peers that break the
// rules: it dials with whatever TLS config the test gives it.
func rawDial(t testing.TB, addr string, conf *tls.Config) (*quic.Conn, error) {
	t.Helper()
	ctx := ctxTimeout(t, 10*time.Second)
	qc, err := quic.DialAddr(ctx, addr, conf, &quic.Config{EnableDatagrams: true, HandshakeIdleTimeout: 2 * time.Second})
	if err == nil {
		t.Cleanup(func() { qc.CloseWithError(0, "") })
	}
	return qc, err
}

// rawClientTLS presents cert (none when nil) and skips verifying the server.
func rawClientTLS(cert *tls.Certificate, alpn string) *tls.Config {
	c := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// refusedByServer waits until the server closes qc (in TLS 1.3 the client
// may finish its half of the handshake before the server checks its
// certificate) and returns the close error.
func refusedByServer(t testing.TB, qc *quic.Conn, dialErr error) error {
	t.Helper()
	if dialErr != nil {
		return dialErr
	}
	select {
	case <-qc.Context().Done():
		return context.Cause(qc.Context())
	case <-time.After(10 * time.Second):
		t.Fatal("server did not close the connection")
		return nil
	}
}

// noConnAccepted asserts the endpoint's handler never got a connection (so
// never a message) from the refused peer.
func noConnAccepted(t testing.TB, e *Endpoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if c, err := e.Accept(ctx); err == nil {
		c.Close()
		t.Fatalf("endpoint accepted a connection from the refused peer (%s)", c.Peer().Node)
	}
}

// refusal is what one refused handshake left: the dialer's error, the
// endpoint that refused, its log, and the fingerprint (or ALPN) the log
// must name.
type refusal struct {
	err       error
	refuser   *Endpoint
	log       *logSink
	presented string
}

func TestHandshakeRefusals(t *testing.T) {
	const badCert, noALPN = 42, 120 // TLS alerts
	cases := []struct {
		name string
		run  func(t *testing.T, p *pair) refusal
		// what the dialing side sees
		alerts []tls.AlertError
		remote bool // the peer refused the dialer (not the dialer the peer)
	}{
		{
			name: "wrong server certificate",
			run: func(t *testing.T, p *pair) refusal {
				// An impostor listens as beta with another certificate; it
				// pins alpha correctly, so only alpha's pin can refuse.
				impostor := newIdentity(t, "beta")
				cfg := config(t, impostor, p.alpha)
				evil := listen(t, cfg)
				_, err := p.a.Dial(ctxTimeout(t, 10*time.Second), evil.Addr().String())
				noConnAccepted(t, evil)
				return refusal{err, p.a, p.aLog, impostor.fp}
			},
			alerts: []tls.AlertError{badCert},
			remote: false,
		},
		{
			name: "wrong client certificate",
			run: func(t *testing.T, p *pair) refusal {
				impostor := newIdentity(t, "alpha")
				evil := listen(t, config(t, impostor, p.beta))
				_, err := evil.Dial(ctxTimeout(t, 10*time.Second), p.b.Addr().String())
				noConnAccepted(t, p.b)
				return refusal{err, p.b, p.bLog, impostor.fp}
			},
			alerts: []tls.AlertError{badCert},
			remote: true,
		},
		{
			name: "no client certificate",
			run: func(t *testing.T, p *pair) refusal {
				qc, err := rawDial(t, p.b.Addr().String(), rawClientTLS(nil, ALPN))
				err = refusedByServer(t, qc, err)
				noConnAccepted(t, p.b)
				return refusal{mapErr(err), p.b, p.bLog, "fingerprint=none"}
			},
			alerts: []tls.AlertError{badCert},
			remote: true,
		},
		{
			name: "wrong ALPN",
			run: func(t *testing.T, p *pair) refusal {
				qc, err := rawDial(t, p.b.Addr().String(), rawClientTLS(&p.alpha.cert, "h3"))
				err = refusedByServer(t, qc, err)
				noConnAccepted(t, p.b)
				return refusal{mapErr(err), p.b, p.bLog, `[\"h3\"]`}
			},
			alerts: []tls.AlertError{noALPN},
			remote: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, nil)
			r := tc.run(t, p)
			err, refuser, logs, presented := r.err, r.refuser, r.log, r.presented
			var he *HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("error %v (%T), want a *HandshakeError", err, err)
			}
			ok := false
			for _, a := range tc.alerts {
				ok = ok || he.Alert == a
			}
			if !ok || he.Remote != tc.remote {
				t.Fatalf("alert %v remote %v, want one of %v remote %v", he.Alert, he.Remote, tc.alerts, tc.remote)
			}
			if refuser.Refused() == 0 {
				t.Fatal("the refusing endpoint did not count the refusal")
			}
			if !he.Remote && !errors.Is(err, ErrPinMismatch) {
				t.Fatalf("local refusal %v does not say the pin did not match", err)
			}
			if !strings.Contains(logs.String(), presented) {
				t.Fatalf("refusal log does not name %s:\n%s", presented, logs)
			}
			// The listener keeps serving the right peer.
			ab, ba := connect(t, p.a, p.b)
			roundTrip(t, ab, ba, "after_refusal")
		})
	}
}
