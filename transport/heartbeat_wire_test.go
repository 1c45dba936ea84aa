package transport

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// The packed dataset list refuses what it cannot have produced, naming
// the problem, and never panics on short input.
func TestHeartbeatPackedDatasetsRejected(t *testing.T) {
	good := packDatasets([]DatasetHeartbeat{{Dataset: "app", NewestGUID: 7, Healthy: true}})
	for name, raw := range map[string][]byte{
		"cut in the guid":   good[:len(good)-3],
		"cut in the name":   good[:2],
		"unknown flags":     append(good[:len(good)-1:len(good)-1], 0x82),
		"name too long":     append([]byte{0x80, 0x02}, make([]byte, 256+9)...),
		"varint overflow":   {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"too many datasets": []byte(strings.Repeat(string(packDatasets([]DatasetHeartbeat{{Dataset: "a"}})), maxHeartbeatSets+1)),
	} {
		if _, err := unpackDatasets(raw); !errors.Is(err, errPacked) {
			t.Errorf("%s: error %v, want %v", name, err, errPacked)
		}
	}
	body := `{"seq":1,"role":"master","epoch":1,"ds":"` + base64.RawStdEncoding.EncodeToString(good[:len(good)-1]) + `"}`
	if _, err := ParseMessage(Frame{Type: TypeHeartbeat, Body: []byte(body)}); !errors.Is(err, ErrMalformedFrame) {
		t.Errorf("truncated ds: error %v, want %v", err, ErrMalformedFrame)
	}
	body = `{"seq":1,"role":"master","epoch":1,"ds":"` + base64.RawStdEncoding.EncodeToString(packDatasets([]DatasetHeartbeat{{Dataset: "a b"}})) + `"}`
	if _, err := ParseMessage(Frame{Type: TypeHeartbeat, Body: []byte(body)}); !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), "datasets[0].dataset") {
		t.Errorf("bad name in ds: error %v, want one naming datasets[0].dataset", err)
	}
}

// Packed, a dataset costs its name plus 16 bytes of JSON.
func TestHeartbeatPackedSize(t *testing.T) {
	hb := Heartbeat{Seq: 1, Role: RoleMaster, Epoch: 1}
	base, err := AppendFrame(nil, hb)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		hb.Datasets = append(hb.Datasets, DatasetHeartbeat{Dataset: "s01", NewestGUID: 1<<64 - 1, Healthy: true})
	}
	b, err := AppendFrame(nil, hb)
	if err != nil {
		t.Fatal(err)
	}
	if per := float64(len(b)-len(base)) / 50; per > 3+16+1 {
		t.Fatalf("%.1f bytes per 3-byte dataset name, want at most 20", per)
	}
}
