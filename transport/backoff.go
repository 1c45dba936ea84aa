package transport

import "time"

// Reconnect timing. Failover wants the peers reconnected within a heartbeat
// or two of the peer coming back, so the backoff starts small and is capped
// low: the first attempt after a loss is immediate, then 50, 100, 200, 400,
// 800, 1600 ms, then every 2 s (each attempt itself lasts up to
// DefaultHandshakeTimeout x 2 while the peer is down). Each delay is drawn
// from [d/2, d) so two nodes that lost each other at the same moment do not
// dial in lockstep. At 2 s the cost of a down peer is one handshake attempt
// every few seconds: nothing.
const (
	BackoffBase = 50 * time.Millisecond
	BackoffMax  = 2 * time.Second
)

// backoffDelay is the wait before dial attempt n (0 is the first after a
// loss), with jitter in [0, 1).
func backoffDelay(n int, jitter float64) time.Duration {
	if n <= 0 {
		return 0
	}
	d := BackoffMax
	if n-1 < 16 {
		d = min(BackoffMax, BackoffBase<<(n-1))
	}
	return d/2 + time.Duration(jitter*float64(d/2))
}

// connInfo is what deciding between two connections to the peer looks at.
type connInfo struct {
	dialer       string // node that dialed it
	peerInstance uint64 // the peer's Hello.Instance
}

// supersedes reports whether a new connection cand replaces the current one
// cur, on a node named local talking to peer. Both nodes decide the same way,
// so a simultaneous connect leaves both with the same connection:
//   - a new instance of the peer (it restarted): cur is dead, take cand;
//   - the same dialer again: that node gave up on cur (it dials only when it
//     has no connection), take cand;
//   - one connection dialed by each node: keep the one dialed by the node
//     whose name sorts first.
func supersedes(local, peer string, cur, cand connInfo) bool {
	if cand.peerInstance != cur.peerInstance {
		return true
	}
	if cand.dialer == cur.dialer {
		return true
	}
	return cand.dialer == min(local, peer)
}
