//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Feature is one kernel capability as the kernel answered when asked.
// Reason is empty when Available, otherwise the kernel's own error on one line.
type Feature struct {
	Available bool   `json:"available"`
	Reason    string `json:"reason"`
}

// Have is an available feature.
func Have() Feature { return Feature{Available: true} }

// Missing is an unavailable feature; err's text becomes the reason.
func Missing(err error) Feature { return Feature{Reason: OneLine(err.Error())} }

// KernelReport is what ProbeKernel found. Every field was found by loading
// (and where meaningful attaching) a program, never by reading a version.
type KernelReport struct {
	Release         string  `json:"release"`
	BTF             Feature `json:"btf"`
	RingBuf         Feature `json:"ringbuf"`
	TPBTF           Feature `json:"tp_btf"`
	Tracepoint      Feature `json:"tracepoint"`
	RawTracepoint   Feature `json:"raw_tracepoint"`
	Fentry          Feature `json:"fentry"`
	Fexit           Feature `json:"fexit"`
	Kprobe          Feature `json:"kprobe"`
	LSM             Feature `json:"lsm"`
	BlockTracepoint Feature `json:"block_tracepoint"`
}

// ProbeOptions tunes ProbeKernel. The zero value is ready to use.
type ProbeOptions struct {
	Log *slog.Logger // nil discards
}

// Where the probes attach. vfs_write is the VFS function the fentry and kprobe
// tiers hook; sys_exit is what the syscall-exit tier uses; block_bio_queue is
// where the block tier sees I/O submitted to a device.
const (
	vfsFunc       = "vfs_write"
	sysExit       = "sys_exit"
	syscallsGroup = "raw_syscalls"
	blockGroup    = "block"
	blockEvent    = "block_bio_queue"
)

// Where tracefs is found: its own mount, or the automount inside debugfs.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// ProbeKernel loads each probe program on its own, attaches it, and detaches
// it again. It returns an error only when the probe itself cannot run (the
// embedded object does not parse); a missing feature is a result, not an error.
func ProbeKernel(opts ProbeOptions) (KernelReport, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec, err := loadProbe()
	if err != nil {
		return KernelReport{}, fmt.Errorf("probing kernel: %w", err)
	}
	p := &prober{spec: spec, cache: btf.NewCache(), log: log}

	var r KernelReport
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		r.Release = unix.ByteSliceToString(uts.Release[:])
	}
	p.run("btf", &r.BTF, p.btf)
	p.run("ringbuf", &r.RingBuf, p.ringbuf)
	p.run("tp_btf", &r.TPBTF, func() error {
		return p.attach("probe_tp_btf", func(prog *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		})
	})
	p.run("tracepoint", &r.Tracepoint, func() error {
		return p.attach("probe_tracepoint", func(prog *ebpf.Program) (link.Link, error) {
			if err := tracefsMounted(); err != nil {
				return nil, err
			}
			return link.Tracepoint(syscallsGroup, sysExit, prog, nil)
		})
	})
	p.run("raw_tracepoint", &r.RawTracepoint, func() error {
		return p.attach("probe_raw_tracepoint", func(prog *ebpf.Program) (link.Link, error) {
			return link.AttachRawTracepoint(link.RawTracepointOptions{Name: sysExit, Program: prog})
		})
	})
	p.run("fentry", &r.Fentry, func() error {
		return p.attach("probe_fentry", func(prog *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
		})
	})
	p.run("fexit", &r.Fexit, func() error {
		return p.attach("probe_fexit", func(prog *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFExit})
		})
	})
	p.run("kprobe", &r.Kprobe, func() error {
		err := p.attach("probe_kprobe", func(prog *ebpf.Program) (link.Link, error) {
			return link.Kprobe(vfsFunc, prog, nil)
		})
		if err != nil && !kprobePMU() {
			// Without the PMU the library falls back to tracefs's
			// kprobe_events, so the error names only that file: add the PMU.
			err = fmt.Errorf("%w; no kprobe PMU under %s either", err, pmuDir)
		}
		return err
	})
	p.run("lsm", &r.LSM, p.lsm)
	p.run("block_tracepoint", &r.BlockTracepoint, func() error {
		return p.attach("probe_block", func(prog *ebpf.Program) (link.Link, error) {
			if err := tracefsMounted(); err != nil {
				return nil, err
			}
			return link.Tracepoint(blockGroup, blockEvent, prog, nil)
		})
	})
	return r, nil
}

type prober struct {
	spec  *ebpf.CollectionSpec
	cache *btf.Cache // decodes the kernel's BTF once for every load
	log   *slog.Logger
}

// run records one check's outcome and logs it with its duration.
func (p *prober) run(name string, into *Feature, check func() error) {
	start := time.Now()
	err := check()
	if err != nil {
		*into = Missing(err)
	} else {
		*into = Have()
	}
	p.log.Debug("kernel probe", "feature", name, "available", into.Available,
		"reason", into.Reason, "took", time.Since(start))
}

func (p *prober) btf() error {
	spec, err := p.cache.Kernel()
	if err != nil {
		return err
	}
	// Decoding is lazy: look a type up so a corrupt blob shows here.
	var task *btf.Struct
	if err := spec.TypeByName("task_struct", &task); err != nil {
		return fmt.Errorf("vmlinux BTF: %w", err)
	}
	return nil
}

func (p *prober) ringbuf() error {
	var obj struct {
		Ringbuf *ebpf.Map `ebpf:"probe_ringbuf"`
	}
	if err := p.spec.LoadAndAssign(&obj, p.opts()); err != nil {
		return fmt.Errorf("create ring buffer map: %w", kernelError(err))
	}
	return obj.Ringbuf.Close()
}

// attach loads the named program, attaches it with do, and detaches again.
func (p *prober) attach(name string, do func(*ebpf.Program) (link.Link, error)) error {
	prog, err := p.load(name)
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := do(prog)
	if err != nil {
		return fmt.Errorf("attach %s: %w", p.spec.Programs[name].SectionName, kernelError(err))
	}
	return l.Close()
}

// lsm needs more than an attach: the kernel accepts a BPF LSM program even when
// "bpf" is not in its active LSM list, and then never runs it. So the program
// records that it ran, and a file is opened to fire the file_open hook.
func (p *prober) lsm() error {
	var obj struct {
		Prog *ebpf.Program  `ebpf:"probe_lsm"`
		Ran  *ebpf.Variable `ebpf:"probe_lsm_ran"`
	}
	if err := p.spec.LoadAndAssign(&obj, p.opts()); err != nil {
		return fmt.Errorf("load %s: %w", p.spec.Programs["probe_lsm"].SectionName, kernelError(err))
	}
	defer obj.Prog.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: obj.Prog})
	if err != nil {
		return fmt.Errorf("attach %s: %w", p.spec.Programs["probe_lsm"].SectionName, kernelError(err))
	}
	defer l.Close()
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		return fmt.Errorf("opening a file to fire the LSM hook: %w", err)
	}
	f.Close()
	var ran uint32
	if err := obj.Ran.Get(&ran); err != nil {
		return fmt.Errorf("reading whether the LSM program ran: %w", err)
	}
	if ran == 0 {
		return fmt.Errorf("attached, but the file_open hook never ran: the BPF LSM is not active (%s)", activeLSMs())
	}
	return nil
}

// activeLSMs describes the kernel's active LSM list for a reason text.
func activeLSMs() string {
	b, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		return `"bpf" is missing from the lsm= list; securityfs not readable: ` + err.Error()
	}
	return fmt.Sprintf("active LSMs %q lack \"bpf\"", strings.TrimSpace(string(b)))
}

// load loads one program (and the maps it uses, nothing else) by name.
// LoadAndAssign loads only what the struct it is given names, so a one-field
// struct is built at run time to carry the name in its tag.
func (p *prober) load(name string) (*ebpf.Program, error) {
	ps, ok := p.spec.Programs[name]
	if !ok {
		return nil, fmt.Errorf("program %s is not in the probe object", name)
	}
	typ := reflect.StructOf([]reflect.StructField{{
		Name: "Prog",
		Type: reflect.TypeFor[*ebpf.Program](),
		Tag:  reflect.StructTag(`ebpf:"` + name + `"`),
	}})
	obj := reflect.New(typ)
	if err := p.spec.LoadAndAssign(obj.Interface(), p.opts()); err != nil {
		return nil, fmt.Errorf("load %s: %w", ps.SectionName, kernelError(err))
	}
	return obj.Elem().Field(0).Interface().(*ebpf.Program), nil
}

func (p *prober) opts() *ebpf.CollectionOptions {
	return &ebpf.CollectionOptions{Cache: p.cache}
}

// tracefsMounted says where tracefs is missing, so a tracepoint refusal names
// the cause instead of a missing events file.
func tracefsMounted() error {
	for _, dir := range tracefsDirs {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.TRACEFS_MAGIC {
			return nil
		}
	}
	return fmt.Errorf("tracefs is not mounted at %s (mount -t tracefs tracefs %s)", tracefsDirs[0], tracefsDirs[0])
}

// pmuDir lists the kernel's perf event sources; "kprobe" is there when the
// kernel can create kprobes through perf_event_open.
const pmuDir = "/sys/bus/event_source/devices"

func kprobePMU() bool {
	_, err := os.Stat(pmuDir + "/kprobe/type")
	return err == nil
}

// kernelError keeps what the kernel said and drops the library's wrapping
// (struct field and program names the caller already states). A verifier
// refusal keeps its summary.
func kernelError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return ve
	}
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		return pathErr // which kernel file was missing or refused
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("%w (%s)", errno, ebpf.ErrNotSupported)
		}
		return errno
	}
	return err
}

// OneLine flattens a multi-line error text to one trimmed line.
func OneLine(s string) string {
	const max = 300
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max-3] + "..."
	}
	return s
}
