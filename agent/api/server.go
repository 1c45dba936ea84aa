package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/flockerha/flocker/agent"
)

// maxBody bounds a request body: every request body is a tiny JSON object.
const maxBody = 64 << 10

// shutdownGrace is how long Close lets requests in flight finish; a
// handoff in flight is cut after it (its context ends).
const shutdownGrace = 5 * time.Second

// Options configures a Server.
type Options struct {
	// Status returns the agent's state (required).
	Status func() agent.Status
	// Controller carries out operator requests; nil answers 501 on the
	// mutating routes (an agent without failover wired).
	Controller agent.Controller
	// Metrics serves /metrics; nil answers 404.
	Metrics http.Handler
	// Token is the admin token the TCP listener's mutating routes require;
	// empty: no bearer token is accepted (the unix socket still works).
	Token  []byte
	Logger *slog.Logger
	// Now is the clock of the status document (default time.Now).
	Now func() time.Time
}

// Server serves the API on a TCP listener (token-guarded) and a unix socket
// (trusted). New, Start, Close (idempotent, waits for its goroutines).
type Server struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	servers []*http.Server
	wg      sync.WaitGroup
	closed  bool
	ctx     context.Context // cancelled by Close: ends requests in flight
	cancel  context.CancelFunc
}

// NewServer checks the options; nothing is served until Start.
func NewServer(o Options) (*Server, error) {
	if o.Status == nil {
		return nil, errors.New("api: no status source")
	}
	if o.Logger == nil {
		return nil, errors.New("api: no logger")
	}
	if len(o.Token) > 0 {
		if err := checkToken(o.Token); err != nil {
			return nil, fmt.Errorf("api: admin token: %w", err)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{o: o, log: o.Logger, ctx: ctx, cancel: cancel}, nil
}

// Start serves tcp (mutating routes need the token) and unix (every route
// allowed); either may be nil. The server owns the listeners from here on.
func (s *Server) Start(tcp, unix net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("api: server closed")
	}
	for _, l := range []struct {
		ln      net.Listener
		trusted bool
	}{{tcp, false}, {unix, true}} {
		if l.ln == nil {
			continue
		}
		hs := &http.Server{
			Handler:           s.Handler(l.trusted),
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			BaseContext:       func(net.Listener) context.Context { return s.ctx },
		}
		s.servers = append(s.servers, hs)
		ln := l.ln
		s.wg.Go(func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin API listener failed", "addr", ln.Addr().String(), "err", err)
			}
		})
		s.log.Info("admin API listening", "addr", ln.Addr().String(), "network", ln.Addr().Network(), "trusted", l.trusted)
	}
	return nil
}

// Close stops both listeners, lets requests in flight finish for a few
// seconds, then cuts them. Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers := s.servers
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.cancel()
	for _, hs := range servers {
		hs.Close()
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// Handler is the API; trusted (the unix socket) skips the token check.
func (s *Server) Handler(trusted bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /status/schema", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/schema+json")
		w.Write(Schema)
	})
	if s.o.Metrics != nil {
		mux.Handle("GET /metrics", s.o.Metrics)
	}
	mux.HandleFunc("GET /v1/stashes", s.stashes)
	guard := func(h http.HandlerFunc) http.Handler {
		if trusted {
			return h
		}
		return s.requireToken(h)
	}
	mux.Handle("POST /v1/promote", guard(s.promote))
	mux.Handle("POST /v1/demote", guard(s.demote))
	mux.Handle("POST /v1/handoff", guard(s.handoff))
	mux.Handle("DELETE /v1/stashes/{name}", guard(s.removeStash))
	return mux
}

// requireToken lets a request through only with the right bearer token.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			s.refuse(w, r, http.StatusUnauthorized, "no bearer token", "missing or malformed Authorization header: want \"Bearer TOKEN\"")
			return
		}
		if !tokenMatches(s.o.Token, []byte(tok)) {
			reason := "wrong token"
			if len(s.o.Token) == 0 {
				reason = "no admin token configured here ([admin] token_file): use the unix socket"
			}
			s.refuse(w, r, http.StatusForbidden, reason, "token refused")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer extracts the token of "Bearer TOKEN" (scheme case-insensitive,
// RFC 9110); anything else is malformed.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// refuse answers an unauthenticated request and logs who asked, never what
// token was presented.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	s.log.Warn("admin request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"status", code, "reason", reason)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="flocker"`)
	}
	writeError(w, code, msg)
}

// stashTimeout bounds listing the stashes for /status: a status request
// must answer even while zfs is slow.
const stashTimeout = 5 * time.Second

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.o.Status()
	var stashes []agent.Stash
	var stashErr error
	if s.o.Controller != nil {
		ctx, cancel := context.WithTimeout(r.Context(), stashTimeout)
		stashes, stashErr = s.o.Controller.Stashes(ctx)
		cancel()
	}
	doc := NewDocument(st, stashes, s.o.Now())
	if stashErr != nil {
		doc.StashesError = stashErr.Error()
	}
	writeJSON(w, http.StatusOK, doc)
}

func (s *Server) controller(w http.ResponseWriter) agent.Controller {
	if s.o.Controller == nil {
		writeError(w, http.StatusNotImplemented, "this agent takes no operator requests yet (failover is not wired into it)")
	}
	return s.o.Controller
}

// promoteRequest is POST /v1/promote's body.
type promoteRequest struct {
	Force bool `json:"force"`
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	var req promoteRequest
	if !readBody(w, r, &req) {
		return
	}
	c := s.controller(w)
	if c == nil {
		return
	}
	s.log.Info("operator request", "op", "promote", "force", req.Force, "remote", remote(r))
	res, err := c.Promote(r.Context(), req.Force)
	s.reply(w, r, "promote", res, err)
}

func (s *Server) demote(w http.ResponseWriter, r *http.Request) {
	if !readBody(w, r, &struct{}{}) {
		return
	}
	c := s.controller(w)
	if c == nil {
		return
	}
	s.log.Info("operator request", "op", "demote", "remote", remote(r))
	res, err := c.Demote(r.Context())
	s.reply(w, r, "demote", res, err)
}

func (s *Server) handoff(w http.ResponseWriter, r *http.Request) {
	if !readBody(w, r, &struct{}{}) {
		return
	}
	c := s.controller(w)
	if c == nil {
		return
	}
	s.log.Info("operator request", "op", "handoff", "remote", remote(r))
	res, err := c.Handoff(r.Context())
	s.reply(w, r, "handoff", res, err)
}

func (s *Server) stashes(w http.ResponseWriter, r *http.Request) {
	c := s.controller(w)
	if c == nil {
		return
	}
	list, err := c.Stashes(r.Context())
	if list == nil {
		list = []agent.Stash{}
	}
	s.reply(w, r, "stashes", list, err)
}

func (s *Server) removeStash(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c := s.controller(w)
	if c == nil {
		return
	}
	s.log.Info("operator request", "op", "stash rm", "stash", name, "remote", remote(r))
	err := c.RemoveStash(r.Context(), name)
	s.reply(w, r, "stash rm", struct{}{}, err)
}

// reply writes a Controller's answer: the result, or the error with the
// status its kind calls for.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, op string, res any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, res)
		return
	}
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, agent.ErrRefused):
		code = http.StatusConflict
	case errors.Is(err, agent.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	s.log.Warn("operator request failed", "op", op, "remote", remote(r), "status", code, "err", err)
	writeError(w, code, err.Error())
}

// remote names the caller: its address on TCP, "unix" on the socket.
func remote(r *http.Request) string {
	if r.RemoteAddr == "" || r.RemoteAddr == "@" {
		return "unix"
	}
	return r.RemoteAddr
}

// readBody decodes a JSON object strictly; an empty body is an empty
// object. A bad body is answered with 400 and false.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err))
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("request body: %v", err))
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "request body: more than one JSON value")
		return false
	}
	return true
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, data = http.StatusInternalServerError, []byte(`{"error": "encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}
