// Package transport connects two flocker nodes over QUIC (quic-go).
//
// Identity: each node presents its self-signed certificate and accepts
// exactly one peer, the sha256 fingerprint pinned in its config, in both
// directions (TLS 1.3, ALPN "flocker/1", no CA). Anything else (another
// certificate, none, another ALPN) is refused inside the TLS handshake,
// before a connection reaches the application, and logged with the
// fingerprint presented.
//
// Streams of one connection:
//   - the control stream, the one bidirectional stream, opened by the dialer:
//     Hello both ways, then typed messages (frame.go documents the wire
//     format and the compatibility rule; message.go the types). A malformed
//     frame closes that connection with a CloseCode, nothing else;
//   - one unidirectional stream per transfer: a TransferBegin frame, then the
//     raw zfs send bytes, back-pressured by QUIC flow control (transfer.go);
//   - QUIC datagrams for heartbeats, or the control stream when datagrams are
//     not negotiated or a heartbeat does not fit in one.
//
// Layers: Endpoint is the UDP socket that listens and dials (one port for
// both); Conn is one established connection; Session keeps exactly one live
// Conn to the peer, reconnecting with backoff (backoff.go has the numbers and
// the rule that settles simultaneous connects).
//
// Timing defaults are sized for failover with heartbeat 100 ms and failure
// timeout 1 s (endpoint.go): keep-alive 100 ms, idle timeout 1 s, handshake
// 1 s (2 s at most), reconnect backoff from 0 to a 2 s cap.
package transport
