package transport

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Wire format of one frame (control stream, transfer header, datagram):
//
//	byte 0     protocol version (ProtocolVersion)
//	byte 1     message type (MsgType)
//	bytes 2-5  body length, big-endian uint32, at most MaxFrameBody
//	body       one JSON object
//
// Why JSON: control messages are few per second and small, so encoding speed
// does not matter (the bulk zfs send bytes never pass through it); JSON is in
// the standard library, readable in a packet dump, and fuzzes well. The
// binary header keeps the parts that must be checked before allocating
// (version, type, length) out of the JSON.
//
// Compatibility rule: a receiver ignores JSON fields it does not know and
// skips (counts) message types it does not know, so a newer peer may add
// optional fields and advisory messages without breaking an older one during
// a rolling upgrade. Anything an older peer would misread if it ignored it
// must bump ProtocolVersion, and a version mismatch closes the connection
// with CloseUnsupportedVersion. Everything a receiver does know is strict:
// wrong JSON types, trailing bytes, missing or out-of-range fields are errors.
const (
	ProtocolVersion = 1
	frameHeaderLen  = 6
	// MaxFrameBody bounds one message; a larger length prefix closes the
	// connection before anything is allocated for it.
	MaxFrameBody = 1 << 20
)

// Decoding errors. Each maps to the CloseCode a connection is closed with
// (see closeCodeFor).
var (
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
	ErrFrameTooLarge      = errors.New("frame too large")
	ErrMalformedFrame     = errors.New("malformed frame")
	ErrUnknownType        = errors.New("unknown message type")
)

// Frame is a decoded frame header with its still-encoded body.
type Frame struct {
	Type MsgType
	Body []byte
}

// AppendFrame validates m and appends its frame to dst. Invalid messages are
// never sent: the peer would close the connection over them.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	if m == nil {
		return dst, fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	if err := m.Validate(); err != nil {
		return dst, fmt.Errorf("encoding %s: %w", m.Type(), err)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return dst, fmt.Errorf("encoding %s: %w", m.Type(), err)
	}
	if len(body) > MaxFrameBody {
		return dst, fmt.Errorf("encoding %s: %w: %d bytes, at most %d", m.Type(), ErrFrameTooLarge, len(body), MaxFrameBody)
	}
	dst = append(dst, ProtocolVersion, byte(m.Type()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...), nil
}

func checkVersion(v byte) error {
	if v != ProtocolVersion {
		return fmt.Errorf("%w %d (this node speaks %d)", ErrUnsupportedVersion, v, ProtocolVersion)
	}
	return nil
}

// parseHeader checks a frame header and returns the type and body length.
func parseHeader(h []byte) (MsgType, int, error) {
	if err := checkVersion(h[0]); err != nil {
		return 0, 0, err
	}
	n := binary.BigEndian.Uint32(h[2:])
	if n > MaxFrameBody {
		return 0, 0, fmt.Errorf("%w: length prefix %d, at most %d", ErrFrameTooLarge, n, MaxFrameBody)
	}
	return MsgType(h[1]), int(n), nil
}

// ReadFrame reads one frame from a stream. It returns io.EOF only when the
// stream ends cleanly before a frame starts; a frame cut short is
// ErrMalformedFrame. It never reads past the frame, so raw bytes may follow.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:1]); err != nil {
		return Frame{}, err // io.EOF: clean end between frames
	}
	if err := checkVersion(h[0]); err != nil { // refuse before waiting for more bytes
		return Frame{}, err
	}
	if _, err := io.ReadFull(r, h[1:]); err != nil {
		return Frame{}, truncated("header", err)
	}
	typ, n, err := parseHeader(h[:])
	if err != nil {
		return Frame{}, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Frame{}, truncated(fmt.Sprintf("%s body of %d bytes", typ, n), err)
	}
	return Frame{Type: typ, Body: body}, nil
}

func truncated(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated %s", ErrMalformedFrame, what)
	}
	return err // the stream's own error (reset, connection closed)
}

// DecodeDatagram decodes a datagram, which carries exactly one frame.
func DecodeDatagram(b []byte) (Message, error) {
	if len(b) > 0 {
		if err := checkVersion(b[0]); err != nil {
			return nil, err
		}
	}
	if len(b) < frameHeaderLen {
		return nil, fmt.Errorf("%w: datagram of %d bytes is shorter than a frame header", ErrMalformedFrame, len(b))
	}
	typ, n, err := parseHeader(b[:frameHeaderLen])
	if err != nil {
		return nil, err
	}
	if len(b)-frameHeaderLen != n {
		return nil, fmt.Errorf("%w: datagram body is %d bytes, header says %d", ErrMalformedFrame, len(b)-frameHeaderLen, n)
	}
	return ParseMessage(Frame{Type: typ, Body: b[frameHeaderLen:]})
}

// ParseMessage decodes and validates a frame's body.
func ParseMessage(f Frame) (Message, error) {
	mk, ok := newMessage[f.Type]
	if !ok {
		return nil, fmt.Errorf("%w %d", ErrUnknownType, uint8(f.Type))
	}
	m := mk()
	dec := json.NewDecoder(bytes.NewReader(f.Body))
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%w: %s body: %v", ErrMalformedFrame, f.Type, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: %s body: trailing data after the JSON object", ErrMalformedFrame, f.Type)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Type, err)
	}
	return m, nil
}
