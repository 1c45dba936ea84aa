package transport

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"

	"github.com/flockerha/flocker/transport/pki"
)

// ALPN is the only application protocol a flocker endpoint speaks.
const ALPN = "flocker/1"

// ErrPinMismatch is a peer certificate other than the pinned one, or none.
var ErrPinMismatch = errors.New("peer certificate does not match the pinned fingerprint")

// pinning holds what both directions of the handshake check: exactly one
// peer certificate, identified by its fingerprint. No CA, no chain, no expiry:
// the pin is the identity, as with SSH host keys. crypto/tls still checks the
// handshake signature, so the peer must hold the pinned certificate's key.
type pinning struct {
	cert    tls.Certificate
	want    string
	log     *slog.Logger
	refused *atomic.Uint64
}

// verify returns the VerifyPeerCertificate callback for one handshake with
// remote; side says which end this node is, for the log.
func (p *pinning) verify(side string, remote net.Addr) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			p.refuse(side, remote, "none", "no certificate presented")
			return fmt.Errorf("%w: no certificate presented", ErrPinMismatch)
		}
		got := pki.Fingerprint(raw[0])
		if subtle.ConstantTimeCompare([]byte(got), []byte(p.want)) != 1 {
			p.refuse(side, remote, got, "certificate not pinned")
			return fmt.Errorf("%w: presented %s", ErrPinMismatch, got)
		}
		return nil
	}
}

func (p *pinning) refuse(side string, remote net.Addr, presented, why string) {
	p.refused.Add(1)
	p.log.Warn("refused peer in TLS handshake", "side", side, "remote", addrString(remote),
		"reason", why, "fingerprint", presented, "pinned", p.want)
}

// serverTLS answers every ClientHello with a config bound to that client's
// address, so refusals are logged with it.
func (p *pinning) serverTLS() *tls.Config {
	base := p.common()
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		var remote net.Addr
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr()
		}
		if !slices.Contains(hello.SupportedProtos, ALPN) {
			// crypto/tls refuses it with no_application_protocol; log it here,
			// where the offered protocols are known. No certificate is sent
			// before ALPN is settled, so there is no fingerprint yet.
			p.refuse("server", remote, "not presented", fmt.Sprintf("ALPN %q, want %q", hello.SupportedProtos, ALPN))
		}
		c := p.common()
		// Request rather than require: with RequireAnyClientCert crypto/tls
		// refuses a missing certificate before our callback could log it.
		c.ClientAuth = tls.RequestClientCert
		c.VerifyPeerCertificate = p.verify("server", remote)
		return c, nil
	}
	return base
}

func (p *pinning) clientTLS(remote net.Addr) *tls.Config {
	c := p.common()
	// The server certificate is self-signed: chain verification is replaced
	// by the pin check in VerifyPeerCertificate, which runs regardless.
	c.InsecureSkipVerify = true
	c.ServerName = "flocker"
	c.VerifyPeerCertificate = p.verify("client", remote)
	return c
}

func (p *pinning) common() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		// Resumption would skip the certificate exchange the pin relies on.
		SessionTicketsDisabled: true,
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	return a.String()
}
