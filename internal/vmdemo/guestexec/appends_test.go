package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAppendsAndHighest: the guest-side writer appends numbered records
// on a real file, reports when each write returned, and /highest reads the
// last one back per run.
func TestAppendsAndHighest(t *testing.T) {
	srv := httptest.NewServer(handler(func() {}))
	defer srv.Close()
	post := func(path string, q url.Values, body string) (int, []byte) {
		t.Helper()
		resp, err := http.Post(srv.URL+path+"?"+q.Encode(), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "append.log")
	code, body := post("/appends", url.Values{"path": {file}, "run": {"7"}, "rate": {"200"}, "count": {"20"}}, "")
	if code != http.StatusOK {
		t.Fatalf("appends: %d %s", code, body)
	}
	var res AppendsResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.DoneNS) != 20 || res.ElapsedNS <= 0 || res.DoneNS[0] < res.StartNS {
		t.Fatalf("appends: %+v", res)
	}
	for i := 1; i < len(res.DoneNS); i++ {
		// The schedule spaces writes 5 ms apart: none returns before it is due.
		if due := res.StartNS + int64(i)*int64(5*time.Millisecond); res.DoneNS[i] < due || res.DoneNS[i] < res.DoneNS[i-1] {
			t.Errorf("write %d returned at +%v, due at +%v", i, time.Duration(res.DoneNS[i]-res.StartNS), time.Duration(due-res.StartNS))
		}
	}
	if st, err := os.Stat(file); err != nil || st.Size() != 20*recordSize {
		t.Fatalf("file after 20 records: %v, %v", st, err)
	}
	// A second run appends to the same file.
	if code, body := post("/appends", url.Values{"path": {file}, "run": {"8"}, "rate": {"1000"}, "count": {"3"}}, ""); code != http.StatusOK {
		t.Fatalf("appends, run 8: %d %s", code, body)
	}
	paths, _ := json.Marshal([]string{file, filepath.Join(dir, "missing"), filepath.Join(dir, "gone", "append.log")})
	check := func(run int, want int) {
		t.Helper()
		code, body := post("/highest", url.Values{"run": {strconv.Itoa(run)}}, string(paths))
		var hs []Highest
		if code != http.StatusOK || json.Unmarshal(body, &hs) != nil || len(hs) != 3 {
			t.Fatalf("highest: %d %s", code, body)
		}
		if hs[0].Seq != want || hs[0].Err != "" {
			t.Errorf("highest of run %d: %+v, want seq %d", run, hs[0], want)
		}
		// A file missing from an existing directory holds nothing (a
		// snapshot from before the file); a missing directory is an error.
		if hs[1].Seq != -1 || hs[1].Err != "" {
			t.Errorf("highest of a file its directory lacks: %+v, want -1", hs[1])
		}
		if hs[2].Err == "" {
			t.Errorf("highest in a missing directory: %+v, want an error", hs[2])
		}
	}
	check(8, 2)
	check(7, -1) // the last record is run 8's
	for _, q := range []url.Values{
		{"path": {file}, "run": {"1"}, "rate": {"0"}, "count": {"1"}},
		{"path": {file}, "run": {"x"}, "rate": {"1"}, "count": {"1"}},
		{"run": {"1"}, "rate": {"1"}, "count": {"1"}},
	} {
		if code, _ := post("/appends", q, ""); code != http.StatusBadRequest {
			t.Errorf("appends %v: %d, want 400", q, code)
		}
	}

	resp, err := http.Get(srv.URL + "/time")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || time.Since(time.Unix(0, ns)).Abs() > time.Minute {
		t.Errorf("time: %q (%v), now %v", b, err, time.Now())
	}
}
