package config

import (
	"errors"
	"os"
	"testing"
)

// keyTypes classifies every key of the schema by the kind of value it
// takes. TestInvalidGoldenCoversEveryKeyType uses it; a key added to the
// schema without a line here fails that test, so its type is thought about.
var keyTypes = map[string]string{
	"node.name": "name", "peer.name": "name",
	"node.listen": "address", "node.status": "address", "peer.address": "address", "peer.status": "address",
	"peer.fingerprint": "fingerprint",
	"tls.cert":         "path", "tls.key": "path", "admin.token_file": "path", "admin.socket": "path",
	datasetKind + ".zfs":       "dataset",
	datasetKind + ".vip":       "cidr",
	datasetKind + ".interface": "interface",
	datasetKind + ".start":     "command", datasetKind + ".stop": "command", datasetKind + ".check": "command",
	"snapshot.min_interval": "duration", "notify.interval": "duration",
	"failover.heartbeat": "duration", "failover.timeout": "duration", "replication.lag_threshold": "duration",
	"snapshot.retention":    "retention",
	"replication.bandwidth": "size",
	"notify.mode":           "enum", "state.role": "enum",
	"failover.witness": "ip",
	"state.epoch":      "integer", "failover.check_failures": "integer",
	"failover.divergence":  "enum",
	datasetKind + ".probe": "probe",
}

// freeForm are the types any text is valid for: a hook is a command line
// the operator writes (run without a shell by the failover executor).
var freeForm = map[string]bool{"command": true}

// TestInvalidGoldenCoversEveryKeyType: for every type of value the config
// takes, some testdata/invalid file holds a wrong one and the problem names
// its key; the dataset section's own name counts as a name.
func TestInvalidGoldenCoversEveryKeyType(t *testing.T) {
	for kind, fields := range schema {
		for _, f := range fields {
			if _, ok := keyTypes[kind+"."+f.key]; !ok {
				t.Errorf("[%s] %s has no type in keyTypes: add it (and an invalid golden case)", kind, f.key)
			}
		}
	}
	covered := map[string][]string{}
	for _, in := range goldenInputs(t, "testdata/invalid") {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(in, data)
		var probs Problems
		if !errors.As(err, &probs) {
			t.Fatalf("%s: %v is not Problems", in, err)
		}
		for _, p := range probs {
			sec := p.Section
			if datasetHeader.MatchString(sec) {
				sec = datasetKind
			}
			typ := keyTypes[sec+"."+p.Key]
			if p.Key == "" && sec == datasetKind {
				typ = "name"
			}
			if typ != "" {
				covered[typ] = append(covered[typ], in+": "+p.String())
			}
		}
	}
	types := map[string]bool{}
	for _, typ := range keyTypes {
		types[typ] = true
	}
	for typ := range types {
		switch {
		case freeForm[typ]:
			// Only syntax errors (quotes, backticks) can make it wrong.
		case len(covered[typ]) == 0:
			t.Errorf("no testdata/invalid file has a wrong %s value", typ)
		default:
			t.Logf("%s: %d invalid cases", typ, len(covered[typ]))
		}
	}
}
