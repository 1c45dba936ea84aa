package api

import (
	_ "embed"
	"time"

	"github.com/flockerha/flocker/agent"
)

// SchemaVersion is the version of the /status document. Adding a field
// keeps it (readers ignore what they do not know); renaming, removing or
// changing the meaning of a field raises it. Schema documents every field
// (tests validate real agents' documents with it).
const SchemaVersion = 1

// Schema is the JSON Schema (draft 2020-12) of the /status document, served
// at GET /status/schema.
//
//go:embed status.schema.json
var Schema []byte

// Document is the /status document: the agent's Status (both hosts as this
// node sees them), the schema version and when it was taken.
type Document struct {
	SchemaVersion int       `json:"schema_version"`
	Time          time.Time `json:"time"`
	agent.Status
	// StashesError says why the datasets' stashes could not be listed.
	StashesError string `json:"stashes_error,omitempty"`
}

// NewDocument wraps a status taken at now and fills what is derived from
// it: the heartbeat's age, the stashes by dataset (when listed: stashes
// non-nil), and empty lists rather than nulls.
func NewDocument(st agent.Status, stashes []agent.Stash, now time.Time) Document {
	if !st.Peer.LastHeartbeat.IsZero() {
		st.Peer.HeartbeatAge = max(0, now.Sub(st.Peer.LastHeartbeat))
	}
	if st.Datasets == nil {
		st.Datasets = []agent.DatasetStatus{}
	}
	for i := range st.Datasets {
		d := &st.Datasets[i]
		for _, s := range stashes {
			if s.Dataset == d.Name {
				d.Stashes = append(d.Stashes, s)
			}
		}
		if d.Stashes == nil {
			d.Stashes = []agent.Stash{}
		}
	}
	return Document{SchemaVersion: SchemaVersion, Time: now, Status: st}
}
