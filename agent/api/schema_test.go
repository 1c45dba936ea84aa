package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchema compiles Schema with format assertions on (date-time).
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatalf("status.schema.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("status.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("status.schema.json")
	if err != nil {
		t.Fatalf("compiling status.schema.json: %v", err)
	}
	return sch
}

func validate(sch *jsonschema.Schema, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// fullStatus sets every field of the status, optional ones included, so
// a field added to the Go types but not to the schema fails validation
// (the schema has additionalProperties false everywhere).
func fullStatus(now time.Time) (agent.Status, []agent.Stash) {
	snap := &agent.SnapshotRef{Name: "flocker-7-42", GUID: 18446744073709551615, Created: now.Add(-time.Second)}
	prob := &agent.Problem{Code: "transfer", Message: "stream reset", At: now.Add(-time.Minute)}
	st := agent.Status{
		Node: "alpha", Role: "master", Epoch: 7, Dialect: "zfs-fuse",
		Peer: agent.PeerStatus{Name: "beta", Connected: true, Since: now.Add(-time.Hour), Role: "slave", Epoch: 7,
			LastError: prob, LastHeartbeat: now.Add(-80 * time.Millisecond), RTT: 350 * time.Microsecond},
		Datasets: []agent.DatasetStatus{{
			Name: "app", ZFS: "tank/app", Role: "master",
			Notifier:   agent.NotifierStatus{Tier: "tracepoint", Refused: map[string]string{"fentry": "no BTF"}},
			DirtySince: now.Add(-200 * time.Millisecond), NewestLocal: snap, NewestPeer: snap,
			Lag: 300 * time.Millisecond, UnreplicatedSince: now.Add(-300 * time.Millisecond), LastLag: 250 * time.Millisecond,
			Transfer: &agent.TransferStatus{ID: 3, Kind: "incremental", Base: "flocker-7-41", Target: "flocker-7-42",
				Started: now, Bytes: 4096, Estimate: 8192, EstimateSource: "send -nP"},
			Snapshots: agent.SnapshotCounts{Local: 5, Peer: 4, Taken: 9, Pruned: 4, Transfers: 8, FailedTransfers: 1, BytesSent: 1 << 20},
			LastError: prob, Conflict: "no common snapshot",
		}},
	}
	stashes := []agent.Stash{{Name: "tank/flocker-stash/app-6-20261121T1530", Dataset: "app", Epoch: 6, Created: now, Bytes: 1 << 20}}
	return st, stashes
}

// TestSchemaDescribesTheDocument: a document with every field set, and one
// with only what an idle slave has, validate; the schema rejects unknown
// fields, missing fields and wrong types (so the check can fail).
func TestSchemaDescribesTheDocument(t *testing.T) {
	sch := compileSchema(t)
	now := time.Date(2026, 11, 21, 15, 30, 0, 0, time.UTC)
	st, stashes := fullStatus(now)
	full := NewDocument(st, stashes, now)
	full.StashesError = "zfs list: timeout"
	data, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(sch, data); err != nil {
		t.Fatalf("full document does not validate: %v\n%s", err, data)
	}
	if full.Peer.HeartbeatAge != 80*time.Millisecond || len(full.Datasets[0].Stashes) != 1 {
		t.Errorf("derived fields: heartbeat age %v, stashes %v", full.Peer.HeartbeatAge, full.Datasets[0].Stashes)
	}
	idle := NewDocument(agent.Status{Node: "beta", Role: "slave", Peer: agent.PeerStatus{Name: "alpha"},
		Datasets: []agent.DatasetStatus{{Name: "app", ZFS: "pool2/app", Role: "slave"}}}, nil, now)
	data, _ = json.Marshal(idle)
	if err := validate(sch, data); err != nil {
		t.Fatalf("idle slave's document does not validate: %v\n%s", err, data)
	}
	if !strings.Contains(string(data), `"stashes":[]`) {
		t.Errorf("no stashes should be an empty list: %s", data)
	}

	var generic map[string]any
	data, _ = json.Marshal(full)
	for _, mutate := range []struct {
		name string
		f    func(m map[string]any)
	}{
		{"unknown top-level field", func(m map[string]any) { m["uptime"] = 1 }},
		{"unknown dataset field", func(m map[string]any) { ds(m)["speed"] = 1 }},
		{"missing peer", func(m map[string]any) { delete(m, "peer") }},
		{"missing lag", func(m map[string]any) { delete(ds(m), "lag_ns") }},
		{"negative lag", func(m map[string]any) { ds(m)["lag_ns"] = -1 }},
		{"bad role", func(m map[string]any) { m["role"] = "primary" }},
		{"bad time", func(m map[string]any) { m["time"] = "yesterday" }},
		{"bad transfer kind", func(m map[string]any) { ds(m)["transfer"].(map[string]any)["kind"] = "rsync" }},
		{"schema version 2", func(m map[string]any) { m["schema_version"] = 2 }},
	} {
		generic = nil
		if err := json.Unmarshal(data, &generic); err != nil {
			t.Fatal(err)
		}
		mutate.f(generic)
		bad, _ := json.Marshal(generic)
		if err := validate(sch, bad); err == nil {
			t.Errorf("%s: validates", mutate.name)
		}
	}
}

func ds(m map[string]any) map[string]any { return m["datasets"].([]any)[0].(map[string]any) }

// TestServedStatusValidates: what GET /status answers validates, and the
// schema is served beside it.
func TestServedStatusValidates(t *testing.T) {
	sch := compileSchema(t)
	ts := startServer(t, &recordingController{}, testToken)
	code, body := ts.raw(t, "GET", "/status", "")
	if code != 200 {
		t.Fatalf("GET /status: %d %s", code, body)
	}
	if err := validate(sch, []byte(body)); err != nil {
		t.Fatalf("served status does not validate: %v\n%s", err, body)
	}
	resp, err := http.Get("http://" + ts.tcp.String() + "/status/schema")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(served, Schema) {
		t.Error("GET /status/schema is not the schema")
	}
}
