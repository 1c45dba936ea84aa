package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHandler drives guestexec's API on this machine: a real shell, real
// files and a real config edited with config.SetKeys.
func TestHandler(t *testing.T) {
	stopped := make(chan struct{})
	srv := httptest.NewServer(handler(func() { close(stopped) }))
	defer srv.Close()
	post := func(path string, q url.Values, body string) *http.Response {
		t.Helper()
		resp, err := http.Post(srv.URL+path+"?"+q.Encode(), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	var res RunResult
	if err := json.NewDecoder(post("/run", nil, "echo out; echo err >&2; exit 3").Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	if res.Code != 3 || res.Output != "out\nerr\n" || res.ElapsedNS <= 0 {
		t.Errorf("run: %+v", res)
	}
	if resp := post("/run", url.Values{"timeout": {"-1s"}}, "true"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("negative timeout: %s", resp.Status)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "f.txt")
	if resp := post("/wait", url.Values{"path": {file}, "timeout": {"50ms"}}, "x"); resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("wait for a missing file: %s", resp.Status)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		os.WriteFile(file, []byte("later"), 0o644)
	}()
	if resp := post("/wait", url.Values{"path": {file}, "timeout": {"10s"}}, "later"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("wait: %s", resp.Status)
	}
	if resp := post("/write", url.Values{"path": {file}}, "written"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("write: %s", resp.Status)
	}
	if b, _ := os.ReadFile(file); string(b) != "written" {
		t.Errorf("file holds %q", b)
	}

	ini := filepath.Join(dir, "flocker.ini")
	if err := os.WriteFile(ini, []byte("[node]\nname = alpha\n[peer]\nname = beta\naddress = 127.0.0.1:7946\nfingerprint = sha256:"+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"path": ini, "section": "failover", "kv": []string{"timeout", "8s"}})
	if resp := post("/setkeys", nil, string(body)); resp.StatusCode != http.StatusNoContent {
		t.Errorf("setkeys: %s", resp.Status)
	}
	if b, _ := os.ReadFile(ini); !strings.Contains(string(b), "[failover]") || !strings.Contains(string(b), "timeout = 8s") {
		t.Errorf("config after setkeys:\n%s", b)
	}
	body, _ = json.Marshal(map[string]any{"path": ini, "section": "failover", "kv": []string{"timeout"}})
	if resp := post("/setkeys", nil, string(body)); resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("setkeys with an odd list: %s", resp.Status)
	}

	if resp := post("/exit", nil, ""); resp.StatusCode != http.StatusNoContent {
		t.Errorf("exit: %s", resp.Status)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Error("exit did not stop the server")
	}
}
