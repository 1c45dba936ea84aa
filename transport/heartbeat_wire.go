package transport

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// A heartbeat's dataset list in JSON costs about 65 bytes per dataset
// ({"dataset":"s01","newest_guid":8535266988221193190,"healthy":true}),
// so 50 datasets made a 3.3 kB heartbeat: too big for a QUIC datagram
// (about 1.2 kB), and it went over the control stream instead, behind
// snapshot lists and transfer messages, where a heartbeat's short send
// deadline cut frames and cost the connection (measured, 50 datasets on
// zfs-fuse). On the wire the list is packed instead, as one base64 string
// "ds" of, per dataset:
//
//	uvarint(len(name)) name  guid (8 bytes, big endian)  flags (1 byte: bit 0 healthy)
//
// 12 bytes plus the name per dataset, 16 plus the name after base64: 50
// datasets with short names fit a datagram. Longer lists still fall back to
// the control stream (Conn.SendHeartbeat).

// heartbeatWire is Heartbeat's JSON form.
type heartbeatWire struct {
	Seq    uint64 `json:"seq"`
	Role   Role   `json:"role"`
	Epoch  uint64 `json:"epoch"`
	DS     string `json:"ds,omitempty"`
	SentNS int64  `json:"sent_ns,omitempty"`
	EchoNS int64  `json:"echo_ns,omitempty"`
	HeldNS int64  `json:"held_ns,omitempty"`
}

const flagHealthy = 1

// MarshalJSON packs the dataset list.
func (m Heartbeat) MarshalJSON() ([]byte, error) {
	w := heartbeatWire{Seq: m.Seq, Role: m.Role, Epoch: m.Epoch, SentNS: m.SentNS, EchoNS: m.EchoNS, HeldNS: m.HeldNS}
	if len(m.Datasets) > 0 {
		w.DS = base64.RawStdEncoding.EncodeToString(packDatasets(m.Datasets))
	}
	return json.Marshal(w)
}

// UnmarshalJSON unpacks the dataset list; the names are checked by
// Validate, like every other message's.
func (m *Heartbeat) UnmarshalJSON(b []byte) error {
	var w heartbeatWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	hb := Heartbeat{Seq: w.Seq, Role: w.Role, Epoch: w.Epoch, SentNS: w.SentNS, EchoNS: w.EchoNS, HeldNS: w.HeldNS}
	if w.DS != "" {
		raw, err := base64.RawStdEncoding.DecodeString(w.DS)
		if err != nil {
			return fmt.Errorf("ds: %w", err)
		}
		if hb.Datasets, err = unpackDatasets(raw); err != nil {
			return fmt.Errorf("ds: %w", err)
		}
	}
	*m = hb
	return nil
}

func packDatasets(ds []DatasetHeartbeat) []byte {
	var b []byte
	for _, d := range ds {
		b = binary.AppendUvarint(b, uint64(len(d.Dataset)))
		b = append(b, d.Dataset...)
		b = binary.BigEndian.AppendUint64(b, d.NewestGUID)
		var flags byte
		if d.Healthy {
			flags |= flagHealthy
		}
		b = append(b, flags)
	}
	return b
}

var errPacked = errors.New("bad packed dataset list")

func unpackDatasets(b []byte) ([]DatasetHeartbeat, error) {
	var out []DatasetHeartbeat
	for len(b) > 0 {
		if len(out) == maxHeartbeatSets {
			return nil, fmt.Errorf("%w: more than %d entries", errPacked, maxHeartbeatSets)
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || n > maxNameLen || uint64(len(b)-k) < n+9 {
			return nil, fmt.Errorf("%w: entry %d cut short or too long", errPacked, len(out))
		}
		b = b[k:]
		d := DatasetHeartbeat{Dataset: string(b[:n]), NewestGUID: binary.BigEndian.Uint64(b[n : n+8])}
		flags := b[n+8]
		if flags&^flagHealthy != 0 {
			return nil, fmt.Errorf("%w: entry %d: unknown flags %#x", errPacked, len(out), flags)
		}
		d.Healthy = flags&flagHealthy != 0
		out = append(out, d)
		b = b[n+9:]
	}
	return out, nil
}
