package transport

import (
	"context"
	"errors"
	"github.com/quic-go/quic-go"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// freePort returns a loopback UDP address that was free a moment ago; the
// sessions need each other's address before either binds.
func freePort(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

type sessionNode struct {
	cfg    SessionConfig
	s      *Session
	events chan StateChange
	log    *logSink
}

// newSessionNodes configures alpha and beta sessions pointing at each other
// (not started).
func newSessionNodes(t testing.TB) (alpha, beta *sessionNode) {
	a, b := newIdentity(t, "alpha"), newIdentity(t, "beta")
	aAddr, bAddr := freePort(t), freePort(t)
	mk := func(self, peer identity, addr, peerAddr string) *sessionNode {
		n := &sessionNode{events: make(chan StateChange, 100)}
		cfg := config(t, self, peer)
		cfg.Logger, n.log = newLogger(t)
		cfg.ListenAddr = addr
		n.cfg = SessionConfig{Config: cfg, PeerAddr: peerAddr, OnState: func(ev StateChange) {
			select {
			case n.events <- ev:
			default:
				t.Errorf("%s: event queue full", self.name)
			}
		}}
		return n
	}
	return mk(a, b, aAddr, bAddr), mk(b, a, bAddr, aAddr)
}

func (n *sessionNode) start(t testing.TB) {
	t.Helper()
	s, err := NewSession(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("%s: start: %v", n.cfg.Node, err)
	}
	n.s = s
	t.Cleanup(func() { s.Close() })
}

// wait returns the next event with the given Up, skipping others.
func (n *sessionNode) wait(t testing.TB, up bool, within time.Duration) StateChange {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-n.events:
			if ev.Up == up {
				return ev
			}
		case <-deadline:
			t.Fatalf("%s: no up=%v event within %v", n.cfg.Node, up, within)
		}
	}
}

// drain returns the events queued so far.
func (n *sessionNode) drain() []StateChange {
	var evs []StateChange
	for {
		select {
		case ev := <-n.events:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

// settled waits until both sessions hold the same single live connection
// with no dial in flight (only a dial can still replace it) and returns
// alpha's and beta's ends.
func settled(t testing.TB, a, b *sessionNode) (ab, ba *Conn) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ab, ba = a.s.Conn(), b.s.Conn()
		if ab != nil && ba != nil && ab.Err() == nil && ba.Err() == nil && ab.Dialer() == ba.Dialer() &&
			!a.s.dialInFlight.Load() && !b.s.dialInFlight.Load() &&
			liveConns(a.s.ep) == 1 && liveConns(b.s.ep) == 1 && a.s.Conn() == ab && b.s.Conn() == ba {
			return ab, ba
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sessions did not settle on one connection: alpha %v (%d live), beta %v (%d live)",
		a.s.Conn() != nil, liveConns(a.s.ep), b.s.Conn() != nil, liveConns(b.s.ep))
	return nil, nil
}

func liveConns(e *Endpoint) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for c := range e.conns {
		if c.Err() == nil {
			n++
		}
	}
	return n
}

// Both nodes dial at once: each ends up with the same, single connection,
// however the race goes.
func TestSessionSimultaneousConnect(t *testing.T) {
	replaced := 0
	for i := range 5 {
		a, b := newSessionNodes(t)
		a.start(t)
		b.start(t)
		start := time.Now()
		a.wait(t, true, 15*time.Second)
		b.wait(t, true, 15*time.Second)
		ab, ba := settled(t, a, b)
		roundTrip(t, ab, ba, "session")
		roundTrip(t, ba, ab, "session")
		// A connection that lost the race shows up as a further Up (after a
		// replacement, or after the peer closed the loser this node held).
		for _, n := range []*sessionNode{a, b} {
			for _, ev := range n.drain() {
				if ev.Up {
					replaced++
				}
			}
		}
		t.Logf("round %d: settled on the connection dialed by %s after %v", i, ab.Dialer(), time.Since(start).Round(time.Millisecond))
		a.s.Close()
		b.s.Close()
	}
	t.Logf("further up events while settling: %d in 5 rounds", replaced)
}

func TestSessionReconnectsAfterPeerRestart(t *testing.T) {
	a, b := newSessionNodes(t)
	a.start(t)
	b.start(t)
	a.wait(t, true, 15*time.Second)
	settled(t, a, b)
	a.drain() // a connection that lost the initial race may have gone down

	// Orderly: beta shuts down (CONNECTION_CLOSE), alpha sees it at once.
	stopped := time.Now()
	mark := len(a.log.String())
	b.s.Close()
	down := a.wait(t, false, 10*time.Second)
	var ce *CloseError
	if !errors.As(down.Err, &ce) || ce.Code != CloseShutdown || !ce.Remote {
		t.Fatalf("alpha saw %v, want the peer's shutdown", down.Err)
	}
	t.Logf("orderly stop: alpha saw the connection down after %v", down.At.Sub(stopped).Round(time.Millisecond))
	// A peer that shut down in order is no failure: alpha says so quietly.
	for _, line := range strings.Split(a.log.String()[mark:], "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("alpha, on beta's orderly stop: %s", line)
		}
	}
	if !strings.Contains(a.log.String()[mark:], `msg="connection closed"`) {
		t.Error("alpha logged nothing of the closed connection")
	}
	time.Sleep(300 * time.Millisecond) // alpha is now dialing a closed port
	restarted := time.Now()
	b.start(t)
	up := a.wait(t, true, 10*time.Second)
	ab, ba := settled(t, a, b)
	a.drain()
	t.Logf("orderly restart: alpha up again %v after beta restarted (%s)", up.At.Sub(restarted).Round(time.Millisecond), up.Reason)
	roundTrip(t, ab, ba, "after_restart")

	for _, gap := range []time.Duration{0, 2 * time.Second} {
		// Killed: beta's socket vanishes without a CONNECTION_CLOSE, as with
		// SIGKILL. Alpha learns from the idle timeout or, once beta is back
		// on the same port, from a stateless reset or beta's new instance.
		killed := time.Now()
		kill(b.s)
		time.Sleep(gap)
		restarted := time.Now()
		b.start(t)
		var downAt time.Time
		var how string
		for downAt.IsZero() || a.s.Conn() == nil {
			select {
			case ev := <-a.events:
				if downAt.IsZero() {
					// A down event, or an up that replaced the dead one
					// because beta's new instance dialed in first.
					downAt, how = ev.At, ev.Reason
					if ev.Err != nil {
						how += ": " + ev.Err.Error()
					}
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("killed peer (gap %v): alpha never reconnected", gap)
			}
		}
		ab, ba := settled(t, a, b)
		a.drain()
		roundTrip(t, ab, ba, "after_kill")
		t.Logf("killed, restarted after %v: alpha dropped the old connection %v after the kill (%s), up again %v after the restart",
			gap, downAt.Sub(killed).Round(time.Millisecond), how, time.Since(restarted).Round(time.Millisecond))
	}
}

// kill drops a session's socket the way SIGKILL would: no CONNECTION_CLOSE
// reaches the peer. Then it reaps the session's goroutines.
func kill(s *Session) {
	s.ep.tr.Close() // quic-go: "abruptly terminates all existing connections"
	s.ep.udp.Close()
	s.Close()
}

func TestSessionLifecycle(t *testing.T) {
	before := runtime.NumGoroutine()
	a, b := newSessionNodes(t)
	s, err := NewSession(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // never started
		t.Fatal(err)
	}
	a.start(t)
	b.start(t)
	if err := a.s.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	settled(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := a.s.WaitConn(ctx, nil); err != nil || c != a.s.Conn() {
		t.Fatalf("WaitConn: %v", err)
	}
	for range 2 { // idempotent
		if err := a.s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if a.s.Conn() != nil {
		t.Fatal("a closed session still reports a connection")
	}
	// Every goroutine the sessions started is gone.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestSessionConfigChecked(t *testing.T) {
	a, _ := newSessionNodes(t)
	cases := map[string]func(c *SessionConfig){
		"no peer address":    func(c *SessionConfig) { c.PeerAddr = "" },
		"bad fingerprint":    func(c *SessionConfig) { c.PeerFingerprint = "sha256:abc" },
		"same names":         func(c *SessionConfig) { c.Peer = c.Node },
		"bad node name":      func(c *SessionConfig) { c.Node = "-alpha" },
		"no certificate":     func(c *SessionConfig) { c.Cert.Certificate = nil },
		"no state":           func(c *SessionConfig) { c.LocalState = nil },
		"no logger":          func(c *SessionConfig) { c.Logger = nil },
		"keep-alive >= idle": func(c *SessionConfig) { c.KeepAlive = 2 * time.Second },
		"negative timeout":   func(c *SessionConfig) { c.HelloTimeout = -1 },
	}
	for name, mutate := range cases {
		cfg := a.cfg
		mutate(&cfg)
		if _, err := NewSession(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// closedCleanly tells an orderly end from a failure: only the latter is
// logged as a warning.
func TestClosedCleanly(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&CloseError{Code: CloseShutdown, Remote: true}, true},
		{&CloseError{Code: CloseNormal, Remote: true}, true},
		{&CloseError{Code: CloseSuperseded, Remote: true}, true},
		{&CloseError{Code: CloseShutdown}, true},
		{&CloseError{Code: CloseProtocolError}, true}, // logged where it was found
		{&CloseError{Code: CloseProtocolError, Remote: true}, false},
		{&CloseError{Code: CloseWrongPeer, Remote: true}, false},
		{&quic.IdleTimeoutError{}, false},
		{&quic.StatelessResetError{}, false},
		{errors.New("something else"), false},
		{nil, false},
	} {
		if got := closedCleanly(tc.err); got != tc.want {
			t.Errorf("closedCleanly(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
