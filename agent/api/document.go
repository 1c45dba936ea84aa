package api

import (
	"time"

	"github.com/flockerha/flocker/agent"
)

// SchemaVersion is the version of the /status document. Adding a field
// keeps it (readers ignore what they do not know); renaming, removing or
// changing the meaning of a field raises it. docs/status.md documents
// every field.
const SchemaVersion = 1

// Document is the /status document: the agent's Status (both hosts as this
// node sees them), the schema version and when it was taken.
type Document struct {
	SchemaVersion int       `json:"schema_version"`
	Time          time.Time `json:"time"`
	agent.Status
}

// NewDocument wraps a status taken at now.
func NewDocument(st agent.Status, now time.Time) Document {
	return Document{SchemaVersion: SchemaVersion, Time: now, Status: st}
}
