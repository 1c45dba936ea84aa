package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/flockerha/flocker/internal/records"
)

// Records of POST /appends are the host tier's (package records): 64
// bytes each, run id and seq+1 first, so one file serves many runs.
const recordSize = records.Size

// AppendsResult is the answer to POST /appends. Times are this guest's
// wall clock in Unix nanoseconds.
type AppendsResult struct {
	// DoneNS[i] is when write(2) of record i returned.
	DoneNS    []int64 `json:"done_ns"`
	StartNS   int64   `json:"start_ns"`
	ElapsedNS int64   `json:"elapsed_ns"`
}

// appendRecords appends count records of run to path, record i due at
// i/rate seconds after the start (a steady schedule; a late write is
// issued at once, so a slow guest shows as a longer elapsed time). It
// runs in the guest so that no request's trip sits between two writes.
func appendRecords(path string, run uint32, rate float64, count int) (AppendsResult, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return AppendsResult{}, err
	}
	res := AppendsResult{DoneNS: make([]int64, 0, count)}
	start := time.Now()
	res.StartNS = start.UnixNano()
	var rec [recordSize]byte
	for i := range count {
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		records.Stamp(rec[:], run, i)
		if _, err := f.Write(rec[:]); err != nil {
			f.Close()
			return res, fmt.Errorf("write %d: %w", i, err)
		}
		res.DoneNS = append(res.DoneNS, time.Now().UnixNano())
	}
	res.ElapsedNS = int64(time.Since(start))
	return res, f.Close()
}

// Highest is one path's answer to POST /highest.
type Highest struct {
	Seq int    `json:"seq"`
	Err string `json:"err,omitempty"` // the path could not be read: Seq means nothing
}

func handleAppends(mux *http.ServeMux) {
	// POST /appends?path=P&run=ID&rate=R&count=N: append N records at R
	// per second; answers AppendsResult when the last write returned.
	mux.HandleFunc("POST /appends", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		run, err1 := strconv.ParseUint(q.Get("run"), 10, 32)
		rate, err2 := strconv.ParseFloat(q.Get("rate"), 64)
		count, err3 := strconv.Atoi(q.Get("count"))
		if err := errors.Join(err1, err2, err3); err != nil || rate <= 0 || count < 1 || q.Get("path") == "" {
			http.Error(w, fmt.Sprintf("appends: want path, run, a positive rate and count: %v", err), http.StatusBadRequest)
			return
		}
		res, err := appendRecords(q.Get("path"), uint32(run), rate, count)
		if err != nil {
			http.Error(w, "appends: "+err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, res)
	})
	// POST /highest?run=ID, body: a JSON list of paths. Answers a list of
	// Highest, one per path in order: the highest seq of run each holds.
	mux.HandleFunc("POST /highest", func(w http.ResponseWriter, r *http.Request) {
		run, err := strconv.ParseUint(r.URL.Query().Get("run"), 10, 32)
		if err != nil {
			http.Error(w, "highest: run: "+err.Error(), http.StatusBadRequest)
			return
		}
		var paths []string
		if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&paths); err != nil {
			http.Error(w, "highest: "+err.Error(), http.StatusBadRequest)
			return
		}
		out := make([]Highest, len(paths))
		for i, p := range paths {
			seq, err := records.Last(p, uint32(run))
			if errors.Is(err, fs.ErrNotExist) {
				// A file its directory lacks holds no record: a snapshot
				// taken before the file existed. A missing directory (a
				// snapshot pruned) stays an error.
				if _, derr := os.Stat(filepath.Dir(p)); derr == nil {
					seq, err = -1, nil
				}
			}
			out[i].Seq = seq
			if err != nil {
				out[i].Err = err.Error()
			}
		}
		writeJSON(w, out)
	})
	// GET /time: this guest's wall clock in Unix nanoseconds, for the
	// driver's clock offset estimate (the request's round trip bounds its
	// error).
	mux.HandleFunc("GET /time", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, time.Now().UnixNano())
	})
}
