package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/api"
	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// withTokens gives each node an admin token file and sets [admin]
// token_file; it returns the tokens by node.
func withTokens(t *testing.T, p *agentpair.Pair) map[*agentpair.Node]string {
	t.Helper()
	tokens := map[*agentpair.Node]string{}
	for _, n := range p.Nodes() {
		tok, err := api.GenerateToken()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(n.Dir, "admin.token")
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := config.SetKeys(n.Config, "admin", "token_file", path); err != nil {
			t.Fatal(err)
		}
		tokens[n] = tok
	}
	return tokens
}

// hostHTTP is an HTTP client whose connections are opened inside h's
// network namespace, where the agents' status ports are.
func hostHTTP(h *rig.Host) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := h.Do(func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

func request(t *testing.T, hc *http.Client, method, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestOperateRealPair runs the operator's surfaces against a real pair:
// the admin socket and the status port, the token guard, the /status
// schema, metrics moving across a replication, and the exit codes of
// flocker status as the pair degrades and breaks.
func TestOperateRealPair(t *testing.T) {
	p := newPair(t, agentpair.Options{Settings: map[string]map[string]string{
		"notify": {"mode": "timer", "interval": timerInterval}, "replication": {"lag_threshold": "30s"},
	}})
	tokens := withTokens(t, p)
	start(t, p.Slave, p.Master)
	// The first full transfer acknowledged (two empty trees compare equal
	// before the replica exists).
	waitRecord(t, p.Master, 0, firstSyncTimeout, "first transfer", msg("replicated"))
	waitSame(t, p, syncTimeout)

	t.Run("socket and schema", func(t *testing.T) { socketAndSchema(t, p) })
	t.Run("token guard", func(t *testing.T) { tokenGuard(t, p, tokens) })
	t.Run("metrics move", func(t *testing.T) { metricsMove(t, p) })
	t.Run("status exit codes", func(t *testing.T) { statusExitCodes(t, p) })
}

func socketAndSchema(t *testing.T, p *agentpair.Pair) {
	sch := compileStatusSchema(t)
	for _, n := range p.Nodes() {
		fi, err := os.Stat(n.Socket)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: admin socket mode %v, want a socket with 0600", n.Name, fi.Mode())
		}
		doc, err := api.NewUnixClient(n.Socket).Status(t.Context())
		if err != nil {
			t.Fatalf("%s: status over the socket: %v", n.Name, err)
		}
		if doc.Node != n.Name || doc.Role != n.Role || len(doc.Datasets) != 1 || doc.Datasets[0].Name != agentpair.DatasetName ||
			!doc.Peer.Connected || doc.Datasets[0].NewestLocal == nil {
			t.Errorf("%s: status %+v", n.Name, doc.Status)
		}
		// The raw document as served on the status port, against the schema.
		code, body := request(t, hostHTTP(n.Host), "GET", "http://"+n.StatusAddr+"/status", "")
		if code != 200 {
			t.Fatalf("%s: GET /status: %d %s", n.Name, code, body)
		}
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s: /status does not match status.schema.json: %v\n%s", n.Name, err, body)
		}
	}
}

func compileStatusSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(api.Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("status.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("status.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// tokenGuard: on the status port a mutating route is refused with 401
// without or with a malformed header and 403 with another node's token,
// each refusal is in the agent's log, and the right token gets past the
// guard.
func tokenGuard(t *testing.T, p *agentpair.Pair, tokens map[*agentpair.Node]string) {
	hc := hostHTTP(p.Master.Host)
	base := "http://" + p.Master.StatusAddr
	mark := p.Master.Log.Len()
	stash := base + "/v1/stashes/no-such-stash"
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", 401},
		{"Token " + tokens[p.Master], 401},
		{"Bearer " + tokens[p.Slave], 403},
	} {
		if code, body := request(t, hc, "DELETE", stash, c.auth); code != c.want {
			t.Errorf("DELETE with %q: %d %s, want %d", c.auth, code, body, c.want)
		}
	}
	var refusals []agentpair.Record
	for deadline := time.Now().Add(10 * time.Second); len(refusals) < 3; time.Sleep(50 * time.Millisecond) {
		refusals = nil
		for _, r := range p.Master.Log.Records(mark) {
			if r.Msg() == "admin request refused" {
				refusals = append(refusals, r)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d refusals logged, want 3", len(refusals))
		}
	}
	for i, want := range []float64{401, 401, 403} {
		r := refusals[i]
		if r.Num("status") != want || !strings.HasPrefix(r.Str("remote"), p.Master.Host.IPv4.Addr().String()+":") {
			t.Errorf("refusal record %v: want status %v and the caller's address", r, want)
		}
	}
	for _, r := range p.Master.Log.Records(0) {
		line, _ := json.Marshal(r)
		for _, tok := range tokens {
			if strings.Contains(string(line), tok) {
				t.Errorf("a token is in the log: %s", line)
			}
		}
	}
	// Past the guard: no such stash (404) once the agent takes operator
	// requests, 501 until then; never an auth refusal.
	if code, body := request(t, hc, "DELETE", stash, "Bearer "+tokens[p.Master]); code != 404 && code != 501 {
		t.Errorf("DELETE with the right token: %d %s, want 404 or 501", code, body)
	}
}

// metricsMove: a write on the master moves the transfer, byte, snapshot,
// change and lag metrics on both sides.
func metricsMove(t *testing.T, p *agentpair.Pair) {
	scrape := func(n *agentpair.Node) string {
		code, body := request(t, hostHTTP(n.Host), "GET", "http://"+n.StatusAddr+"/metrics", "")
		if code != 200 {
			t.Fatalf("%s: /metrics: %d", n.Name, code)
		}
		return body
	}
	ds := `dataset="app",role="master"`
	sds := `dataset="app",role="slave"`
	type key struct {
		n            *agentpair.Node
		name, labels string
	}
	keys := []key{
		{p.Master, "flocker_transfers_total", ds},
		{p.Master, "flocker_bytes_sent_total", ds},
		{p.Master, "flocker_snapshots_taken_total", ds},
		{p.Master, "flocker_replication_lag_seconds_count", `dataset="app"`},
		{p.Master, "flocker_change_events_total", `tier="timer"`},
		{p.Slave, "flocker_transfers_total", sds},
		{p.Slave, "flocker_bytes_received_total", sds},
	}
	value := func(text string, k key) float64 {
		v, ok := sample(text, k.name, k.labels)
		if !ok {
			t.Fatalf("%s: %s{%s} missing from /metrics", k.n.Name, k.name, k.labels)
		}
		return v
	}
	before := map[key]float64{}
	texts := map[*agentpair.Node]string{p.Master: scrape(p.Master), p.Slave: scrape(p.Slave)}
	for _, k := range keys {
		// A histogram's series appears with its first observation.
		before[k], _ = sample(texts[k.n], k.name, k.labels)
	}
	for _, present := range []string{"flocker_ringbuffer_drops_total", "flocker_heartbeat_rtt_seconds", "flocker_peer_reachable"} {
		if _, ok := sample(texts[p.Master], present, ""); !ok {
			t.Errorf("%s missing from /metrics", present)
		}
	}
	if v, _ := sample(texts[p.Master], "flocker_role_changes_total", `kind="failover"`); v != 0 {
		t.Errorf("failovers counted on a pair that never failed over: %v", v)
	}
	mark := p.Master.Log.Len()
	if err := os.WriteFile(filepath.Join(p.Master.Mountpoint, "metrics-"+strconv.FormatInt(time.Now().UnixNano(), 10)), bytes.Repeat([]byte("m"), 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p, syncTimeout)
	waitRecord(t, p.Master, mark, syncTimeout, "replicated", msg("replicated"))
	// The slave counts a transfer when it received it, the master when it
	// was acknowledged. The "replicated" record waited for may be an
	// earlier transfer's (one in flight at the mark), and the replica's
	// files can match before the slave's loop has counted the receive
	// (seen in CI: beta 2 -> 2), so the counters get syncTimeout to move.
	deadline := time.Now().Add(syncTimeout)
	for {
		texts = map[*agentpair.Node]string{p.Master: scrape(p.Master), p.Slave: scrape(p.Slave)}
		var still []string
		for _, k := range keys {
			if after := value(texts[k.n], k); after <= before[k] {
				still = append(still, fmt.Sprintf("%s: %s{%s} did not move across a replication: %v -> %v", k.n.Name, k.name, k.labels, before[k], after))
			}
		}
		if len(still) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("within %v:\n%s", syncTimeout, strings.Join(still, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sample finds one sample in a Prometheus text exposition.
func sample(text, name, labels string) (float64, bool) {
	key := name
	if labels != "" {
		key += "{" + labels + "}"
	}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, key+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return f, err == nil
		}
	}
	return 0, false
}

// statusExitCodes: flocker status, run on each host as an operator would,
// exits 0 while the pair is healthy, 1 on the master once the slave's
// agent is gone, 2 on a host whose own agent is gone.
func statusExitCodes(t *testing.T, p *agentpair.Pair) {
	for _, n := range p.Nodes() {
		code, out := flockerStatus(t, n)
		if code != 0 || !strings.Contains(out, "HEALTHY") || !strings.Contains(out, n.Name+" (this host)") {
			t.Fatalf("%s: flocker status exit %d, want 0:\n%s", n.Name, code, out)
		}
		t.Logf("flocker status on %s:\n%s", n.Name, out)
	}
	if err := p.Slave.Stop(); err != nil {
		t.Fatal(err)
	}
	code, out := flockerStatus(t, p.Slave)
	if code != 2 || !strings.Contains(out, "this host's agent does not answer") {
		t.Errorf("slave with its agent stopped: exit %d, want 2:\n%s", code, out)
	}
	// The master notices the peer is gone when the connection closes.
	deadline := time.Now().Add(syncTimeout)
	for {
		code, out = flockerStatus(t, p.Master)
		if code == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("master with the slave's agent stopped: exit %d, want 1:\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out, "DEGRADED") || !strings.Contains(out, "status port does not answer") {
		t.Errorf("degraded master's status does not say why:\n%s", out)
	}
	code, out = flockerStatusJSON(t, p.Master)
	if code != 1 {
		t.Errorf("--json: exit %d, want 1:\n%s", code, out)
	}
	if err := p.Master.Stop(); err != nil {
		t.Fatal(err)
	}
	if code, out := flockerStatus(t, p.Master); code != 2 {
		t.Errorf("master with its agent stopped: exit %d, want 2:\n%s", code, out)
	}
}

func flockerStatus(t *testing.T, n *agentpair.Node, extra ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := n.Host.Command(ctx, bin, append([]string{"status", "--config", n.Config}, extra...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("flocker status on %s: %v", n.Name, err)
	return -1, ""
}

func flockerStatusJSON(t *testing.T, n *agentpair.Node) (int, string) {
	t.Helper()
	code, out := flockerStatus(t, n, "--json")
	var r struct {
		Health string `json:"health"`
		Exit   int    `json:"exit"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Exit != code {
		t.Errorf("%s: status --json: %v, report exit %d, process exit %d\n%s", n.Name, err, r.Exit, code, out)
	}
	return code, out
}
