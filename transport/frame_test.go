package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// validMessages has one valid message of every type.
func validMessages() []Message {
	return []Message{
		Hello{Node: "alpha", Version: ProtocolVersion, Role: RoleMaster, Epoch: 7, Instance: 42},
		SnapshotList{Dataset: "app", Snapshots: []Snapshot{
			{Name: "flocker-7-1", GUID: 1<<63 + 5, CreateTXG: 10, Creation: 1763700000},
			{Name: "manual snap", GUID: 9, CreateTXG: 11, Creation: 1763700001},
		}},
		SnapshotList{Dataset: "empty"},
		TransferBegin{ID: 1, Dataset: "app", BaseGUID: 9, TargetGUID: 1<<64 - 1, EstimatedBytes: 1 << 30},
		TransferBegin{ID: 2, Dataset: "app", TargetGUID: 3},
		TransferDone{ID: 1, Dataset: "app", TargetGUID: 3, Bytes: 100},
		TransferDone{ID: 1, Dataset: "app", TargetGUID: 3, Bytes: 100, Error: "zfs send: exit status 1\ncannot send"},
		Ack{ID: 1, Dataset: "app", ReceivedGUID: 3},
		Ack{ID: 1, Dataset: "app", Error: "pool full"},
		Ack{ID: 1, Dataset: "app", Error: "out of space", Code: "pool_full"},
		TransferBegin{ID: 3, Dataset: "app", BaseGUID: 2, TargetGUID: 3, Target: "flocker-0-3"},
		TransferBegin{ID: 4, Dataset: "app", BaseGUID: 2, TargetGUID: 3, Resume: true},
		SnapshotList{Dataset: "app", ResumeToken: "1-e604ea4bf-e0-789c63a2"},
		Error{Code: "pool_full", Message: "tank: out of space"},
		Heartbeat{Seq: 1, Role: RoleSlave, Epoch: 7, Datasets: []DatasetHeartbeat{{Dataset: "app", NewestGUID: 3, Healthy: true}}},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var stream []byte
	for _, m := range validMessages() {
		b, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		// As a datagram: exactly one frame.
		got, err := DecodeDatagram(b)
		if err != nil {
			t.Fatalf("%T as datagram: %v", m, err)
		}
		if want := reflect.ValueOf(m); !reflect.DeepEqual(reflect.ValueOf(got).Elem().Interface(), want.Interface()) {
			t.Fatalf("datagram round trip: got %#v, want %#v", got, m)
		}
		stream = append(stream, b...)
	}
	// As a stream: frames back to back, then raw bytes that must stay unread.
	stream = append(stream, "RAW"...)
	r := bytes.NewReader(stream)
	for _, m := range validMessages() {
		f, err := ReadFrame(r)
		if err != nil {
			t.Fatalf("reading %T: %v", m, err)
		}
		got, err := ParseMessage(f)
		if err != nil {
			t.Fatalf("parsing %T: %v", m, err)
		}
		if !reflect.DeepEqual(reflect.ValueOf(got).Elem().Interface(), m) {
			t.Fatalf("stream round trip: got %#v, want %#v", got, m)
		}
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "RAW" {
		t.Fatalf("ReadFrame read past its frames: left %q", rest)
	}
	if _, err := ReadFrame(bytes.NewReader(nil)); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
}

func header(version byte, typ MsgType, n uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{version, byte(typ)}, n)
}

func frameBytes(typ MsgType, body string) []byte {
	return append(header(ProtocolVersion, typ, uint32(len(body))), body...)
}

func TestReadFrameRejects(t *testing.T) {
	cases := []struct {
		name  string
		input []byte
		want  error
		code  CloseCode
	}{
		{"unknown version", append(header(2, TypeHello, 2), "{}"...), ErrUnsupportedVersion, CloseUnsupportedVersion},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), ErrUnsupportedVersion, CloseUnsupportedVersion},
		{"oversized length", header(ProtocolVersion, TypeHello, MaxFrameBody+1), ErrFrameTooLarge, CloseFrameTooLarge},
		{"max length prefix", header(ProtocolVersion, TypeSnapshotList, 1<<32-1), ErrFrameTooLarge, CloseFrameTooLarge},
		{"truncated header", []byte{ProtocolVersion, byte(TypeHello), 0}, ErrMalformedFrame, CloseMalformedFrame},
		{"truncated body", append(header(ProtocolVersion, TypeHello, 100), `{"node":`...), ErrMalformedFrame, CloseMalformedFrame},
		{"bad json", frameBytes(TypeError, `{"code":`+"\x00"+`}`), ErrMalformedFrame, CloseMalformedFrame},
		{"wrong json type", frameBytes(TypeAck, `{"id":"one","dataset":"app","received_guid":1}`), ErrMalformedFrame, CloseMalformedFrame},
		{"negative guid", frameBytes(TypeAck, `{"id":1,"dataset":"app","received_guid":-1}`), ErrMalformedFrame, CloseMalformedFrame},
		{"array body", frameBytes(TypeError, `[]`), ErrMalformedFrame, CloseMalformedFrame},
		{"trailing data", frameBytes(TypeError, `{"code":"x","message":""} {}`), ErrMalformedFrame, CloseMalformedFrame},
		{"empty body", frameBytes(TypeError, ``), ErrMalformedFrame, CloseMalformedFrame},
		{"null body", frameBytes(TypeError, `null`), ErrInvalidMessage, CloseInvalidMessage},
		{"missing field", frameBytes(TypeAck, `{"id":1,"received_guid":1}`), ErrInvalidMessage, CloseInvalidMessage},
		{"unknown type", frameBytes(200, `{}`), ErrUnknownType, CloseProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ReadFrame(bytes.NewReader(tc.input))
			if err == nil {
				_, err = ParseMessage(f)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := closeCodeFor(err); got != tc.code {
				t.Fatalf("close code %v, want %v", got, tc.code)
			}
			// The datagram decoder agrees.
			if _, err := DecodeDatagram(tc.input); err == nil {
				t.Fatalf("DecodeDatagram accepted it")
			}
		})
	}
}

// An oversized length prefix must be refused before anything is allocated
// for it: 100 refusals of a 4 GiB prefix allocate far less than one frame.
func TestOversizedPrefixAllocatesNothing(t *testing.T) {
	in := header(ProtocolVersion, TypeSnapshotList, 1<<32-1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := ReadFrame(bytes.NewReader(in)); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 256<<10 {
		t.Fatalf("100 refused frames allocated %d bytes", got)
	}
}

// A version byte other than ours is refused at once, without waiting for
// the rest of the header (a stalled garbage sender gets no grace).
func TestUnknownVersionNeedsOneByte(t *testing.T) {
	if _, err := ReadFrame(strings.NewReader("\x09")); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeDatagramRejects(t *testing.T) {
	good, err := AppendFrame(nil, Heartbeat{Seq: 1, Role: RoleMaster})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":          nil,
		"short":          {ProtocolVersion, byte(TypeHeartbeat)},
		"bad version":    {0xff},
		"trailing bytes": append(append([]byte{}, good...), '\n'),
		"cut short":      good[:len(good)-1],
	}
	for name, b := range cases {
		if _, err := DecodeDatagram(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", 256)
	cases := []struct {
		m     Message
		field string
	}{
		{Hello{Version: 1, Role: RoleMaster}, "node"},
		{Hello{Node: "-rf", Version: 1, Role: RoleMaster}, "node"},
		{Hello{Node: strings.Repeat("n", 65), Version: 1, Role: RoleMaster}, "node"},
		{Hello{Node: "alpha", Role: RoleMaster}, "version"},
		{Hello{Node: "alpha", Version: 1}, "role"},
		{Hello{Node: "alpha", Version: 1, Role: "boss"}, "role"},
		{SnapshotList{Dataset: "tank/app"}, "dataset"},
		{SnapshotList{Dataset: "app", Snapshots: []Snapshot{{Name: "a@b", GUID: 1, CreateTXG: 1, Creation: 1}}}, "snapshots[0].name"},
		{SnapshotList{Dataset: "app", Snapshots: []Snapshot{{Name: "s", CreateTXG: 1, Creation: 1}}}, "snapshots[0].guid"},
		{SnapshotList{Dataset: "app", Snapshots: []Snapshot{{Name: "s", GUID: 1, Creation: 1}}}, "snapshots[0].createtxg"},
		{SnapshotList{Dataset: "app", Snapshots: []Snapshot{{Name: "s", GUID: 1, CreateTXG: 1}}}, "snapshots[0].creation"},
		{SnapshotList{Dataset: "app", Snapshots: make([]Snapshot, maxSnapshots+1)}, "snapshots"},
		{SnapshotList{Dataset: long}, "dataset"},
		{TransferBegin{Dataset: "app", TargetGUID: 1}, "id"},
		{TransferBegin{ID: 1, Dataset: "app"}, "target_guid"},
		{TransferBegin{ID: 1, Dataset: "app", BaseGUID: 4, TargetGUID: 4}, "base_guid"},
		{TransferBegin{ID: 1, Dataset: "app", TargetGUID: 4, EstimatedBytes: 1 << 62}, "estimated_bytes"},
		{TransferBegin{ID: 1, Dataset: "app;rm", TargetGUID: 4}, "dataset"},
		{TransferBegin{ID: 1, Dataset: "app", TargetGUID: 4, Target: "-rf"}, "target"},
		{TransferBegin{ID: 1, Dataset: "app", TargetGUID: 4, Target: "a@b"}, "target"},
		{SnapshotList{Dataset: "app", ResumeToken: "-t"}, "resume_token"},
		{SnapshotList{Dataset: "app", ResumeToken: "1-abc;rm"}, "resume_token"},
		{SnapshotList{Dataset: "app", ResumeToken: "1-" + strings.Repeat("a", maxResumeTokenLen)}, "resume_token"},
		{Ack{ID: 1, Dataset: "app", ReceivedGUID: 1, Code: "pool_full"}, "code"},
		{Ack{ID: 1, Dataset: "app", Error: "x", Code: "Pool-Full"}, "code"},
		{TransferDone{ID: 1, Dataset: "app"}, "target_guid"},
		{TransferDone{ID: 1, Dataset: "app", TargetGUID: 1, Error: "bad\x1b[2Jline"}, "error"},
		{Ack{ID: 1, Dataset: "app"}, "received_guid"},
		{Ack{ID: 1, Dataset: "app", ReceivedGUID: 1, Error: strings.Repeat("e", maxErrorTextLen+1)}, "error"},
		{Error{Message: "x"}, "code"},
		{Error{Code: "Pool Full"}, "code"},
		{Heartbeat{Seq: 1}, "role"},
		{Heartbeat{Role: RoleMaster, Datasets: []DatasetHeartbeat{{}}}, "datasets[0].dataset"},
		{Heartbeat{Role: RoleMaster, Datasets: make([]DatasetHeartbeat, maxHeartbeatSets+1)}, "datasets"},
	}
	for _, tc := range cases {
		err := tc.m.Validate()
		if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), ": "+tc.field+":") {
			t.Errorf("%#v: error %v, want one naming %s", tc.m, err, tc.field)
		}
		if _, err := AppendFrame(nil, tc.m); err == nil {
			t.Errorf("%T: AppendFrame encoded an invalid message", tc.m)
		}
	}
	for _, m := range validMessages() {
		if err := m.Validate(); err != nil {
			t.Errorf("%#v: %v", m, err)
		}
	}
}

func TestUnknownJSONFieldsIgnored(t *testing.T) {
	m, err := ParseMessage(Frame{Type: TypeAck, Body: []byte(`{"id":1,"dataset":"app","received_guid":5,"from_the_future":{"x":[1,2]}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if a := m.(*Ack); a.ReceivedGUID != 5 {
		t.Fatalf("got %#v", a)
	}
}
