// Package api is the agent's HTTP API: the read-only status document and
// Prometheus metrics, and the operator's mutating routes (promote, demote,
// handoff, stash removal) with their credentials. Server serves it, Client
// calls it; the routes and the auth rules are those of agent.Controller's
// comment:
//
//	GET    /status                 Document (open)
//	GET    /status/schema          its JSON Schema (open)
//	GET    /metrics                Prometheus exposition (open)
//	POST   /v1/promote             {"force": bool} -> agent.RoleResult
//	POST   /v1/demote              {}              -> agent.RoleResult
//	POST   /v1/handoff             {}              -> agent.HandoffResult
//	GET    /v1/stashes                             -> [agent.Stash] (open: read-only)
//	DELETE /v1/stashes/{name}                      -> {}
//
// The same handler is served on two listeners. On the unix socket (default
// /run/flocker/admin.sock, mode 0600, owned by the agent's user, root) the
// kernel has checked the caller: every route is allowed. On [node] status
// (TCP, loopback by default) the mutating routes need
// "Authorization: Bearer TOKEN" with the token of [admin] token_file: no or
// a malformed header is 401, a wrong token 403, and every refusal is logged
// with the remote address (never the token).
package api
