//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Notifier tier names, as the agent and the config use them.
const (
	TierTracepoint = "tracepoint"
	TierFentry     = "fentry"
	TierKprobe     = "kprobe"
	TierBlock      = "block"
)

// Variants of the tracepoint tier: typed tp_btf programs, or the classic
// raw_syscalls tracepoints where tp_btf is missing.
const (
	VariantTPBTF       = "tp_btf"
	VariantRawSyscalls = "raw_syscalls"
)

// MaxTargets is how many targets one loaded tier watches at once (the BPF
// side returns path hits as a 64-bit mask of target ids).
const MaxTargets = 64

// maxMountpoint is the longest mountpoint the path judge can match: it
// examines the first PATH_BUF (256) bytes of a path, terminator included.
const maxMountpoint = 255

// DefaultRingBufferSize holds far more events than can be outstanding: one
// per target per dirty period, 24 bytes each with the ring's header.
const DefaultRingBufferSize = 64 << 10

// TierOptions selects and tunes a tier. Tier is required.
type TierOptions struct {
	Tier string
	// Variant of the tracepoint tier: VariantTPBTF, VariantRawSyscalls,
	// or empty for tp_btf with raw_syscalls as the fallback.
	Variant string
	// RingBufferSize in bytes: a power of two and a multiple of the page
	// size; DefaultRingBufferSize when zero.
	RingBufferSize int
	// NoFastPath turns off the early return hooks take while no target is
	// clean (for benchmarks that measure what it saves).
	NoFastPath bool
	Log        *slog.Logger // nil discards
}

// Attachment is one program of a tier and what became of it. Err is empty
// when it loaded and attached, else the kernel's refusal on one line.
type Attachment struct {
	Program  string `json:"program"`
	Section  string `json:"section"` // e.g. "tp_btf/sys_exit", "fexit/vfs_write"
	Required bool   `json:"required"`
	Err      string `json:"error,omitempty"`
	// ServedBy names the program that does this one's job when this one
	// is an alternative that did not attach (a tracepoint renamed between
	// kernel versions).
	ServedBy string `json:"served_by,omitempty"`
}

// TierError says why a tier does not work here: a required program did not
// load or attach (or the object itself could not be used).
type TierError struct {
	Tier        string
	Variant     string
	Attachments []Attachment
	Err         error // set when the failure was not one program's
}

func (e *TierError) Error() string {
	name := e.Tier
	if e.Variant != "" {
		name += " (" + e.Variant + ")"
	}
	if e.Err != nil {
		return fmt.Sprintf("%s tier: %v", name, e.Err)
	}
	return fmt.Sprintf("%s tier: %s", name, e.Summary())
}

// Summary lists the required programs that failed, grouped by the
// kernel's answer: "load: operation not permitted (fexit/vfs_write and 20
// more)".
func (e *TierError) Summary() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	var order []string
	by := map[string][]string{}
	for _, a := range e.Attachments {
		if !a.Required || a.Err == "" {
			continue
		}
		if _, ok := by[a.Err]; !ok {
			order = append(order, a.Err)
		}
		by[a.Err] = append(by[a.Err], a.Section)
	}
	var parts []string
	for _, msg := range order {
		secs := by[msg]
		who := secs[0]
		if len(secs) > 1 {
			who = fmt.Sprintf("%s and %d more", secs[0], len(secs)-1)
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", msg, who))
	}
	return strings.Join(parts, "; ")
}

func (e *TierError) Unwrap() error { return e.Err }

// Event is one clean-to-dirty edge of a target, or, with Hook == "lost",
// the sign that a target's lost counter moved.
type Event struct {
	Target uint32
	Hook   string        // human-readable, e.g. "sys_exit/pwrite64"
	Time   time.Duration // CLOCK_MONOTONIC when the hook ran
}

// ErrClosed is returned by ReadEvent once the tier is closed.
var ErrClosed = errors.New("notifier tier closed")

// Target is what the kernel side needs to recognise one filesystem.
type Target struct {
	// Devs are device numbers in the kernel's encoding (major<<20|minor):
	// the superblock's s_dev, or for the block tier a pool's vdev devices.
	Devs []uint32
	// Mountpoints where the filesystem is mounted (bind mounts included),
	// cleaned absolute paths: the tracepoint tier judges path-based calls
	// by them. Ignored by the other tiers.
	Mountpoints []string
}

// sharedState mirrors `struct shared` in notify.h; checkLayout compares
// the two at load time.
type sharedState struct {
	Dirty  [MaxTargets]uint32
	Lost   [MaxTargets]uint64
	Active uint64
	Clean  uint32
	Pad    uint32
}

// Tier is one notifier tier's programs, loaded and attached, with the maps
// they share. Its methods are safe for concurrent use.
type Tier struct {
	tier, variant string
	log           *slog.Logger
	attachments   []Attachment
	hooks         []string // enum hook value -> name

	coll   *ebpf.Collection
	links  []link.Link
	kret   map[string]link.Link // kprobe tier: function -> its kretprobe
	progs  []*ebpf.Program      // attached, kept open for their statistics
	reader *ringbuf.Reader
	// memMu guards the mapping against Close: Arm, Dirty and Lost hold it
	// shared, Close exclusively before unmapping.
	memMu   sync.RWMutex
	bss     []byte       // the .bss map, memory-mapped
	state   *sharedState // inside bss; nil once closed
	rootMsk *uint64      // root_mask, inside bss

	mu       sync.Mutex
	closed   bool
	free     []uint32 // ids, reused oldest first
	byID     map[uint32]Target
	pathRefs map[uint64]uint64 // mount_paths: hash -> mask
	nameRefs map[uint64]uint64 // mount_names: hash -> mask
	dirRefs  map[dirKey]uint64 // mount_ancestors: directory -> mask
	rec      ringbuf.Record
}

// objects are the compiled tiers; each function returns a fresh spec.
var objects = map[string]func() (*ebpf.CollectionSpec, error){
	TierTracepoint + "/" + VariantTPBTF:       loadTracepoint,
	TierTracepoint + "/" + VariantRawSyscalls: loadRawsyscalls,
	TierFentry: loadFentry,
	TierKprobe: loadKprobe,
	TierBlock:  loadBlock,
}

// LoadTier loads and attaches a tier's programs. It fails with a *TierError
// when the tier does not work on this kernel: a tier works only when every
// required program loads and attaches. Optional programs that fail are
// listed in Attachments (each a blind spot the safety net covers).
func LoadTier(opts TierOptions) (*Tier, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if runtime.GOARCH != "amd64" {
		return nil, &TierError{Tier: opts.Tier, Err: fmt.Errorf("needs amd64 (system call numbers and registers are x86_64's), this is %s", runtime.GOARCH)}
	}
	switch opts.Tier {
	case TierTracepoint:
		switch opts.Variant {
		case VariantTPBTF, VariantRawSyscalls:
			return loadTier(opts)
		case "":
			opts.Variant = VariantTPBTF
			t, err := loadTier(opts)
			if err == nil {
				return t, nil
			}
			opts.Log.Info("tp_btf variant refused; trying raw_syscalls", "err", err)
			opts.Variant = VariantRawSyscalls
			t, err2 := loadTier(opts)
			if err2 != nil {
				return nil, errors.Join(err, err2)
			}
			return t, nil
		default:
			return nil, fmt.Errorf("tracepoint tier variant %q: want %s or %s", opts.Variant, VariantTPBTF, VariantRawSyscalls)
		}
	case TierFentry, TierKprobe, TierBlock:
		if opts.Variant != "" {
			return nil, fmt.Errorf("tier %s has no variant %q", opts.Tier, opts.Variant)
		}
		return loadTier(opts)
	}
	return nil, fmt.Errorf("unknown eBPF tier %q: want %s, %s, %s or %s", opts.Tier, TierFentry, TierKprobe, TierTracepoint, TierBlock)
}

func loadTier(opts TierOptions) (_ *Tier, err error) {
	key := opts.Tier
	if opts.Variant != "" {
		key += "/" + opts.Variant
	}
	fail := func(err error) error { return &TierError{Tier: opts.Tier, Variant: opts.Variant, Err: err} }
	spec, err := objects[key]()
	if err != nil {
		return nil, fail(err)
	}
	kernel, err := kernelBTF.Kernel()
	if err != nil {
		return nil, fail(fmt.Errorf("kernel BTF: %w", err))
	}
	if err := checkLayout(spec); err != nil {
		return nil, fail(err)
	}
	hooks, err := hookNames(spec)
	if err != nil {
		return nil, fail(err)
	}
	if err := configure(spec, kernel, opts); err != nil {
		return nil, fail(err)
	}

	t := &Tier{
		tier: opts.Tier, variant: opts.Variant, log: opts.Log, hooks: hooks,
		byID: map[uint32]Target{}, pathRefs: map[uint64]uint64{}, nameRefs: map[uint64]uint64{}, dirRefs: map[dirKey]uint64{},
	}
	for id := range uint32(MaxTargets) {
		t.free = append(t.free, id)
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()

	// Maps first, then each program on its own against them, so that one
	// program's refusal names that program and leaves the others loaded.
	mapsOnly := spec.Copy()
	mapsOnly.Programs = nil
	mcoll, err := ebpf.NewCollectionWithOptions(mapsOnly, ebpf.CollectionOptions{Cache: kernelBTF})
	if err != nil {
		return nil, fail(fmt.Errorf("creating maps: %w", kernelError(err)))
	}
	t.coll = mcoll
	if err := t.mapState(spec); err != nil {
		return nil, fail(err)
	}

	plan := attachPlan(opts.Tier, spec, kernel)
	for _, p := range plan {
		a := Attachment{Program: p.name, Section: spec.Programs[p.name].SectionName, Required: p.required}
		if p.skip != "" {
			a.Err = p.skip
			t.attachments = append(t.attachments, a)
			continue
		}
		l, err := t.loadAttach(spec, p.name)
		if err != nil {
			a.Err = OneLine(err.Error())
		} else {
			t.links = append(t.links, l)
			if fn, ok := strings.CutPrefix(a.Section, "kretprobe/"); ok {
				if t.kret == nil {
					t.kret = map[string]link.Link{}
				}
				t.kret[fn] = l
			}
		}
		t.attachments = append(t.attachments, a)
	}
	resolveGroups(t.attachments, plan)
	for _, a := range t.attachments {
		if a.Required && a.Err != "" {
			return nil, &TierError{Tier: opts.Tier, Variant: opts.Variant, Attachments: t.attachments}
		}
		switch {
		case a.Err != "" && a.ServedBy != "":
			t.log.Debug("alternative hook not attached", "tier", opts.Tier, "section", a.Section, "served_by", a.ServedBy, "err", a.Err)
		case a.Err != "":
			t.log.Info("optional hook not attached: a blind spot the safety net covers", "tier", opts.Tier, "section", a.Section, "err", a.Err)
		}
	}

	t.reader, err = ringbuf.NewReader(t.coll.Maps["events"])
	if err != nil {
		return nil, fail(fmt.Errorf("ring buffer reader: %w", err))
	}
	return t, nil
}

// kernelBTF decodes the kernel's BTF once for every tier and probe.
var kernelBTF = btf.NewCache()

// configure sets the load-time constants from the kernel's own BTF and
// sizes the ring buffer.
func configure(spec *ebpf.CollectionSpec, kernel *btf.Spec, opts TierOptions) error {
	size := opts.RingBufferSize
	if size == 0 {
		size = DefaultRingBufferSize
	}
	if size < os.Getpagesize() || size&(size-1) != 0 {
		return fmt.Errorf("ring buffer size %d: want a power of two of at least %d", size, os.Getpagesize())
	}
	spec.Maps["events"].MaxEntries = uint32(size)

	set := func(name string, v bool) error {
		if vs, ok := spec.Variables[name]; ok {
			if err := vs.Set(v); err != nil {
				return fmt.Errorf("setting %s: %w", name, err)
			}
		}
		return nil
	}
	if err := set("fast_path", !opts.NoFastPath); err != nil {
		return err
	}
	// io_uring_complete(ctx, req, cqe) since 6.3; before, (ctx, req,
	// user_data, res, cflags, extra1, extra2). The typedef's prototype has
	// the tracepoint's own data pointer first.
	inCQE := true
	var tp *btf.Typedef
	if err := kernel.TypeByName("btf_trace_io_uring_complete", &tp); err == nil {
		if ptr, ok := tp.Type.(*btf.Pointer); ok {
			if fp, ok := ptr.Target.(*btf.FuncProto); ok {
				inCQE = len(fp.Params) == 4
			}
		}
	}
	if err := set("iouring_res_in_cqe", inCQE); err != nil {
		return err
	}
	var mkdir *btf.Func
	ptrRet := false
	if err := kernel.TypeByName("vfs_mkdir", &mkdir); err == nil {
		if fp, ok := mkdir.Type.(*btf.FuncProto); ok {
			_, ptrRet = fp.Return.(*btf.Pointer)
		}
	}
	return set("mkdir_returns_ptr", ptrRet)
}

// checkLayout compares `struct shared` in the object with sharedState.
func checkLayout(spec *ebpf.CollectionSpec) error {
	var st *btf.Struct
	if err := spec.Types.TypeByName("shared", &st); err != nil {
		return fmt.Errorf("object has no struct shared: %w", err)
	}
	var s sharedState
	want := map[string]uintptr{
		"dirty": unsafe.Offsetof(s.Dirty), "lost": unsafe.Offsetof(s.Lost),
		"active": unsafe.Offsetof(s.Active), "clean": unsafe.Offsetof(s.Clean),
	}
	if uintptr(st.Size) != unsafe.Sizeof(s) {
		return fmt.Errorf("struct shared is %d bytes, Go's mirror %d", st.Size, unsafe.Sizeof(s))
	}
	for _, m := range st.Members {
		if off, ok := want[m.Name]; ok && uintptr(m.Offset.Bytes()) != off {
			return fmt.Errorf("struct shared: %s at %d, Go's mirror at %d", m.Name, m.Offset.Bytes(), off)
		}
	}
	return nil
}

// hookNames reads enum hook from the object: hook_sys_exit__pwrite64 is
// "sys_exit/pwrite64".
func hookNames(spec *ebpf.CollectionSpec) ([]string, error) {
	var e *btf.Enum
	if err := spec.Types.TypeByName("hook", &e); err != nil {
		return nil, fmt.Errorf("object has no enum hook: %w", err)
	}
	names := make([]string, len(e.Values))
	for _, v := range e.Values {
		if v.Value >= uint64(len(names)) {
			return nil, fmt.Errorf("enum hook: %s = %d out of order", v.Name, v.Value)
		}
		names[v.Value] = HookName(v.Name)
	}
	return names, nil
}

// HookName turns an enum hook identifier into the name people see: the
// first "__" separates the hook point from what it saw.
func HookName(ident string) string {
	return strings.Replace(strings.TrimPrefix(ident, "hook_"), "__", "/", 1)
}

// mapState maps the .bss (dirty flags, lost counters, masks) into this
// process, where the flags are cleared and the counters read atomically.
func (t *Tier) mapState(spec *ebpf.CollectionSpec) error {
	m := t.coll.Maps[".bss"]
	if m == nil {
		return errors.New("object has no .bss")
	}
	size := int(m.ValueSize()) * int(m.MaxEntries())
	page := os.Getpagesize()
	size = (size + page - 1) / page * page
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping .bss (needs BPF_F_MMAPABLE, kernel 5.5+): %w", err)
	}
	t.bss = mem
	off := func(name string, size uintptr) (unsafe.Pointer, error) {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("object has no variable %s", name)
		}
		if uintptr(vs.Offset)+size > uintptr(len(mem)) || uintptr(vs.Size()) != size {
			return nil, fmt.Errorf("variable %s: %d bytes at %d, want %d within %d", name, vs.Size(), vs.Offset, size, len(mem))
		}
		return unsafe.Pointer(&mem[vs.Offset]), nil
	}
	p, err := off("state", unsafe.Sizeof(sharedState{}))
	if err != nil {
		return err
	}
	t.state = (*sharedState)(p)
	if _, ok := spec.Variables["root_mask"]; ok {
		p, err := off("root_mask", 8)
		if err != nil {
			return err
		}
		t.rootMsk = (*uint64)(p)
	}
	return nil
}

// loadAttach loads one program against the tier's maps and attaches it.
func (t *Tier) loadAttach(spec *ebpf.CollectionSpec, name string) (link.Link, error) {
	one := spec.Copy()
	for n := range one.Programs {
		if n != name {
			delete(one.Programs, n)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: t.coll.Maps, Cache: kernelBTF})
	if err != nil {
		return nil, fmt.Errorf("load: %w", kernelError(err))
	}
	prog := coll.Programs[name]
	delete(coll.Programs, name)
	coll.Close() // the maps are t.coll's
	l, err := attach(spec.Programs[name], prog)
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("attach: %w", kernelError(err))
	}
	t.progs = append(t.progs, prog)
	return l, nil
}

// attach attaches prog the way its section says.
func attach(ps *ebpf.ProgramSpec, prog *ebpf.Program) (link.Link, error) {
	kind, target, _ := strings.Cut(ps.SectionName, "/")
	switch kind {
	case "tp_btf":
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	case "fexit":
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFExit})
	case "raw_tracepoint":
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: target, Program: prog})
	case "tracepoint":
		if err := tracefsMounted(); err != nil {
			return nil, err
		}
		group, name, _ := strings.Cut(target, "/")
		return link.Tracepoint(group, name, prog, nil)
	case "kprobe":
		return link.Kprobe(target, prog, nil)
	case "kretprobe":
		// A kretprobe instance per call in flight; the kernel's default
		// (2 x CPUs) drops returns of calls blocked in a slow write, and
		// a dropped return is a lost change. maxactive needs tracefs.
		if l, err := link.Kretprobe(target, prog, &link.KprobeOptions{RetprobeMaxActive: kretprobeMaxActive}); err == nil {
			return l, nil
		}
		return link.Kretprobe(target, prog, nil)
	}
	return nil, fmt.Errorf("section %s: no attach method", ps.SectionName)
}

// kretprobeMaxActive bounds concurrent calls a kretprobe can follow.
const kretprobeMaxActive = 4096

// planned is one program of a tier's plan.
type planned struct {
	name     string
	required bool
	group    string // programs of a group need each other (kprobe + kretprobe)
	anyOf    string // at least one program of an anyOf set must attach
	skip     string // why it is not even tried
}

// Functions whose hooks the fentry and kprobe tiers can do without: each
// covers a path the others do not, and is recorded when missing.
var optionalFuncs = map[string]string{
	"vfs_iter_write":       "in-kernel writers (loop, nfsd, overlayfs)",
	"__kernel_write":       "kernel_write callers (ksmbd, coredumps)",
	"vfs_set_acl":          "POSIX ACLs (6.2+)",
	"vfs_remove_acl":       "POSIX ACLs (6.2+)",
	"vfs_fileattr_set":     "inode flags (chattr)",
	"vfs_clone_file_range": "reflinks (FICLONE)",
}

// attachPlan lists a tier's programs in a stable order with what each is
// required for on this kernel.
func attachPlan(tier string, spec *ebpf.CollectionSpec, kernel *btf.Spec) []planned {
	haveIOUring := false
	var td *btf.Typedef
	if err := kernel.TypeByName("btf_trace_io_uring_complete", &td); err == nil {
		haveIOUring = true
	}
	names := make([]string, 0, len(spec.Programs))
	for n := range spec.Programs {
		names = append(names, n)
	}
	slices.Sort(names)
	var plan []planned
	for _, n := range names {
		p := planned{name: n, required: true}
		switch {
		case n == "io_uring_submit_req" || n == "io_uring_submit_sqe":
			p.anyOf = "io_uring submission"
			p.required = haveIOUring
		case n == "io_uring_complete":
			p.required = haveIOUring
		case n == "io_uring_cqe_overflow":
			p.required = false
		}
		if strings.HasPrefix(n, "io_uring") && !haveIOUring {
			p.skip = "the kernel has no io_uring tracepoints (no io_uring)"
		}
		if tier == TierFentry || tier == TierKprobe {
			fn := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(n, "fexit_"), "kretprobe_"), "kprobe_")
			if fn != n {
				if _, opt := optionalFuncs[fn]; opt {
					p.required = false
				}
				p.group = fn
			}
		}
		plan = append(plan, p)
	}
	return plan
}

// resolveGroups applies the plan's groups to the attachments: a program
// whose partner failed counts as failed, and of an anyOf set only the
// failure of all counts.
func resolveGroups(as []Attachment, plan []planned) {
	groupErr := map[string]string{}
	anyOK := map[string]string{}
	for i, p := range plan {
		if p.group != "" && as[i].Err != "" {
			groupErr[p.group] = as[i].Section + ": " + as[i].Err
		}
		if p.anyOf != "" && as[i].Err == "" {
			anyOK[p.anyOf] = as[i].Section
		}
	}
	for i, p := range plan {
		if e, ok := groupErr[p.group]; ok && as[i].Err == "" {
			as[i].Err = "partner failed: " + e
		}
		if by := anyOK[p.anyOf]; p.anyOf != "" && by != "" && as[i].Err != "" {
			as[i].Required = false
			as[i].ServedBy = by
		}
	}
}

// Name is the tier's name; Variant its variant, if it has more than one.
func (t *Tier) Name() string    { return t.tier }
func (t *Tier) Variant() string { return t.variant }

// Attachments lists every program of the tier and what became of it.
func (t *Tier) Attachments() []Attachment { return slices.Clone(t.attachments) }

// AddTarget starts watching a filesystem and returns its id. The target
// starts clean: its first change gives an event.
func (t *Tier) AddTarget(tg Target) (uint32, error) {
	if len(tg.Devs) == 0 {
		return 0, errors.New("adding target: no device numbers")
	}
	if t.tier == TierTracepoint && len(tg.Mountpoints) == 0 {
		return 0, errors.New("adding target: the tracepoint tier needs its mountpoints")
	}
	for _, mp := range tg.Mountpoints {
		if !strings.HasPrefix(mp, "/") || (mp != "/" && strings.HasSuffix(mp, "/")) {
			return 0, fmt.Errorf("adding target: mountpoint %q: want a clean absolute path", mp)
		}
		if len(mp) > maxMountpoint {
			return 0, fmt.Errorf("adding target: mountpoint %s is %d bytes; paths are judged by their first %d", mp, len(mp), maxMountpoint)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, ErrClosed
	}
	if len(t.free) == 0 {
		return 0, fmt.Errorf("adding target: all %d target slots in use", MaxTargets)
	}
	targets := t.coll.Maps["targets"]
	for _, dev := range tg.Devs {
		var id uint32
		if err := targets.Lookup(dev, &id); err == nil {
			return 0, fmt.Errorf("adding target: device %d:%d is already watched (target %d)", dev>>20, dev&(1<<20-1), id)
		}
	}
	id := t.free[0]
	t.free = t.free[1:]
	bit := uint64(1) << id

	// Clean first, then visible: the maps last, so a hook that finds the
	// target finds it armed.
	atomic.StoreUint32(&t.state.Dirty[id], 0)
	atomic.AddUint32(&t.state.Clean, 1)
	atomic.OrUint64(&t.state.Active, bit)
	var err error
	for _, mp := range tg.Mountpoints {
		if mp == "/" {
			atomic.OrUint64(t.rootMsk, bit)
			continue
		}
		err = errors.Join(err, t.refMount("mount_paths", t.pathRefs, fnv64(mp), bit, true))
		err = errors.Join(err, t.refMount("mount_names", t.nameRefs, fnv64(mp[strings.LastIndexByte(mp, '/')+1:]), bit, true))
		for _, k := range ancestors(mp) {
			err = errors.Join(err, refMap(t.coll.Maps["mount_ancestors"], t.dirRefs, k, bit, true))
		}
	}
	for _, dev := range tg.Devs {
		err = errors.Join(err, targets.Update(dev, id, ebpf.UpdateNoExist))
	}
	t.byID[id] = tg
	if err != nil {
		t.removeLocked(id)
		return 0, fmt.Errorf("adding target: %w", err)
	}
	return id, nil
}

// RemoveTarget stops watching target id.
func (t *Tier) RemoveTarget(id uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if _, ok := t.byID[id]; !ok {
		return fmt.Errorf("removing target %d: not watched", id)
	}
	return t.removeLocked(id)
}

func (t *Tier) removeLocked(id uint32) error {
	tg := t.byID[id]
	delete(t.byID, id)
	bit := uint64(1) << id
	var err error
	targets := t.coll.Maps["targets"]
	for _, dev := range tg.Devs {
		var got uint32
		if targets.Lookup(dev, &got) == nil && got == id {
			err = errors.Join(err, targets.Delete(dev))
		}
	}
	for _, mp := range tg.Mountpoints {
		if mp == "/" {
			atomic.AndUint64(t.rootMsk, ^bit)
			continue
		}
		err = errors.Join(err, t.refMount("mount_paths", t.pathRefs, fnv64(mp), bit, false))
		err = errors.Join(err, t.refMount("mount_names", t.nameRefs, fnv64(mp[strings.LastIndexByte(mp, '/')+1:]), bit, false))
		for k, mask := range t.dirRefs {
			if mask&bit != 0 {
				err = errors.Join(err, refMap(t.coll.Maps["mount_ancestors"], t.dirRefs, k, bit, false))
			}
		}
	}
	atomic.AndUint64(&t.state.Active, ^bit)
	// Leave the flag dirty so that nothing fires for the slot; a hook that
	// had already taken the edge sends an event the reader drops.
	if atomic.SwapUint32(&t.state.Dirty[id], 1) == 0 {
		atomic.AddUint32(&t.state.Clean, ^uint32(0))
	}
	t.free = append(t.free, id)
	if err != nil {
		return fmt.Errorf("removing target %d: %w", id, err)
	}
	return nil
}

// refMount adds or removes bit in the mask stored under hash h.
func (t *Tier) refMount(mapName string, refs map[uint64]uint64, h, bit uint64, add bool) error {
	return refMap(t.coll.Maps[mapName], refs, h, bit, add)
}

// refMap adds or removes bit in the mask m (and its mirror refs) holds
// under key k, deleting the key when no bit is left.
func refMap[K comparable](m *ebpf.Map, refs map[K]uint64, k K, bit uint64, add bool) error {
	if m == nil {
		return nil // this tier does not judge paths
	}
	mask := refs[k]
	if add {
		mask |= bit
	} else {
		mask &^= bit
	}
	if mask == 0 {
		delete(refs, k)
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		return nil
	}
	refs[k] = mask
	return m.Put(k, mask)
}

// dirKey mirrors struct dirkey in paths.h.
type dirKey struct {
	Ino uint64
	Dev uint32
	Pad uint32
}

// ancestors are the directories above mountpoint mp, by device (kernel
// encoding) and inode. One that cannot be examined is left out: it only
// narrows a rule that matches on names alone otherwise.
func ancestors(mp string) []dirKey {
	var out []dirKey
	for dir := filepath.Dir(mp); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if unix.Stat(dir, &st) == nil {
			out = append(out, dirKey{Ino: st.Ino, Dev: unix.Major(st.Dev)<<20 | unix.Minor(st.Dev)})
		}
		if dir == "/" {
			return out
		}
	}
}

// fnv64 is FNV-1a, as paths.h hashes paths.
func fnv64(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 0x100000001b3
	}
	return h
}

// Arm clears target id's dirty flag, so that its next change gives an
// event, and reports whether it was set.
func (t *Tier) Arm(id uint32) bool {
	t.memMu.RLock()
	defer t.memMu.RUnlock()
	if id >= MaxTargets || t.state == nil {
		return false
	}
	if atomic.SwapUint32(&t.state.Dirty[id], 0) == 1 {
		atomic.AddUint32(&t.state.Clean, 1)
		return true
	}
	return false
}

// Dirty reports whether target id's flag is set.
func (t *Tier) Dirty(id uint32) bool {
	t.memMu.RLock()
	defer t.memMu.RUnlock()
	return id < MaxTargets && t.state != nil && atomic.LoadUint32(&t.state.Dirty[id]) != 0
}

// Lost is target id's lost counter: how many of its clean-to-dirty edges
// found the ring buffer full. It only grows; a change means "dirty".
func (t *Tier) Lost(id uint32) uint64 {
	t.memMu.RLock()
	defer t.memMu.RUnlock()
	if id >= MaxTargets || t.state == nil {
		return 0
	}
	return atomic.LoadUint64(&t.state.Lost[id])
}

// Missed counts the runs of this tier's programs the kernel skipped, each
// of which may be a lost change, so a count that moved means "every target
// may be dirty":
//   - recursion misses (5.12+): a program was due while another BPF program
//     ran on that CPU (an fexit hook hit from an interrupt during another);
//   - the kprobe tier's kretprobe misses: more calls in flight than the
//     kernel keeps instances for. From the link's own count where the
//     kernel has one (6.7+), else from tracefs's kprobe_profile, which counts
//     by function name and may include other tools' probes of the same
//     function (a false positive at worst).
func (t *Tier) Missed() uint64 {
	var total uint64
	for _, p := range t.progs {
		if st, err := p.Stats(); err == nil {
			total += st.RecursionMisses
		}
	}
	if len(t.kret) == 0 {
		return total
	}
	profiled := map[string]bool{}
	for fn, l := range t.kret {
		info, err := l.Info()
		if err != nil {
			profiled[fn] = true // tracefs-made: counted below
			continue
		}
		if pe := info.PerfEvent(); pe != nil {
			if kp := pe.Kprobe(); kp != nil {
				total += kp.Missed
				if kp.Missed == 0 {
					profiled[fn] = true // may be a kernel without the count
				}
				continue
			}
		}
		profiled[fn] = true
	}
	for _, dir := range tracefsDirs {
		b, err := os.ReadFile(dir + "/kprobe_profile")
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) != 3 || !profiled[f[0]] {
				continue
			}
			if n, err := strconv.ParseUint(f[2], 10, 64); err == nil {
				total += n
			}
		}
		break
	}
	return total
}

// RunStats sums the run counts and run time of the tier's programs. The
// kernel keeps them only while BPF statistics are on (ebpf.EnableStats,
// or the sysctl kernel.bpf_stats_enabled): benchmarks use them.
func (t *Tier) RunStats() (runs uint64, runtime time.Duration) {
	for _, p := range t.progs {
		if st, err := p.Stats(); err == nil {
			runs += st.RunCount
			runtime += st.Runtime
		}
	}
	return runs, runtime
}

// SetDeadline makes a blocked or later ReadEvent return an error wrapping
// os.ErrDeadlineExceeded at d; the zero time waits forever.
func (t *Tier) SetDeadline(d time.Time) { t.reader.SetDeadline(d) }

// ReadEvent blocks until the next event and returns it; after Close it
// returns ErrClosed. Call it from one goroutine at a time.
func (t *Tier) ReadEvent() (Event, error) {
	for {
		err := t.reader.ReadInto(&t.rec)
		if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return Event{}, ErrClosed
		}
		if err != nil {
			return Event{}, fmt.Errorf("reading ring buffer: %w", err)
		}
		b := t.rec.RawSample
		if len(b) < 16 {
			t.log.Warn("short ring buffer record", "bytes", len(b))
			continue
		}
		h := binary.LittleEndian.Uint32(b[4:8])
		name := fmt.Sprintf("hook %d", h)
		if int(h) < len(t.hooks) {
			name = t.hooks[h]
		}
		return Event{
			Target: binary.LittleEndian.Uint32(b[0:4]),
			Hook:   name,
			Time:   time.Duration(binary.LittleEndian.Uint64(b[8:16])),
		}, nil
	}
}

// Close detaches every program, frees the maps and unblocks ReadEvent.
// It is safe to call more than once.
func (t *Tier) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	for _, p := range t.progs {
		errs = append(errs, p.Close())
	}
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	t.memMu.Lock()
	if t.bss != nil {
		errs = append(errs, unix.Munmap(t.bss))
		t.bss, t.state, t.rootMsk = nil, nil, nil
	}
	t.memMu.Unlock()
	if t.coll != nil {
		t.coll.Close()
	}
	return errors.Join(errs...)
}
