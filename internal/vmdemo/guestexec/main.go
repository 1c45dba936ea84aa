// Command guestexec is the demo's hands inside a VM guest: an HTTP server
// on the guest's address that runs shell commands, writes and waits for
// files and edits flocker configs for the demo driver on the host. It
// listens only on the demo's private segment (the guests' taps and the
// host namespace of client C on one bridge), and exits on POST /exit.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/flockerha/flocker/agent/config"
)

func main() {
	listen := flag.String("listen", ":9200", "address to serve on")
	flag.Parse()
	done := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(done) }) }
	srv := &http.Server{Addr: *listen, Handler: handler(stop), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "guestexec: %v\n", err)
		os.Exit(1)
	}
}

// RunResult is the answer to POST /run.
type RunResult struct {
	Output string `json:"output"`
	Code   int    `json:"code"`
	// ElapsedNS is the script's run time measured in the guest, without
	// the request's trip.
	ElapsedNS int64 `json:"elapsed_ns"`
}

func handler(stop func()) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	// POST /run?timeout=D, body: a sh script. stdin is /dev/null; output
	// is stdout and stderr together. A script that leaves a process in the
	// background must redirect its output, or /run waits for it.
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		script, err := readBody(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		timeout, err := durationParam(r, "timeout", time.Minute)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.WaitDelay = time.Second
		start := time.Now()
		out, err := cmd.CombinedOutput()
		res := RunResult{Output: string(out), ElapsedNS: int64(time.Since(start))}
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			res.Code = exit.ExitCode()
		case err != nil:
			res.Code, res.Output = -1, res.Output+err.Error()
		}
		writeJSON(w, res)
	})
	// POST /write?path=P, body: the content. No shell and no fork between
	// the request and write(2), so the demo's lag clock starts right.
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		data, err := readBody(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := os.WriteFile(r.URL.Query().Get("path"), []byte(data), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	// POST /wait?path=P&timeout=D, body: the content to wait for. Answers
	// 204 as soon as P holds it (polled every 2 ms), 504 at the timeout.
	mux.HandleFunc("POST /wait", func(w http.ResponseWriter, r *http.Request) {
		want, err := readBody(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		timeout, err := durationParam(r, "timeout", time.Minute)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		path := r.URL.Query().Get("path")
		deadline := time.Now().Add(timeout)
		for {
			if b, err := os.ReadFile(path); err == nil && string(b) == want {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			if time.Now().After(deadline) || r.Context().Err() != nil {
				http.Error(w, fmt.Sprintf("%s does not hold the content after %v", path, timeout), http.StatusGatewayTimeout)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	// POST /setkeys, body: {"path": P, "section": S, "kv": [k, v, ...]}:
	// config.SetKeys, the way the agent itself edits its file.
	mux.HandleFunc("POST /setkeys", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Path, Section string
			KV            []string
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "setkeys: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := config.SetKeys(req.Path, req.Section, req.KV...); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	handleAppends(mux)
	mux.HandleFunc("POST /exit", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		stop()
	})
	return mux
}

func readBody(r *http.Request) (string, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("reading request: %w", err)
	}
	return string(b), nil
}

func durationParam(r *http.Request, name string, def time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("parameter %s=%q: want a positive duration", name, v)
	}
	return d, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
