package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"
)

// CloseCode is the QUIC application error code a connection is closed with.
// Values are part of the wire protocol: never renumber, only append.
type CloseCode uint64

const (
	CloseNormal             CloseCode = 0x0 // orderly close
	CloseProtocolError      CloseCode = 0x1 // the peer broke the protocol in some other way
	CloseUnsupportedVersion CloseCode = 0x2 // frame or Hello with another protocol version
	CloseFrameTooLarge      CloseCode = 0x3 // length prefix above MaxFrameBody
	CloseMalformedFrame     CloseCode = 0x4 // truncated frame, bad JSON
	CloseInvalidMessage     CloseCode = 0x5 // decoded but failed validation
	CloseUnexpectedMessage  CloseCode = 0x6 // valid message in the wrong place
	CloseWrongPeer          CloseCode = 0x7 // Hello names another node
	CloseSuperseded         CloseCode = 0x8 // another connection to the same peer won
	CloseShutdown           CloseCode = 0x9 // this node is shutting down
	CloseHelloTimeout       CloseCode = 0xa // no Hello in time
)

func (c CloseCode) String() string {
	switch c {
	case CloseNormal:
		return "normal"
	case CloseProtocolError:
		return "protocol error"
	case CloseUnsupportedVersion:
		return "unsupported version"
	case CloseFrameTooLarge:
		return "frame too large"
	case CloseMalformedFrame:
		return "malformed frame"
	case CloseInvalidMessage:
		return "invalid message"
	case CloseUnexpectedMessage:
		return "unexpected message"
	case CloseWrongPeer:
		return "wrong peer"
	case CloseSuperseded:
		return "superseded"
	case CloseShutdown:
		return "shutdown"
	case CloseHelloTimeout:
		return "hello timeout"
	}
	return fmt.Sprintf("code %#x", uint64(c))
}

// closeCodeFor maps a decoding error to the code the connection is closed with.
func closeCodeFor(err error) CloseCode {
	switch {
	case errors.Is(err, ErrUnsupportedVersion):
		return CloseUnsupportedVersion
	case errors.Is(err, ErrFrameTooLarge):
		return CloseFrameTooLarge
	case errors.Is(err, ErrMalformedFrame):
		return CloseMalformedFrame
	case errors.Is(err, ErrInvalidMessage):
		return CloseInvalidMessage
	case errors.Is(err, errUnexpected):
		return CloseUnexpectedMessage
	case errors.Is(err, errWrongPeer):
		return CloseWrongPeer
	}
	return CloseProtocolError
}

var (
	errUnexpected = errors.New("unexpected message")
	errWrongPeer  = errors.New("wrong peer")
)

// CloseError is a connection closed with an application code, by this node
// (Remote false) or by the peer. It matches errors.Is(err, net.ErrClosed).
type CloseError struct {
	Code   CloseCode
	Remote bool
	Reason string
}

func (e *CloseError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by peer"
	}
	if e.Reason == "" {
		return fmt.Sprintf("connection closed %s: %s", who, e.Code)
	}
	return fmt.Sprintf("connection closed %s: %s: %s", who, e.Code, e.Reason)
}

func (e *CloseError) Unwrap() error { return net.ErrClosed }

// AbortCode is the QUIC stream error code a transfer is aborted with.
type AbortCode uint64

const (
	AbortCanceled      AbortCode = 0x1 // the caller gave up (context, Close before the end)
	AbortSendFailed    AbortCode = 0x2 // zfs send failed on the sender
	AbortReceiveFailed AbortCode = 0x3 // zfs receive failed on the receiver
	AbortShutdown      AbortCode = 0x4 // the node is shutting down
	AbortBadHeader     AbortCode = 0x5 // the transfer header did not arrive in time
)

func (c AbortCode) String() string {
	switch c {
	case AbortCanceled:
		return "canceled"
	case AbortSendFailed:
		return "send failed"
	case AbortReceiveFailed:
		return "receive failed"
	case AbortShutdown:
		return "shutdown"
	case AbortBadHeader:
		return "bad header"
	}
	return fmt.Sprintf("code %#x", uint64(c))
}

// ErrTransferAborted matches every *TransferAbortedError with errors.Is.
var ErrTransferAborted = errors.New("transfer aborted")

// TransferAbortedError is a transfer stream reset by one side. A transfer
// whose connection died returns the connection's error instead, so the two
// cases stay distinct.
type TransferAbortedError struct {
	Code   AbortCode
	Remote bool // the other side aborted
}

func (e *TransferAbortedError) Error() string {
	if e.Remote {
		return fmt.Sprintf("transfer aborted by peer: %s", e.Code)
	}
	return fmt.Sprintf("transfer aborted locally: %s", e.Code)
}

func (e *TransferAbortedError) Is(target error) bool { return target == ErrTransferAborted }

// HandshakeError is a TLS refusal during the QUIC handshake: the peer refused
// this node (Remote) or this node refused the peer (wrong or missing
// certificate, wrong ALPN).
type HandshakeError struct {
	Remote bool
	Alert  tls.AlertError
	Err    error
}

func (e *HandshakeError) Error() string {
	if e.Remote {
		return fmt.Sprintf("handshake refused by peer: %v", e.Alert)
	}
	return fmt.Sprintf("handshake refused: %v", e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// mapErr turns quic-go's errors into this package's.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return &CloseError{Code: CloseCode(ae.ErrorCode), Remote: ae.Remote, Reason: ae.ErrorMessage}
	}
	if se, ok := errors.AsType[*quic.StreamError](err); ok {
		return &TransferAbortedError{Code: AbortCode(se.ErrorCode), Remote: se.Remote}
	}
	if te, ok := errors.AsType[*quic.TransportError](err); ok && te.ErrorCode.IsCryptoError() {
		return &HandshakeError{Remote: te.Remote, Alert: tls.AlertError(te.ErrorCode - 0x100), Err: err}
	}
	return err
}
