//go:build linux

package bpf

import (
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/testutil"
	"golang.org/x/sys/unix"
)

// testLog routes the code's debug logs into the test's output.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func features(r KernelReport) map[string]Feature {
	return map[string]Feature{
		"btf": r.BTF, "ringbuf": r.RingBuf, "tp_btf": r.TPBTF, "tracepoint": r.Tracepoint,
		"raw_tracepoint": r.RawTracepoint, "fentry": r.Fentry, "fexit": r.Fexit,
		"kprobe": r.Kprobe, "lsm": r.LSM, "block_tracepoint": r.BlockTracepoint,
	}
}

// The facts asserted here were measured on this machine kind (kernel 6.18 in
// Firecracker; /work/shared/notes/machine.md), which is also what CI runs on.
// The VM tier checks the other side (fentry, kprobe and lsm available).
func TestProbeKernelOnThisHost(t *testing.T) {
	testutil.RequireRoot(t)
	r, err := ProbeKernel(ProbeOptions{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Release == "" {
		t.Error("no kernel release")
	}
	for name, f := range features(r) {
		if f.Available != (f.Reason == "") {
			t.Errorf("%s: available=%v with reason %q: a reason must come with (only) a refusal", name, f.Available, f.Reason)
		}
		if strings.Contains(f.Reason, "\n") {
			t.Errorf("%s: reason spans lines: %q", name, f.Reason)
		}
	}
	all := features(r)
	for _, name := range []string{"btf", "ringbuf", "tp_btf", "tracepoint", "raw_tracepoint", "block_tracepoint"} {
		if !all[name].Available {
			t.Errorf("%s: want available on this host, got reason %q", name, all[name].Reason)
		}
	}
	// fentry, fexit and LSM programs are refused at load time with EPERM.
	for _, name := range []string{"fentry", "fexit", "lsm"} {
		if f := all[name]; f.Available || !strings.Contains(f.Reason, "load") || !strings.Contains(f.Reason, "operation not permitted") {
			t.Errorf("%s: want refused at load with the kernel's EPERM, got %+v", name, f)
		}
	}
	// CONFIG_KPROBES is off: the program loads but cannot attach.
	if f := r.Kprobe; f.Available || !strings.HasPrefix(f.Reason, "attach kprobe/vfs_write") {
		t.Errorf("kprobe: want an attach refusal, got %+v", f)
	}
}

// Without tracefs the classic tracepoints cannot find their event ids: the
// report must say so, while tp_btf and raw tracepoints (no tracefs needed)
// still work.
func TestProbeKernelWithoutTracefs(t *testing.T) {
	testutil.RequireRoot(t)
	type result struct {
		r   KernelReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		// A private mount namespace for this thread only, with tracefs
		// unmounted. The thread stays locked, so it exits with this goroutine
		// and the namespace never serves other goroutines.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- result{err: err}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			done <- result{err: err}
			return
		}
		for _, dir := range tracefsDirs {
			_ = unix.Unmount(dir, unix.MNT_DETACH) // not every dir is a mount
		}
		if tracefsMounted() == nil {
			done <- result{err: errors.New("tracefs still mounted in the private namespace")}
			return
		}
		r, err := ProbeKernel(ProbeOptions{Log: testLog(t)})
		done <- result{r, err}
	}()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	for name, f := range map[string]Feature{"tracepoint": res.r.Tracepoint, "block_tracepoint": res.r.BlockTracepoint} {
		if f.Available || !strings.Contains(f.Reason, "tracefs is not mounted at /sys/kernel/tracing") {
			t.Errorf("%s: want a refusal naming the missing tracefs, got %+v", name, f)
		}
	}
	if !res.r.TPBTF.Available || !res.r.RawTracepoint.Available {
		t.Errorf("tp_btf %+v, raw_tracepoint %+v: want both available without tracefs", res.r.TPBTF, res.r.RawTracepoint)
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"load program: permission denied:\n  invalid mem access\n": "load program: permission denied: invalid mem access",
		"  a \t b  ":             "a b",
		strings.Repeat("x", 400): strings.Repeat("x", 297) + "...",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkProbeKernel measures one full kernel probe (every load and attach).
// The whole `flocker probe` must stay well under 2 s on this host.
func BenchmarkProbeKernel(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		if _, err := ProbeKernel(ProbeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
