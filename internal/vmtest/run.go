package vmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flockerha/flocker/internal/logging"
)

// Defaults for a Spec's zero values.
const (
	// DefaultTimeout bounds one attempt. A pair boots and runs a small ZFS
	// replication in about 40 s under TCG on 2 busy cores; 5 min leaves room
	// for a loaded CI machine without letting a hung guest stall the suite.
	DefaultTimeout = 5 * time.Minute
	// DefaultMemoryMiB is enough for the kernel, the initramfs (unpacked into
	// RAM, ~100 MiB) and a default-sized ARC; qemu allocates lazily.
	DefaultMemoryMiB = 1024
	// DefaultDiskSize for a pool disk: sparse, so only written blocks cost.
	DefaultDiskSize = 1 << 30
	// outDiskSize is the ext4 disk mounted at /out for files coming back.
	outDiskSize = 256 << 20
	// MaxGuests: two guests are joined point to point; more would need a
	// switch between them.
	MaxGuests = 2
)

// Spec describes one scenario run.
type Spec struct {
	Images *Images
	Guests []Guest
	// Script is the scenario: /share/run.sh, run with sh by every guest's init
	// in /tmp, with FLOCKER_VM_NAME and FLOCKER_VM_IP set. Its exit code is
	// the guest's result.
	Script string
	// Files are put next to the script under /share (read-only in the
	// guest), keyed by slash-separated relative path. All are executable.
	Files map[string][]byte
	// Timeout per attempt (DefaultTimeout when zero). A guest that has not
	// reported by then is killed, and the attempt is repeated once.
	Timeout time.Duration
	// WorkDir holds disks and logs and is kept when set; when empty a
	// temporary directory is used and removed.
	WorkDir string
	Log     *slog.Logger
	// NoRetry: a guest that gives no exit report is not booted again. For
	// callers that work the guests from outside while they run, to whom a
	// fresh guest would be a stranger.
	NoRetry bool
}

// Guest is one virtual machine of a Spec.
type Guest struct {
	// Name is the guest's hostname: lowercase letters, digits and '-'.
	Name string
	// IP is the CIDR for eth0. With two guests, the empty default is
	// 192.0.2.11/24 for the first and 192.0.2.12/24 for the second.
	IP    string
	Disks []Disk
	// Out attaches an ext4 disk at /out; what the scenario writes there is
	// returned in GuestResult.Out.
	Out       bool
	MemoryMiB int // DefaultMemoryMiB when zero
	CPUs      int // 1 when zero
	// TAP, when set, is an open tap device (IFF_TAP|IFF_NO_PI) that becomes
	// the guest's eth0 instead of the link between two guests: the caller
	// plugs it into a bridge of its own, for example with a host network
	// namespace on it. Either every guest of a Spec has one or none.
	TAP *os.File
}

// Disk is an empty sparse raw disk, seen in the guest as
// /dev/disk/by-id/virtio-SERIAL.
type Disk struct {
	Serial string // lowercase letters, digits and '-', at most 20 bytes
	Size   int64  // bytes; DefaultDiskSize when zero
}

// Result is what a run produced: one entry per guest, in Spec order.
type Result struct {
	Guests   []GuestResult
	Attempts int // 1, or 2 after a retry
}

// GuestResult is one guest's outcome of the last attempt.
type GuestResult struct {
	Name string
	// ExitCode of the scenario, or -1 when the guest gave no exit report
	// (timed out, crashed, or stopped because another guest failed).
	ExitCode int
	Console  string            // serial console: kernel messages and scenario output
	Out      map[string][]byte // files from /out, keyed by relative path
	Elapsed  time.Duration     // qemu start to exit
	Note     string            // why there is no exit report, if there is none
}

// Guest returns the result of the named guest, or nil.
func (r *Result) Guest(name string) *GuestResult {
	for i := range r.Guests {
		if r.Guests[i].Name == name {
			return &r.Guests[i]
		}
	}
	return nil
}

// Err reports each guest whose scenario did not exit 0, with the end of its
// console, or nil when all succeeded.
func (r *Result) Err() error {
	var errs []error
	for _, g := range r.Guests {
		if g.ExitCode == 0 {
			continue
		}
		what := fmt.Sprintf("exit code %d", g.ExitCode)
		if g.ExitCode < 0 {
			what = g.Note
		}
		errs = append(errs, fmt.Errorf("guest %s: %s; console ends:\n%s", g.Name, what, tail(g.Console, 40)))
	}
	return errors.Join(errs...)
}

// ErrNoReport means a guest gave no exit report in either attempt: it hung,
// crashed or was killed at the timeout.
var ErrNoReport = errors.New("guest gave no exit report")

var (
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)
	serialRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)
)

// validate checks a spec and fills in defaults, returning a copy.
func (s Spec) validate() (Spec, error) {
	if s.Images == nil {
		return s, errors.New("spec: Images is nil")
	}
	if len(s.Guests) == 0 || len(s.Guests) > MaxGuests {
		return s, fmt.Errorf("spec: %d guests, want 1 to %d", len(s.Guests), MaxGuests)
	}
	if strings.TrimSpace(s.Script) == "" {
		return s, errors.New("spec: Script is empty")
	}
	for name := range s.Files {
		clean := path.Clean(name)
		if name == "" || clean != name || path.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") {
			return s, fmt.Errorf("spec: file %q: want a clean relative path", name)
		}
		if name == "run.sh" {
			return s, errors.New("spec: file run.sh: the name is taken by Script")
		}
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Timeout < 0 {
		return s, fmt.Errorf("spec: negative Timeout %v", s.Timeout)
	}
	if s.Log == nil {
		s.Log = logging.Discard()
	}
	guests := make([]Guest, len(s.Guests))
	seen := map[string]bool{}
	taps := 0
	for _, g := range s.Guests {
		if g.TAP != nil {
			taps++
		}
	}
	if taps != 0 && taps != len(s.Guests) {
		return s, fmt.Errorf("spec: %d of %d guests have a TAP: give every guest one or none", taps, len(s.Guests))
	}
	for i, g := range s.Guests {
		if !nameRE.MatchString(g.Name) {
			return s, fmt.Errorf("spec: guest %d: name %q: want lowercase letters, digits and '-'", i, g.Name)
		}
		if seen[g.Name] {
			return s, fmt.Errorf("spec: guest %q: name used twice", g.Name)
		}
		seen[g.Name] = true
		if g.IP == "" && len(s.Guests) > 1 {
			g.IP = fmt.Sprintf("192.0.2.%d/24", 11+i)
		}
		if g.IP != "" {
			if _, err := netip.ParsePrefix(g.IP); err != nil {
				return s, fmt.Errorf("spec: guest %q: IP: %w", g.Name, err)
			}
		}
		if g.MemoryMiB == 0 {
			g.MemoryMiB = DefaultMemoryMiB
		}
		if g.CPUs == 0 {
			g.CPUs = 1
		}
		if g.MemoryMiB < 256 || g.CPUs < 1 {
			return s, fmt.Errorf("spec: guest %q: want at least 256 MiB and 1 CPU, have %d MiB and %d", g.Name, g.MemoryMiB, g.CPUs)
		}
		disks := make([]Disk, len(g.Disks))
		serials := map[string]bool{"share": true, "out": true}
		for j, d := range g.Disks {
			if !serialRE.MatchString(d.Serial) || serials[d.Serial] {
				return s, fmt.Errorf("spec: guest %q: disk %d: serial %q: want a unique name of lowercase letters, digits and '-' (at most 20; not share or out)", g.Name, j, d.Serial)
			}
			serials[d.Serial] = true
			if d.Size == 0 {
				d.Size = DefaultDiskSize
			}
			if d.Size < 64<<20 {
				return s, fmt.Errorf("spec: guest %q: disk %q: size %d is below the 64 MiB ZFS needs", g.Name, d.Serial, d.Size)
			}
			disks[j] = d
		}
		g.Disks = disks
		guests[i] = g
	}
	s.Guests = guests
	return s, nil
}

// Run boots the spec's guests, runs the scenario in each and returns their
// results. A scenario that exits non-zero is not an error of Run: see
// Result.Err. When a guest gives no exit report (a hang or crash; TCG guests
// rarely hit soft lockups), all guests are killed and the attempt is repeated
// once; if that fails too, Run returns the last Result and an error wrapping
// ErrNoReport. Run kills only the qemu processes it started.
func Run(ctx context.Context, spec Spec) (*Result, error) {
	s, err := spec.validate()
	if err != nil {
		return nil, err
	}
	dir := s.WorkDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "flocker-vm-run-"); err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	share, err := makeShare(ctx, dir, s.Script, s.Files)
	if err != nil {
		return nil, err
	}

	var res *Result
	for attempt := 1; attempt <= 2; attempt++ {
		res, err = runAttempt(ctx, s, dir, share, attempt)
		if err != nil {
			return nil, err
		}
		res.Attempts = attempt
		if ctx.Err() != nil {
			return res, fmt.Errorf("vm run: %w", ctx.Err())
		}
		if !needsRetry(res) {
			return res, nil
		}
		if s.NoRetry {
			return res, fmt.Errorf("vm run: %w: %w", ErrNoReport, res.Err())
		}
		s.Log.Warn("vm guest gave no exit report", "attempt", attempt, "error", res.Err())
	}
	return res, fmt.Errorf("vm run: %w after 2 attempts: %w", ErrNoReport, res.Err())
}

// needsRetry: some guest gave no report and none reported a failure (a
// scenario failure is an answer; repeating it would only hide flakiness).
func needsRetry(r *Result) bool {
	missing := false
	for _, g := range r.Guests {
		if g.ExitCode > 0 {
			return false
		}
		if g.ExitCode < 0 {
			missing = true
		}
	}
	return missing
}

// runAttempt boots every guest once and waits for all of them. When one ends
// without success, the others are stopped: they would only wait for it.
func runAttempt(ctx context.Context, s Spec, dir, share string, attempt int) (*Result, error) {
	actx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()

	var link [2]*os.File
	if len(s.Guests) == 2 && s.Guests[0].TAP == nil {
		var err error
		if link, err = socketPair(); err != nil {
			return nil, err
		}
		defer link[0].Close()
		defer link[1].Close()
	}
	vms := make([]*vm, len(s.Guests))
	for i, g := range s.Guests {
		nonce, err := newNonce()
		if err != nil {
			return nil, err
		}
		v := &vm{guest: g, index: i, dir: filepath.Join(dir, g.Name), nonce: nonce, share: share, images: s.Images, net: link[i]}
		if g.TAP != nil {
			v.net, v.tap = g.TAP, true
		}
		if err := v.prepare(ctx); err != nil {
			return nil, err
		}
		vms[i] = v
	}

	res := &Result{Guests: make([]GuestResult, len(vms))}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		stopNote string
		startErr error
	)
	s.Log.Info("vm booting", "attempt", attempt, "guests", len(vms), "timeout", s.Timeout)
	for i, v := range vms {
		wg.Go(func() {
			gr, err := v.run(actx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				startErr = errors.Join(startErr, err)
				cancel() // the others would wait for this guest
			}
			killed := actx.Err() != nil // else qemu ended by itself
			switch {
			case gr.ExitCode >= 0:
			case killed && ctx.Err() != nil:
				gr.Note = "killed: " + ctx.Err().Error()
			case killed && stopNote != "":
				gr.Note = stopNote
			case killed:
				gr.Note = fmt.Sprintf("no exit report within %v (killed)", s.Timeout)
			default:
				gr.Note = "qemu exited without an exit report (guest crashed or powered off early)"
			}
			if gr.ExitCode != 0 && !killed && stopNote == "" {
				stopNote = "killed: guest " + v.guest.Name + " failed first"
				cancel()
			}
			s.Log.Info("vm guest done", "guest", v.guest.Name, "exit", gr.ExitCode, "elapsed", gr.Elapsed.Round(time.Millisecond), "note", gr.Note)
			res.Guests[i] = gr
		})
	}
	wg.Wait()
	if startErr != nil {
		return nil, startErr
	}
	return res, nil
}

// makeShare writes the scenario into an ext4 image for the read-only share
// disk. (The guest kernel has no 9p, and an image needs no loop device.)
func makeShare(ctx context.Context, dir, script string, files map[string][]byte) (string, error) {
	src := filepath.Join(dir, "share")
	if err := os.RemoveAll(src); err != nil {
		return "", fmt.Errorf("share: %w", err)
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", fmt.Errorf("share: %w", err)
	}
	total := int64(len(script))
	write := func(name string, data []byte) error {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		total += int64(len(data))
		return os.WriteFile(p, data, 0o755)
	}
	if err := write("run.sh", []byte(script)); err != nil {
		return "", fmt.Errorf("share: %w", err)
	}
	for name, data := range files {
		if err := write(name, data); err != nil {
			return "", fmt.Errorf("share: file %s: %w", name, err)
		}
	}
	img := filepath.Join(dir, "share.img")
	size := total*2 + 16<<20 // ext4 metadata and slack
	if err := mkfsExt4(ctx, img, "share", src, size); err != nil {
		return "", err
	}
	return img, os.RemoveAll(src)
}

// readOut returns the files under dir, keyed by slash-separated relative
// path, leaving out ext4's lost+found.
func readOut(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel == "lost+found" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = data
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	return out, err
}

// socketPair is the guests' Ethernet link: qemu's socket netdev on an
// already connected stream socket carries length-prefixed frames. Neither end
// is a port, so parallel runs cannot collide and nothing leaves this host.
func socketPair() ([2]*os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return [2]*os.File{}, fmt.Errorf("socketpair for the guest link: %w", err)
	}
	return [2]*os.File{os.NewFile(uintptr(fds[0]), "link-a"), os.NewFile(uintptr(fds[1]), "link-b")}, nil
}

func newNonce() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// exitReportPrefix starts the line the guest init writes to its second serial
// port when the scenario is over: "flocker-vm-exit NONCE CODE".
const exitReportPrefix = "flocker-vm-exit"

// parseExitReport finds the exit report carrying nonce in data (the second
// serial port's output) and returns the exit code.
func parseExitReport(data []byte, nonce string) (int, bool) {
	for line := range bytes.Lines(data) {
		f := strings.Fields(string(line))
		if len(f) != 3 || f[0] != exitReportPrefix || f[1] != nonce {
			continue
		}
		var code int
		if _, err := fmt.Sscanf(f[2], "%d", &code); err != nil || code < 0 || code > 255 {
			continue
		}
		return code, true
	}
	return -1, false
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
