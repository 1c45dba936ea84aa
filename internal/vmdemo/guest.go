package vmdemo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
)

// execPort is guestexec's port in every guest.
const execPort = 9200

// guest is the driver's handle on one guest: guestexec's API, reached
// from client C's namespace.
type guest struct {
	name                  string // the VM's hostname: a or b
	node                  string // the flocker node it runs: alpha or beta
	ip                    string // without the prefix length
	pool, zfs, mountpoint string
	role                  string // initial role
	agentLevel            string // the agent's --log-level; "" for its default

	client *http.Client
}

func newGuest(seg *segment, name, node, ip, pool, role string) *guest {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return seg.dial(ctx, addr) },
		// A fresh connection per request: a's cable is pulled mid-story.
		DisableKeepAlives: true,
	}
	return &guest{name: name, node: node, ip: ip, pool: pool, zfs: pool + "/app", mountpoint: "/" + pool + "/app",
		role: role, client: &http.Client{Transport: tr}}
}

func (g *guest) url(path string, q url.Values) string {
	u := url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", g.ip, execPort), Path: path, RawQuery: q.Encode()}
	return u.String()
}

func (g *guest) post(ctx context.Context, path string, q url.Values, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url(path, q), strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	return g.client.Do(req)
}

// expect204 reads a response that should be 204 No Content.
func expect204(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// ping reports whether guestexec answers.
func (g *guest) ping(ctx context.Context) bool { return g.pingWithin(ctx, 2*time.Second) }

// pingWithin reports whether guestexec answers within d, asking again
// every second (a guest's own stall of a second is no answer).
func (g *guest) pingWithin(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		rctx, cancel := context.WithTimeout(ctx, min(2*time.Second, time.Until(deadline)))
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, g.url("/ping", nil), nil)
		if err == nil {
			var resp *http.Response
			if resp, err = g.client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					cancel()
					return true
				}
			}
		}
		cancel()
		if time.Until(deadline) < time.Second || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Second)
	}
}

// run runs a sh script in the guest and returns its output and exit code.
func (g *guest) run(ctx context.Context, script string) (string, int, error) {
	out, code, _, err := g.runTimed(ctx, script)
	return out, code, err
}

// runTimed is run that also returns the script's run time in the guest.
func (g *guest) runTimed(ctx context.Context, script string) (string, int, time.Duration, error) {
	resp, err := g.post(ctx, "/run", url.Values{"timeout": {"2m"}}, script)
	if err != nil {
		return "", 0, 0, fmt.Errorf("guest %s: %w", g.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", 0, 0, fmt.Errorf("guest %s: run: %s: %s", g.name, resp.Status, bytes.TrimSpace(b))
	}
	var res struct {
		Output    string
		Code      int
		ElapsedNS int64 `json:"elapsed_ns"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return "", 0, 0, fmt.Errorf("guest %s: run: %w", g.name, err)
	}
	return res.Output, res.Code, time.Duration(res.ElapsedNS), nil
}

// sh is run where anything but exit 0 is an error.
func (g *guest) sh(ctx context.Context, script string) (string, error) {
	out, code, err := g.run(ctx, script)
	if err != nil {
		return "", err
	}
	if code != 0 {
		return out, fmt.Errorf("guest %s: %q: exit %d: %s", g.name, firstLine(script, 80), code, strings.TrimSpace(out))
	}
	return out, nil
}

func (g *guest) write(ctx context.Context, path, content string) error {
	if err := expect204(g.post(ctx, "/write", url.Values{"path": {path}}, content)); err != nil {
		return fmt.Errorf("guest %s: writing %s: %w", g.name, path, err)
	}
	return nil
}

// wait returns when path in the guest holds content.
func (g *guest) wait(ctx context.Context, path, content string, timeout time.Duration) error {
	if err := expect204(g.post(ctx, "/wait", url.Values{"path": {path}, "timeout": {timeout.String()}}, content)); err != nil {
		return fmt.Errorf("guest %s: waiting for %s: %w", g.name, path, err)
	}
	return nil
}

func (g *guest) setKeys(ctx context.Context, section string, kv ...string) error {
	body, err := json.Marshal(map[string]any{"path": configPath, "section": section, "kv": kv})
	if err != nil {
		return err
	}
	if err := expect204(g.post(ctx, "/setkeys", nil, string(body))); err != nil {
		return fmt.Errorf("guest %s: [%s]: %w", g.name, section, err)
	}
	return nil
}

func (g *guest) exit(ctx context.Context) error {
	return expect204(g.post(ctx, "/exit", nil, ""))
}

// flocker runs the flocker CLI in the guest; a non-zero exit is returned
// as the code, not as an error (flocker status exits 1 when degraded).
func (g *guest) flocker(ctx context.Context, args string) (string, int, error) {
	return g.run(ctx, "flocker "+args+" 2>&1")
}

// agentLog reads the agent's JSON log records.
func (g *guest) agentLog(ctx context.Context) ([]agentpair.Record, error) {
	out, err := g.sh(ctx, "cat "+agentLog)
	if err != nil {
		return nil, err
	}
	var recs []agentpair.Record
	for _, l := range strings.Split(out, "\n") {
		var r agentpair.Record
		if json.Unmarshal([]byte(l), &r) == nil && r.Msg() != "" {
			recs = append(recs, r)
		}
	}
	return recs, nil
}

// state reads the role and epoch the agent persisted in [state].
func (g *guest) state(ctx context.Context) (role string, epoch int, err error) {
	out, err := g.sh(ctx, "sed -n '/^\\[state\\]/,$p' "+configPath)
	if err != nil {
		return "", 0, err
	}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "role":
			role = strings.TrimSpace(v)
		case "epoch":
			fmt.Sscan(strings.TrimSpace(v), &epoch)
		}
	}
	return role, epoch, nil
}

// holdsVIP reports whether the guest's eth0 holds the floating address.
func (g *guest) holdsVIP(ctx context.Context) (bool, error) {
	out, err := g.sh(ctx, "ip -o -4 addr show dev eth0")
	if err != nil {
		return false, err
	}
	return strings.Contains(out, " "+vip.Addr().String()+"/"), nil
}
