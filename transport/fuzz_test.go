package transport

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// The wire decoders face the network: whatever the bytes, they must return
// an error or a message that validates and re-encodes to itself, never panic
// and never hold more than MaxFrameBody for one frame. Seeds: valid frames of
// every type (below) plus testdata/fuzz/<target>/.

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, m := range validMessages() {
		b, err := AppendFrame(nil, m)
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// checkRoundTrip re-encodes a decoded message and decodes it again.
func checkRoundTrip(t *testing.T, m Message) {
	if err := m.Validate(); err != nil {
		t.Fatalf("decoder returned an invalid message %#v: %v", m, err)
	}
	b, err := AppendFrame(nil, m)
	if err != nil {
		t.Fatalf("decoded message does not re-encode: %#v: %v", m, err)
	}
	again, err := DecodeDatagram(b)
	if err != nil {
		t.Fatalf("re-encoded message does not decode: %v", err)
	}
	// Compared encoded: JSON does not tell an empty list from a missing one.
	b2, err := AppendFrame(nil, again)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the message: %#v -> %#v (%v)", m, again, err)
	}
}

func FuzzReadFrame(f *testing.F) {
	seeds := fuzzSeeds()
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add(bytes.Join(seeds, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			fr, err := ReadFrame(r)
			if err != nil {
				if err == io.EOF && r.Len() != 0 {
					t.Fatal("io.EOF with bytes left")
				}
				return
			}
			if len(fr.Body) > MaxFrameBody {
				t.Fatalf("frame body of %d bytes", len(fr.Body))
			}
			m, err := ParseMessage(fr)
			if errors.Is(err, ErrUnknownType) {
				continue // skipped on a live connection, too
			}
			if err != nil {
				if closeCodeFor(err) == CloseProtocolError {
					t.Fatalf("decoding error without a specific close code: %v", err)
				}
				return
			}
			checkRoundTrip(t, m)
		}
	})
}

func FuzzDecodeDatagram(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeDatagram(data)
		if err != nil {
			return
		}
		checkRoundTrip(t, m)
	})
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s[1], s[frameHeaderLen:])
	}
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		m, err := ParseMessage(Frame{Type: MsgType(typ), Body: body})
		if err != nil {
			return
		}
		if m.Type() != MsgType(typ) {
			t.Fatalf("frame type %d decoded as %v", typ, m.Type())
		}
		checkRoundTrip(t, m)
	})
}
