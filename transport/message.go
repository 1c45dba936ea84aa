package transport

import (
	"errors"
	"fmt"
	"strings"
)

// MsgType tells which message a frame carries. Values are part of the wire
// protocol: never renumber, only append.
type MsgType uint8

// The message types of protocol version 1.
const (
	TypeHello         MsgType = 1
	TypeSnapshotList  MsgType = 2
	TypeTransferBegin MsgType = 3
	TypeTransferDone  MsgType = 4
	TypeAck           MsgType = 5
	TypeError         MsgType = 6
	TypeHeartbeat     MsgType = 7
	TypeHandoff       MsgType = 8
)

// newMessage is the decoding table: adding a message type is a struct with
// Type and Validate plus one line here.
var newMessage = map[MsgType]func() Message{
	TypeHello:         func() Message { return new(Hello) },
	TypeSnapshotList:  func() Message { return new(SnapshotList) },
	TypeTransferBegin: func() Message { return new(TransferBegin) },
	TypeTransferDone:  func() Message { return new(TransferDone) },
	TypeAck:           func() Message { return new(Ack) },
	TypeError:         func() Message { return new(Error) },
	TypeHeartbeat:     func() Message { return new(Heartbeat) },
	TypeHandoff:       func() Message { return new(Handoff) },
}

func (t MsgType) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeSnapshotList:
		return "snapshot-list"
	case TypeTransferBegin:
		return "transfer-begin"
	case TypeTransferDone:
		return "transfer-done"
	case TypeAck:
		return "ack"
	case TypeError:
		return "error"
	case TypeHeartbeat:
		return "heartbeat"
	case TypeHandoff:
		return "handoff"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Message is one typed message of the control protocol. Decoded messages are
// returned as pointers (*Hello, *SnapshotList, ...); values and pointers both
// encode.
type Message interface {
	Type() MsgType
	// Validate reports the first field that is missing or out of range.
	Validate() error
}

// Role is a node's role for the protected datasets.
type Role string

// Roles as the role/epoch state machine (issue 5) names them.
const (
	RoleMaster Role = "master"
	RoleSlave  Role = "slave"
)

// Limits on decoded values: far above anything flocker sends, low enough that
// a hostile or broken peer cannot make a receiver hold absurd state.
const (
	maxNameLen        = 255     // ZFS names are at most 255 bytes
	maxNodeNameLen    = 64      // node names come from [node] name
	maxSnapshots      = 8192    // retention keeps ~150 per dataset by default
	maxHeartbeatSets  = 256     // datasets in one heartbeat
	maxErrorTextLen   = 4096    // free text in Error, TransferDone, Ack
	maxErrorCodeLen   = 64      // Error.Code
	maxEstimatedBytes = 1 << 56 // 64 PiB: no single zfs send is larger
	maxResumeTokenLen = 4096    // OpenZFS tokens are a few hundred bytes of hex
)

// Hello opens the control stream in both directions: the dialer sends first,
// the acceptor answers. A peer whose Hello does not match (name, version) is
// closed with CloseWrongPeer or CloseUnsupportedVersion.
type Hello struct {
	Node    string `json:"node"`
	Version uint8  `json:"version"`
	Role    Role   `json:"role"`
	Epoch   uint64 `json:"epoch"`
	// Instance is random per process start: a connection from a new instance
	// supersedes one from an older instance of the same peer at once (the
	// peer restarted), instead of waiting for the old one's idle timeout.
	Instance uint64 `json:"instance"`
}

// Snapshot is one snapshot of a dataset as ZFS reports it; the GUID is its
// identity across hosts.
type Snapshot struct {
	Name      string `json:"name"`      // the part after '@'
	GUID      uint64 `json:"guid"`      // ZFS guid property
	CreateTXG uint64 `json:"createtxg"` // ZFS createtxg property
	Creation  int64  `json:"creation"`  // unix seconds
}

// SnapshotList is a node's snapshots of one dataset, by logical name.
type SnapshotList struct {
	Dataset   string     `json:"dataset"`
	Snapshots []Snapshot `json:"snapshots"`
	// ResumeToken is the receive_resume_token of a partial receive the
	// sender of the list holds (OpenZFS `receive -s`); the other side
	// continues it with `zfs send -t` instead of starting over. Optional.
	ResumeToken string `json:"resume_token,omitempty"`
}

// TransferBegin is the header frame of a transfer stream: a zfs send of
// Dataset from BaseGUID (0: full send) to TargetGUID follows as raw bytes.
type TransferBegin struct {
	ID             uint64 `json:"id"` // chosen by the sender, echoed in TransferDone and Ack
	Dataset        string `json:"dataset"`
	BaseGUID       uint64 `json:"base_guid,omitempty"`
	TargetGUID     uint64 `json:"target_guid"`
	EstimatedBytes uint64 `json:"estimated_bytes,omitempty"` // 0: unknown
	// Target is the target snapshot's name (the part after '@'): the
	// receiver reads the received snapshot's properties by name instead of
	// listing them all, and names it in its logs. Optional.
	Target string `json:"target,omitempty"`
	// Resume marks the rest of an interrupted stream (`zfs send -t` with the
	// receiver's SnapshotList.ResumeToken): the receiver keeps its partial
	// state for it, where for any other transfer it discards that state
	// first. Optional.
	Resume bool `json:"resume,omitempty"`
}

// TransferDone is the sender's account of a transfer on the control stream:
// how many bytes it wrote and, when the send failed, why.
type TransferDone struct {
	ID         uint64 `json:"id"`
	Dataset    string `json:"dataset"`
	TargetGUID uint64 `json:"target_guid"`
	Bytes      uint64 `json:"bytes"`
	Error      string `json:"error,omitempty"`
}

// Ack is the receiver's answer to a transfer: the snapshot it now holds, or
// why the receive failed.
type Ack struct {
	ID           uint64 `json:"id"`
	Dataset      string `json:"dataset"`
	ReceivedGUID uint64 `json:"received_guid,omitempty"`
	Error        string `json:"error,omitempty"`
	// Code classifies Error for the sender (lower_snake_case, like
	// Error.Code), e.g. "pool_full" or "bad_stream". Optional.
	Code string `json:"code,omitempty"`
}

// Error reports a failure that is not tied to one transfer.
type Error struct {
	Code    string `json:"code"` // lower_snake_case, e.g. "pool_full"
	Message string `json:"message"`
}

// Heartbeat is the liveness message of issue 5: sent as a QUIC datagram when
// the connection negotiated datagrams, on the control stream otherwise. Its
// datasets go on the wire packed (heartbeat_wire.go), so that fifty of
// them still fit in one datagram.
type Heartbeat struct {
	Seq      uint64             `json:"seq"` // increases by one per heartbeat
	Role     Role               `json:"role"`
	Epoch    uint64             `json:"epoch"`
	Datasets []DatasetHeartbeat `json:"datasets,omitempty"`
	// Round-trip measurement (failover.RoundTrip): the sender's clock at
	// sending, the sent_ns of the newest heartbeat it heard from the
	// receiver, and how long it held that one. Opaque to everyone but the
	// clock's owner; zero when absent (an older peer).
	SentNS int64 `json:"sent_ns,omitempty"`
	EchoNS int64 `json:"echo_ns,omitempty"`
	HeldNS int64 `json:"held_ns,omitempty"`
}

// DatasetHeartbeat is the per-dataset part of a heartbeat.
type DatasetHeartbeat struct {
	Dataset    string `json:"dataset"`
	NewestGUID uint64 `json:"newest_guid,omitempty"` // 0: no snapshot yet
	Healthy    bool   `json:"healthy"`               // the dataset's check passes
}

// Handoff is a master's offer of a planned switchover (issue 5): it has
// stopped serving and replicated its last changes; the receiver promotes
// itself at Epoch, and the offering master demotes when it hears that.
type Handoff struct {
	Epoch uint64 `json:"epoch"`
}

func (Handoff) Type() MsgType { return TypeHandoff }

func (m Handoff) Validate() error {
	if m.Epoch == 0 {
		return fieldError("epoch", "missing")
	}
	return nil
}

func (Hello) Type() MsgType         { return TypeHello }
func (SnapshotList) Type() MsgType  { return TypeSnapshotList }
func (TransferBegin) Type() MsgType { return TypeTransferBegin }
func (TransferDone) Type() MsgType  { return TypeTransferDone }
func (Ack) Type() MsgType           { return TypeAck }
func (Error) Type() MsgType         { return TypeError }
func (Heartbeat) Type() MsgType     { return TypeHeartbeat }

func (m Hello) Validate() error {
	if err := checkNodeName("node", m.Node); err != nil {
		return err
	}
	if m.Version == 0 {
		return fieldError("version", "missing")
	}
	return checkRole("role", m.Role)
}

func (m SnapshotList) Validate() error {
	if err := checkName("dataset", m.Dataset, false); err != nil {
		return err
	}
	if len(m.Snapshots) > maxSnapshots {
		return fieldError("snapshots", fmt.Sprintf("%d entries, at most %d", len(m.Snapshots), maxSnapshots))
	}
	for i, s := range m.Snapshots {
		field := fmt.Sprintf("snapshots[%d]", i)
		if err := checkName(field+".name", s.Name, true); err != nil {
			return err
		}
		if s.GUID == 0 {
			return fieldError(field+".guid", "missing")
		}
		if s.CreateTXG == 0 {
			return fieldError(field+".createtxg", "missing")
		}
		if s.Creation <= 0 {
			return fieldError(field+".creation", "missing")
		}
	}
	return checkResumeToken("resume_token", m.ResumeToken)
}

func (m TransferBegin) Validate() error {
	if m.ID == 0 {
		return fieldError("id", "missing")
	}
	if err := checkName("dataset", m.Dataset, false); err != nil {
		return err
	}
	if m.TargetGUID == 0 {
		return fieldError("target_guid", "missing")
	}
	if m.BaseGUID == m.TargetGUID {
		return fieldError("base_guid", "equals target_guid")
	}
	if m.EstimatedBytes > maxEstimatedBytes {
		return fieldError("estimated_bytes", fmt.Sprintf("%d is absurd", m.EstimatedBytes))
	}
	if m.Target != "" {
		return checkName("target", m.Target, true)
	}
	return nil
}

func (m TransferDone) Validate() error {
	if m.ID == 0 {
		return fieldError("id", "missing")
	}
	if err := checkName("dataset", m.Dataset, false); err != nil {
		return err
	}
	if m.TargetGUID == 0 {
		return fieldError("target_guid", "missing")
	}
	return checkText("error", m.Error, maxErrorTextLen)
}

func (m Ack) Validate() error {
	if m.ID == 0 {
		return fieldError("id", "missing")
	}
	if err := checkName("dataset", m.Dataset, false); err != nil {
		return err
	}
	if m.Error == "" && m.ReceivedGUID == 0 {
		return fieldError("received_guid", "missing (and no error)")
	}
	if m.Code != "" {
		if m.Error == "" {
			return fieldError("code", "set without an error")
		}
		if err := checkCode("code", m.Code); err != nil {
			return err
		}
	}
	return checkText("error", m.Error, maxErrorTextLen)
}

func (m Error) Validate() error {
	if m.Code == "" {
		return fieldError("code", "missing")
	}
	if err := checkCode("code", m.Code); err != nil {
		return err
	}
	return checkText("message", m.Message, maxErrorTextLen)
}

// checkCode accepts a lower_snake_case code of at most maxErrorCodeLen bytes.
func checkCode(field, code string) error {
	if len(code) > maxErrorCodeLen {
		return fieldError(field, fmt.Sprintf("%d bytes, at most %d", len(code), maxErrorCodeLen))
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fieldError(field, fmt.Sprintf("%.64q: want lower_snake_case", code))
		}
	}
	return nil
}

// checkResumeToken accepts an empty token or OpenZFS's form: a version
// digit, then hex digits and '-', bounded. The token reaches `zfs send -t`
// as one argument; the check keeps anything option-like or odd out of it.
func checkResumeToken(field, tok string) error {
	if tok == "" {
		return nil
	}
	if len(tok) > maxResumeTokenLen {
		return fieldError(field, fmt.Sprintf("%d bytes, at most %d", len(tok), maxResumeTokenLen))
	}
	if tok[0] < '0' || tok[0] > '9' {
		return fieldError(field, "must begin with a digit (the token version)")
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return fieldError(field, fmt.Sprintf("byte %q at %d: want hex digits and '-'", c, i))
		}
	}
	return nil
}

func (m Heartbeat) Validate() error {
	if err := checkRole("role", m.Role); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"sent_ns", m.SentNS}, {"echo_ns", m.EchoNS}, {"held_ns", m.HeldNS}} {
		if f.v < 0 {
			return fieldError(f.name, fmt.Sprintf("%d is negative", f.v))
		}
	}
	if len(m.Datasets) > maxHeartbeatSets {
		return fieldError("datasets", fmt.Sprintf("%d entries, at most %d", len(m.Datasets), maxHeartbeatSets))
	}
	for i, d := range m.Datasets {
		if err := checkName(fmt.Sprintf("datasets[%d].dataset", i), d.Dataset, false); err != nil {
			return err
		}
	}
	return nil
}

// ErrInvalidMessage is wrapped by every validation error.
var ErrInvalidMessage = errors.New("invalid message")

func fieldError(field, what string) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidMessage, field, what)
}

func checkRole(field string, r Role) error {
	switch r {
	case RoleMaster, RoleSlave:
		return nil
	case "":
		return fieldError(field, "missing")
	}
	return fieldError(field, fmt.Sprintf("%.32q: want %q or %q", string(r), RoleMaster, RoleSlave))
}

func checkNodeName(field, s string) error {
	if len(s) > maxNodeNameLen {
		return fieldError(field, fmt.Sprintf("%d bytes, at most %d", len(s), maxNodeNameLen))
	}
	return checkName(field, s, false)
}

// checkName accepts the characters ZFS accepts in a name component
// (letters, digits, - _ . :, and space where space is true), 1 to 255 bytes,
// not starting with '-' (it would read as an option to zfs).
func checkName(field, s string, space bool) error {
	if s == "" {
		return fieldError(field, "missing")
	}
	if len(s) > maxNameLen {
		return fieldError(field, fmt.Sprintf("%d bytes, at most %d", len(s), maxNameLen))
	}
	if s[0] == '-' {
		return fieldError(field, fmt.Sprintf("%.64q starts with '-'", s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == ':' || (space && c == ' ')
		if !ok {
			return fieldError(field, fmt.Sprintf("%.64q has byte %q at %d", s, c, i))
		}
	}
	return nil
}

// checkText bounds free text and refuses control characters other than
// newline and tab, so a peer's message cannot forge log lines.
func checkText(field, s string, limit int) error {
	if len(s) > limit {
		return fieldError(field, fmt.Sprintf("%d bytes, at most %d", len(s), limit))
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f }); i >= 0 {
		return fieldError(field, fmt.Sprintf("control character at byte %d", i))
	}
	return nil
}
