package agent

import (
	"context"
	"errors"
	"time"
)

// Errors a Controller wraps so the admin API can answer with the right
// status, and its client can hand the same errors back (errors.Is works
// across the wire).
var (
	// ErrRefused: the request makes no sense in the current state (promote
	// without force while the peer is a live master, handoff from a slave,
	// another role change in progress). HTTP 409.
	ErrRefused = errors.New("refused")
	// ErrNotFound: no such stash. HTTP 404.
	ErrNotFound = errors.New("not found")
)

// Controller is what an operator may ask of a running agent. The agent
// implements it (issue 5: failover); the admin API serves it (issue 6).
//
// The admin API is HTTP, served twice:
//   - on a unix socket, default /run/flocker/admin.sock, mode 0600 owned by
//     root: whoever can open it is root and is allowed everything;
//   - on [node] status (TCP): GET /status and GET /metrics are open (loopback
//     by default); every mutating route needs "Authorization: Bearer <token>"
//     with the token from [admin] token_file, else 401 (no or malformed
//     header) or 403 (wrong token), and the refusal is logged.
//
// Routes (JSON bodies; errors as {"error": "..."} with a 4xx/5xx status):
//
//	GET    /status                 Status of this node (both hosts as this one sees them)
//	GET    /metrics                Prometheus exposition
//	POST   /v1/promote             {"force": bool}          -> {"role","epoch"}
//	POST   /v1/demote              {}                       -> {"role","epoch"}
//	POST   /v1/handoff             {}                       -> HandoffResult
//	GET    /v1/stashes                                      -> [Stash]
//	DELETE /v1/stashes/{name}                               -> {}
type Controller interface {
	// Promote makes this node master now. Without force it refuses while the
	// peer is alive and master (that is Handoff's job).
	Promote(ctx context.Context, force bool) (RoleResult, error)
	// Demote makes this node slave: service stopped, address dropped,
	// dataset readonly.
	Demote(ctx context.Context) (RoleResult, error)
	// Handoff is a planned switchover from this master to the peer.
	Handoff(ctx context.Context) (HandoffResult, error)
	// Stashes lists the datasets kept from lost divergences.
	Stashes(ctx context.Context) ([]Stash, error)
	// RemoveStash destroys one stash, named as Stashes lists it.
	RemoveStash(ctx context.Context, name string) error
}

// RoleResult is a node's role after an operator's request.
type RoleResult struct {
	Role  string `json:"role"`
	Epoch uint64 `json:"epoch"`
}

// HandoffResult reports a planned switchover.
type HandoffResult struct {
	NewMaster string `json:"new_master"`
	Epoch     uint64 `json:"epoch"`
	// Downtime: from giving the service up here until it answers on the
	// floating address again ([dataset] probe), else until the peer's
	// heartbeat says it serves.
	Downtime time.Duration `json:"downtime_ns"`
}

// Stash is a divergent copy kept as its own dataset,
// <pool>/flocker-stash/<dataset>-<epoch>-<time>.
type Stash struct {
	Name    string    `json:"name"`    // the stash dataset
	Dataset string    `json:"dataset"` // the logical dataset it came from
	Epoch   uint64    `json:"epoch"`   // the epoch whose writes it holds
	Created time.Time `json:"created"`
	Bytes   uint64    `json:"bytes"`
}
