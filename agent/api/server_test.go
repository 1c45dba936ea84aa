package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
)

const testToken = "abcdefghijklmnopqrstuvwxyz0123456789"

// recordingController stands in for the agent's Controller, whose real
// implementation (failover wiring) is another package's work and needs a
// running pair: these tests check the HTTP layer, auth and error mapping
// with real listeners. It records each call and answers with err when set.
type recordingController struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (c *recordingController) record(call string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
	return c.err
}

func (c *recordingController) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

func (c *recordingController) Promote(_ context.Context, force bool) (agent.RoleResult, error) {
	return agent.RoleResult{Role: "master", Epoch: 8}, c.record(fmt.Sprintf("promote force=%v", force))
}

func (c *recordingController) Demote(context.Context) (agent.RoleResult, error) {
	return agent.RoleResult{Role: "slave", Epoch: 8}, c.record("demote")
}

func (c *recordingController) Handoff(context.Context) (agent.HandoffResult, error) {
	return agent.HandoffResult{NewMaster: "beta", Epoch: 9, Downtime: 1500 * time.Millisecond}, c.record("handoff")
}

func (c *recordingController) Stashes(context.Context) ([]agent.Stash, error) {
	return []agent.Stash{{Name: "tank/flocker-stash/app-7-x", Dataset: "app", Epoch: 7}}, c.record("stashes")
}

func (c *recordingController) RemoveStash(_ context.Context, name string) error {
	return c.record("rm " + name)
}

// syncBuffer is a log sink read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	srv    *Server
	ctl    *recordingController
	logs   *syncBuffer
	tcp    netip.AddrPort
	socket string
}

func startServer(t *testing.T, ctl agent.Controller, token string) *testServer {
	t.Helper()
	ts := &testServer{logs: &syncBuffer{}, socket: filepath.Join(t.TempDir(), "run", "admin.sock")}
	if rc, ok := ctl.(*recordingController); ok {
		ts.ctl = rc
	}
	st := agent.Status{Node: "alpha", Role: "master", Epoch: 7, Datasets: []agent.DatasetStatus{{Name: "app", ZFS: "tank/app", Role: "master"}}}
	srv, err := NewServer(Options{
		Status:     func() agent.Status { return st },
		Controller: ctl,
		Token:      []byte(token),
		Logger:     slog.New(slog.NewJSONHandler(ts.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := ListenTCP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	unix, err := ListenUnix(ts.socket)
	if err != nil {
		t.Fatal(err)
	}
	ts.tcp = netip.MustParseAddrPort(tcp.Addr().String())
	if err := srv.Start(tcp, unix); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ts.srv = srv
	return ts
}

// raw sends one request to the TCP listener with the given Authorization
// header ("" for none) and returns status and body.
func (ts *testServer) raw(t *testing.T, method, path, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+ts.tcp.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestTokenGuardsMutatingRoutes: on TCP, each mutating route answers 401
// without or with a malformed Authorization header, 403 with a wrong token,
// logs every refusal (without the token), never reaches the Controller
// when refused, and works with the right token; read-only routes are open.
func TestTokenGuardsMutatingRoutes(t *testing.T) {
	ts := startServer(t, &recordingController{}, testToken)
	routes := []struct{ method, path, call string }{
		{"POST", "/v1/promote", "promote force=false"},
		{"POST", "/v1/demote", "demote"},
		{"POST", "/v1/handoff", "handoff"},
		{"DELETE", "/v1/stashes/tank%2Fflocker-stash%2Fapp-7-x", "rm tank/flocker-stash/app-7-x"},
	}
	cases := []struct {
		name, auth string
		want       int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"basic auth", "Basic dXNlcjpwYXNz", http.StatusUnauthorized},
		{"bearer without token", "Bearer ", http.StatusUnauthorized},
		{"two tokens", "Bearer " + testToken + " x", http.StatusUnauthorized},
		{"wrong token", "Bearer " + strings.ToUpper(testToken), http.StatusForbidden},
		{"token prefix", "Bearer " + testToken[:MinTokenLen], http.StatusForbidden},
	}
	for _, r := range routes {
		for _, c := range cases {
			before := strings.Count(ts.logs.String(), "admin request refused")
			code, body := ts.raw(t, r.method, r.path, c.auth)
			if code != c.want {
				t.Errorf("%s %s, %s: status %d, want %d (%s)", r.method, r.path, c.name, code, c.want, body)
			}
			if got := strings.Count(ts.logs.String(), "admin request refused"); got != before+1 {
				t.Errorf("%s %s, %s: refusal logged %d times, want once", r.method, r.path, c.name, got-before)
			}
		}
	}
	if calls := ts.ctl.Calls(); len(calls) != 0 {
		t.Fatalf("refused requests reached the controller: %v", calls)
	}
	if strings.Contains(ts.logs.String(), strings.ToUpper(testToken)) {
		t.Error("a refused token was written to the log")
	}
	for _, r := range routes {
		code, body := ts.raw(t, r.method, r.path, "bearer "+testToken)
		if code != http.StatusOK {
			t.Errorf("%s %s with the token: %d %s", r.method, r.path, code, body)
		}
	}
	want := []string{"promote force=false", "demote", "handoff", "rm tank/flocker-stash/app-7-x"}
	if got := ts.ctl.Calls(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("controller calls %v, want %v", got, want)
	}
	for _, path := range []string{"/status", "/v1/stashes"} {
		if code, body := ts.raw(t, "GET", path, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d %s", path, code, body)
		}
	}
	var log struct {
		Remote string `json:"remote"`
		Status int    `json:"status"`
		Reason string `json:"reason"`
	}
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		if strings.Contains(line, "admin request refused") {
			if err := json.Unmarshal([]byte(line), &log); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if !strings.HasPrefix(log.Remote, "127.0.0.1:") || log.Status != 401 || log.Reason == "" {
		t.Errorf("refusal log %+v: want the remote address, status 401 and a reason", log)
	}
}

// TestNoTokenConfigured: without [admin] token_file every bearer token is
// refused on TCP (403), while the socket still works.
func TestNoTokenConfigured(t *testing.T) {
	ts := startServer(t, &recordingController{}, "")
	if code, _ := ts.raw(t, "POST", "/v1/demote", "Bearer "+testToken); code != http.StatusForbidden {
		t.Errorf("demote with a token on a server without one: %d, want 403", code)
	}
	if !strings.Contains(ts.logs.String(), "no admin token configured") {
		t.Errorf("refusal does not say no token is configured:\n%s", ts.logs.String())
	}
	res, err := NewUnixClient(ts.socket).Demote(t.Context())
	if err != nil || res.Role != "slave" {
		t.Fatalf("demote over the socket: %+v, %v", res, err)
	}
}

// TestClientOverSocket: the socket needs no token; the client returns the
// controller's results and maps error answers back to the Controller's
// error kinds.
func TestClientOverSocket(t *testing.T) {
	ctl := &recordingController{}
	ts := startServer(t, ctl, testToken)
	fi, err := os.Stat(ts.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != SocketMode {
		t.Errorf("admin socket mode %v, want a socket with %v", fi.Mode(), SocketMode)
	}
	c := NewUnixClient(ts.socket)
	ctx := t.Context()
	if res, err := c.Promote(ctx, true); err != nil || res != (agent.RoleResult{Role: "master", Epoch: 8}) {
		t.Errorf("promote: %+v, %v", res, err)
	}
	if res, err := c.Handoff(ctx); err != nil || res.NewMaster != "beta" || res.Downtime != 1500*time.Millisecond {
		t.Errorf("handoff: %+v, %v", res, err)
	}
	if list, err := c.Stashes(ctx); err != nil || len(list) != 1 || list[0].Epoch != 7 {
		t.Errorf("stashes: %+v, %v", list, err)
	}
	doc, err := c.Status(ctx)
	if err != nil || doc.Node != "alpha" || doc.Epoch != 7 || len(doc.Datasets) != 1 || doc.Time.IsZero() {
		t.Errorf("status: %+v, %v", doc, err)
	}
	if len(doc.Datasets) == 1 && (len(doc.Datasets[0].Stashes) != 1 || doc.Datasets[0].Stashes[0].Name != "tank/flocker-stash/app-7-x") {
		t.Errorf("status: dataset app's stashes %+v, want the controller's stash", doc.Datasets[0].Stashes)
	}
	if got := ctl.Calls(); strings.Join(got, ",") != "promote force=true,handoff,stashes,stashes" {
		t.Errorf("calls %v", got)
	}

	for _, tc := range []struct {
		err  error
		kind error
		code int
	}{
		{fmt.Errorf("promote: peer beta is a live master: %w", agent.ErrRefused), agent.ErrRefused, 409},
		{fmt.Errorf("stash x: %w", agent.ErrNotFound), agent.ErrNotFound, 404},
		{errors.New("zfs set readonly=on: exit 1"), nil, 500},
	} {
		ctl.mu.Lock()
		ctl.err = tc.err
		ctl.mu.Unlock()
		_, err := c.Demote(ctx)
		var ae *Error
		if !errors.As(err, &ae) || ae.Code != tc.code || ae.Message != tc.err.Error() {
			t.Errorf("controller error %q: client got %v, want status %d with the message", tc.err, err, tc.code)
		}
		if tc.kind != nil && !errors.Is(err, tc.kind) {
			t.Errorf("controller error %q: client error %v is not %v", tc.err, err, tc.kind)
		}
	}
	if err := c.RemoveStash(ctx, ""); err == nil {
		t.Error("removing a stash with an empty name: no error")
	}
}

// TestNoController: an agent without failover wired answers 501, and the
// client reports ErrNotImplemented.
func TestNoController(t *testing.T) {
	ts := startServer(t, nil, testToken)
	_, err := NewUnixClient(ts.socket).Promote(t.Context(), false)
	if !errors.Is(err, ErrNotImplemented) {
		t.Fatalf("promote on an agent without a controller: %v, want ErrNotImplemented", err)
	}
	if _, err := NewHTTPClient(ts.tcp, "").Status(t.Context()); err != nil {
		t.Fatalf("status still served: %v", err)
	}
}

// TestBadRequestBody: unknown fields and non-JSON bodies are 400 and never
// reach the controller.
func TestBadRequestBody(t *testing.T) {
	ts := startServer(t, &recordingController{}, testToken)
	for _, body := range []string{`{"forse": true}`, `not json`, `{"force": true} {}`, `{"force": "yes"}`} {
		req, _ := http.NewRequest("POST", "http://"+ts.tcp.String()+"/v1/promote", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %q: status %d, want 400", body, resp.StatusCode)
		}
	}
	if calls := ts.ctl.Calls(); len(calls) != 0 {
		t.Errorf("bad bodies reached the controller: %v", calls)
	}
}

// TestListenUnix: a stale socket is replaced, a live one or another file
// in the way is refused, and Close removes the socket.
func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close() // the socket file stays, nobody answers: a crashed agent's
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("over a live socket: %v, want a refusal naming another agent", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "in the way") {
		t.Errorf("over a regular file: %v, want a refusal", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "x" {
		t.Error("the regular file in the way was changed")
	}
}

// TestReadToken: mode, length and content rules of the token file.
func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadToken(write("good", tok+"\n", 0o600))
	if err != nil || string(got) != tok {
		t.Errorf("good token: %q, %v", got, err)
	}
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"readable", tok, 0o644, "chmod 600"},
		{"short", "abc", 0o600, "at least"},
		{"space", tok[:10] + " " + tok[10:], 0o400, "space"},
		{"empty", "", 0o600, "at least"},
	} {
		if _, err := ReadToken(write(c.name, c.content, c.mode)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s token file: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	if _, err := ReadToken(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := NewServer(Options{Status: func() agent.Status { return agent.Status{} }, Logger: slog.New(slog.DiscardHandler), Token: []byte("short")}); err == nil {
		t.Error("NewServer accepted a short token")
	}
}
