package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flockerha/flocker/transport/pki"
)

// identity is a node's name and in-memory ed25519 self-signed certificate.
type identity struct {
	name string
	cert tls.Certificate
	fp   string
}

// newIdentity makes real node credentials with pki, as flocker init does.
func newIdentity(t testing.TB, name string) identity {
	t.Helper()
	creds, err := pki.Generate(name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return identity{name: name, cert: cert, fp: creds.Fingerprint}
}

// logSink sends log lines to t.Log and keeps them for assertions. Lines
// logged after the test ended are kept but not sent to t.Log (which would
// panic).
type logSink struct {
	t    testing.TB
	mu   sync.Mutex
	buf  bytes.Buffer
	done atomic.Bool
}

func newLogger(t testing.TB) (*slog.Logger, *logSink) {
	s := &logSink{t: t}
	t.Cleanup(func() { s.done.Store(true) })
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug})), s
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf.Write(p)
	s.mu.Unlock()
	if _, bench := s.t.(*testing.B); !bench && !s.done.Load() { // benchmarks keep quiet
		s.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func staticState(r Role, epoch uint64) func() (Role, uint64) {
	return func() (Role, uint64) { return r, epoch }
}

// config is an endpoint config for self that pins peer, on a free loopback port.
func config(t testing.TB, self, peer identity) Config {
	log, _ := newLogger(t)
	return Config{
		Node:            self.name,
		Cert:            self.cert,
		ListenAddr:      "127.0.0.1:0",
		Peer:            peer.name,
		PeerFingerprint: peer.fp,
		LocalState:      staticState(RoleSlave, 1),
		Logger:          log,
	}
}

func listen(t testing.TB, cfg Config) *Endpoint {
	t.Helper()
	e, err := Listen(cfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// connect dials b from a and returns both ends.
func connect(t testing.TB, a, b *Endpoint) (ab, ba *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, err := b.Accept(ctx)
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- c
	}()
	ab, err := a.Dial(ctx, b.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	select {
	case ba = <-accepted:
	case err := <-acceptErr:
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { ab.Close(); ba.Close() })
	return ab, ba
}

// pair is two endpoints, alpha and beta, pinning each other.
type pair struct {
	alpha, beta      identity
	a, b             *Endpoint
	aLog, bLog       *logSink
	aConfig, bConfig Config
}

func newPair(t testing.TB, tweak func(a, b *Config)) *pair {
	t.Helper()
	p := &pair{alpha: newIdentity(t, "alpha"), beta: newIdentity(t, "beta")}
	ac, bc := config(t, p.alpha, p.beta), config(t, p.beta, p.alpha)
	ac.Logger, p.aLog = newLogger(t)
	bc.Logger, p.bLog = newLogger(t)
	ac.LocalState = staticState(RoleMaster, 7)
	if tweak != nil {
		tweak(&ac, &bc)
	}
	p.aConfig, p.bConfig = ac, bc
	p.a, p.b = listen(t, ac), listen(t, bc)
	return p
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip sends an Error message from one end and expects it at the other.
func roundTrip(t testing.TB, from, to *Conn, code string) {
	t.Helper()
	ctx := ctxTimeout(t, 10*time.Second)
	if err := from.Send(ctx, Error{Code: code, Message: "ping"}); err != nil {
		t.Fatalf("send: %v", err)
	}
	m, err := to.Receive(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if e, ok := m.(*Error); !ok || e.Code != code {
		t.Fatalf("received %#v, want Error %q", m, code)
	}
}
