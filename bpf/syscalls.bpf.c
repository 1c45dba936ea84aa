//go:build ignore

/* syscalls.bpf.c: the `tracepoint` tier.
 *
 * Every system call that can change a filesystem is judged at its exit, once
 * it succeeded: fd-based calls by the superblock of the file at the fd,
 * path-based calls by their path (judge_path), opens that create or truncate
 * by the fd they return. io_uring requests are judged at submission and
 * completion, AIO at io_submit and io_getevents, and stores through shared
 * mappings when they dirty a page (writeback_dirty_folio).
 *
 * Built twice (gen.go):
 *   - tracepoint (FLK_DIRECT): tp_btf programs; the arguments are read from
 *     the task's registers at sys_exit;
 *   - rawsyscalls: the fallback where tp_btf is missing: the classic
 *     raw_syscalls tracepoints (sys_enter keeps the arguments per task,
 *     sys_exit judges) and untyped raw tracepoints for the rest.
 *
 * x86_64 only: syscall numbers and argument registers are the x86_64 ABI's.
 * 32-bit (ia32) callers are not judged (blind spot; docs/notify.md).
 */
#include "notify.h"
#include "iouring.h"

enum {
	NR_write = 1,
	NR_mmap = 9,
	NR_ioctl = 16,
	NR_pwrite64 = 18,
	NR_writev = 20,
	NR_sendfile = 40,
	NR_bind = 49,
	NR_open = 2,
	NR_truncate = 76,
	NR_ftruncate = 77,
	NR_rename = 82,
	NR_mkdir = 83,
	NR_rmdir = 84,
	NR_creat = 85,
	NR_link = 86,
	NR_unlink = 87,
	NR_symlink = 88,
	NR_chmod = 90,
	NR_fchmod = 91,
	NR_chown = 92,
	NR_fchown = 93,
	NR_lchown = 94,
	NR_utime = 132,
	NR_mknod = 133,
	NR_setxattr = 188,
	NR_lsetxattr = 189,
	NR_fsetxattr = 190,
	NR_removexattr = 197,
	NR_lremovexattr = 198,
	NR_fremovexattr = 199,
	NR_io_getevents = 208,
	NR_io_submit = 209,
	NR_utimes = 235,
	NR_openat = 257,
	NR_mkdirat = 258,
	NR_mknodat = 259,
	NR_fchownat = 260,
	NR_futimesat = 261,
	NR_unlinkat = 263,
	NR_renameat = 264,
	NR_linkat = 265,
	NR_symlinkat = 266,
	NR_fchmodat = 268,
	NR_splice = 275,
	NR_utimensat = 280,
	NR_fallocate = 285,
	NR_pwritev = 296,
	NR_open_by_handle_at = 304,
	NR_renameat2 = 316,
	NR_copy_file_range = 326,
	NR_pwritev2 = 328,
	NR_io_pgetevents = 333,
	NR_openat2 = 437,
	NR_fchmodat2 = 452,
	NR_setxattrat = 463,
	NR_removexattrat = 466,
};

/* ioctls that change a file: reflinks, inode flags, fsxattr. */
#define FICLONE 0x40049409U
#define FICLONERANGE 0x4020940dU
#define FS_IOC_SETFLAGS 0x40086602U
#define FS_IOC32_SETFLAGS 0x40046602U
#define FS_IOC_FSSETXATTR 0x401c5820U

#define PROT_WRITE 0x2
#define MAP_TYPE 0x0f
#define MAP_SHARED 0x01
#define MAP_SHARED_VALIDATE 0x03
#define AF_UNIX 1

#define IOCB_CMD_PWRITE 1
#define IOCB_CMD_PWRITEV 8

struct sc {
	long nr;
	long ret;
	unsigned long a[6];
};

/* The arguments of an fd-based call whose changed file is at arg i. */
static __always_inline void by_fd(struct task_struct *t, long fd, __u32 hook)
{
	if (fast_skip())
		return;
	__u32 dev = fd_dev(t, fd);
	if (dev)
		mark_dev(dev, hook);
}

static __always_inline void by_path(const void *path, long dfd, __u32 hook)
{
	if (!state.active)
		return;
	__u64 mask = judge_path((__u64)path, dfd, true);
	if (mask)
		mark_mask(mask, hook);
}

static __always_inline void by_paths(const void *p1, long dfd1, const void *p2, long dfd2, __u32 hook)
{
	if (!state.active)
		return;
	__u64 mask = judge_path((__u64)p1, dfd1, true) | judge_path((__u64)p2, dfd2, true);
	if (mask)
		mark_mask(mask, hook);
}

/* aio_iocb_dev reads a user iocb and returns the device of its file when
 * it is a write, else 0. */
static __always_inline __u32 aio_iocb_dev(struct task_struct *t, const void *iocb)
{
	__u16 op = 0;
	__u32 fd = 0;
	/* struct iocb: aio_lio_opcode at 16, aio_fildes at 20 (uapi, fixed) */
	if (bpf_probe_read_user(&op, sizeof(op), iocb + 16) < 0)
		return 0;
	if (op != IOCB_CMD_PWRITE && op != IOCB_CMD_PWRITEV)
		return 0;
	if (bpf_probe_read_user(&fd, sizeof(fd), iocb + 20) < 0)
		return 0;
	return fd_dev(t, fd);
}

struct aio_scan {
	__u64 base; /* user address of the iocb pointers or of the events */
	__u32 hook;
};

/* io_submit(ctx, nr, iocbpp) returned how many it submitted. A buffered
 * write is done by then; a direct one may finish later, when io_getevents
 * reaps it (below). */
static long submit_one(__u32 i, struct aio_scan *as)
{
	const void *iocb = 0;
	if (bpf_probe_read_user(&iocb, sizeof(iocb), (const void *)(as->base + i * 8)) < 0)
		return 1;
	__u32 dev = aio_iocb_dev(current_task(), iocb);
	if (dev)
		mark_dev(dev, as->hook);
	return 0;
}

/* io_getevents(ctx, min, nr, events, timeout) returned n events; each
 * struct io_event is {data, obj (the user iocb), res, res2}. */
static long reaped_one(__u32 i, struct aio_scan *as)
{
	const void *ev = (const void *)(as->base + i * 32);
	const void *iocb = 0;
	long res = 0;
	if (bpf_probe_read_user(&iocb, sizeof(iocb), ev + 8) < 0 ||
	    bpf_probe_read_user(&res, sizeof(res), ev + 16) < 0)
		return 1;
	if (res <= 0)
		return 0;
	__u32 dev = aio_iocb_dev(current_task(), iocb);
	if (dev)
		mark_dev(dev, as->hook);
	return 0;
}

__noinline int judge_aio(__u64 base, long n, __u32 hook, bool reaped)
{
	if (n > MAX_IOCBS) {
		mark_all(hook);
		return 0;
	}
	struct aio_scan as = {.base = base, .hook = hook};
	if (reaped)
		bpf_loop(n, reaped_one, &as, 0);
	else
		bpf_loop(n, submit_one, &as, 0);
	return 0;
}

/* judge_open: an open that may create or truncate is judged by the file it
 * returned. */
static __always_inline void judge_open(struct task_struct *t, __u64 flags, long fd, __u32 hook)
{
	if (flags & OPEN_CHANGES)
		by_fd(t, fd, hook);
}

/* A unix socket bound to a path creates a node in the filesystem. */
static __always_inline void judge_bind(const void *addr, unsigned long len)
{
	__u16 family = 0;
	if (len <= 2 || bpf_probe_read_user(&family, sizeof(family), addr) < 0 || family != AF_UNIX)
		return;
	char first = 0;
	if (bpf_probe_read_user(&first, 1, addr + 2) < 0 || first == 0)
		return; /* abstract socket: no file */
	by_path(addr + 2, AT_FDCWD, hook_sys_exit__bind);
}

static __always_inline bool compat_task(struct task_struct *t)
{
#ifdef FLK_DIRECT
	return t->thread_info.status & TS_COMPAT;
#else
	return BPF_CORE_READ(t, thread_info.status) & TS_COMPAT;
#endif
}

/* judge is the whole tier's syscall table. ret >= 0 was checked. */
static __always_inline void judge(struct sc *c)
{
	unsigned long *a = c->a;
	struct task_struct *t = current_task();
	switch (c->nr) {
	/* data */
	case NR_write:
		by_fd(t, a[0], hook_sys_exit__write);
		return;
	case NR_pwrite64:
		by_fd(t, a[0], hook_sys_exit__pwrite64);
		return;
	case NR_writev:
		by_fd(t, a[0], hook_sys_exit__writev);
		return;
	case NR_pwritev:
		by_fd(t, a[0], hook_sys_exit__pwritev);
		return;
	case NR_pwritev2:
		by_fd(t, a[0], hook_sys_exit__pwritev2);
		return;
	case NR_sendfile: /* (out_fd, in_fd, ...) */
		by_fd(t, a[0], hook_sys_exit__sendfile);
		return;
	case NR_splice: /* (fd_in, off_in, fd_out, ...) */
		by_fd(t, a[2], hook_sys_exit__splice);
		return;
	case NR_copy_file_range: /* (fd_in, off_in, fd_out, ...) */
		by_fd(t, a[2], hook_sys_exit__copy_file_range);
		return;
	case NR_io_submit:
		if (c->ret > 0 && !fast_skip())
			judge_aio(a[2], c->ret, hook_sys_exit__io_submit, false);
		return;
	case NR_io_getevents:
		if (c->ret > 0 && !fast_skip())
			judge_aio(a[3], c->ret, hook_sys_exit__io_getevents, true);
		return;
	case NR_io_pgetevents:
		if (c->ret > 0 && !fast_skip())
			judge_aio(a[3], c->ret, hook_sys_exit__io_pgetevents, true);
		return;
	case NR_mmap: /* (addr, len, prot, flags, fd, off): a writable shared mapping */
		if ((a[2] & PROT_WRITE) && ((a[3] & MAP_TYPE) == MAP_SHARED || (a[3] & MAP_TYPE) == MAP_SHARED_VALIDATE))
			by_fd(t, a[4], hook_sys_exit__mmap);
		return;
	case NR_ioctl:
		switch ((__u32)a[1]) {
		case FICLONE:
		case FICLONERANGE:
		case FS_IOC_SETFLAGS:
		case FS_IOC32_SETFLAGS:
		case FS_IOC_FSSETXATTR:
			by_fd(t, a[0], hook_sys_exit__ioctl);
		}
		return;

	/* size and attributes by fd */
	case NR_ftruncate:
		by_fd(t, a[0], hook_sys_exit__ftruncate);
		return;
	case NR_fallocate:
		by_fd(t, a[0], hook_sys_exit__fallocate);
		return;
	case NR_fchmod:
		by_fd(t, a[0], hook_sys_exit__fchmod);
		return;
	case NR_fchown:
		by_fd(t, a[0], hook_sys_exit__fchown);
		return;
	case NR_fsetxattr:
		by_fd(t, a[0], hook_sys_exit__fsetxattr);
		return;
	case NR_fremovexattr:
		by_fd(t, a[0], hook_sys_exit__fremovexattr);
		return;

	/* opens that create or truncate: by the returned fd */
	case NR_open: /* (path, flags, mode) */
		judge_open(t, a[1], c->ret, hook_sys_exit__open);
		return;
	case NR_openat: /* (dfd, path, flags, mode) */
		judge_open(t, a[2], c->ret, hook_sys_exit__openat);
		return;
	case NR_creat:
		by_fd(t, c->ret, hook_sys_exit__creat);
		return;
	case NR_open_by_handle_at: /* (mount_fd, handle, flags) */
		judge_open(t, a[2], c->ret, hook_sys_exit__open_by_handle_at);
		return;
	case NR_openat2: { /* (dfd, path, struct open_how *how, size) */
		__u64 flags = 0;
		if (bpf_probe_read_user(&flags, sizeof(flags), (const void *)a[2]) < 0)
			flags = OPEN_CHANGES; /* unreadable: assume the worst */
		judge_open(t, flags, c->ret, hook_sys_exit__openat2);
		return;
	}

	/* by path */
	case NR_truncate:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__truncate);
		return;
	case NR_chmod:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__chmod);
		return;
	case NR_fchmodat:
		by_path((const void *)a[1], a[0], hook_sys_exit__fchmodat);
		return;
	case NR_fchmodat2:
		by_path((const void *)a[1], a[0], hook_sys_exit__fchmodat2);
		return;
	case NR_chown:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__chown);
		return;
	case NR_lchown:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__lchown);
		return;
	case NR_fchownat:
		by_path((const void *)a[1], a[0], hook_sys_exit__fchownat);
		return;
	case NR_utime:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__utime);
		return;
	case NR_utimes:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__utimes);
		return;
	case NR_futimesat:
		by_path((const void *)a[1], a[0], hook_sys_exit__futimesat);
		return;
	case NR_utimensat: /* a NULL path means the file at dfd */
		by_path((const void *)a[1], a[0], hook_sys_exit__utimensat);
		return;
	case NR_setxattr:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__setxattr);
		return;
	case NR_lsetxattr:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__lsetxattr);
		return;
	case NR_removexattr:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__removexattr);
		return;
	case NR_lremovexattr:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__lremovexattr);
		return;
	case NR_setxattrat:
		by_path((const void *)a[1], a[0], hook_sys_exit__setxattrat);
		return;
	case NR_removexattrat:
		by_path((const void *)a[1], a[0], hook_sys_exit__removexattrat);
		return;
	case NR_unlink:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__unlink);
		return;
	case NR_unlinkat:
		by_path((const void *)a[1], a[0], hook_sys_exit__unlinkat);
		return;
	case NR_rmdir:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__rmdir);
		return;
	case NR_mkdir:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__mkdir);
		return;
	case NR_mkdirat:
		by_path((const void *)a[1], a[0], hook_sys_exit__mkdirat);
		return;
	case NR_mknod:
		by_path((const void *)a[0], AT_FDCWD, hook_sys_exit__mknod);
		return;
	case NR_mknodat:
		by_path((const void *)a[1], a[0], hook_sys_exit__mknodat);
		return;
	case NR_symlink: /* (target text, linkpath) */
		by_path((const void *)a[1], AT_FDCWD, hook_sys_exit__symlink);
		return;
	case NR_symlinkat: /* (target text, newdfd, linkpath) */
		by_path((const void *)a[2], a[1], hook_sys_exit__symlinkat);
		return;
	case NR_rename:
		by_paths((const void *)a[0], AT_FDCWD, (const void *)a[1], AT_FDCWD, hook_sys_exit__rename);
		return;
	case NR_renameat:
		by_paths((const void *)a[1], a[0], (const void *)a[3], a[2], hook_sys_exit__renameat);
		return;
	case NR_renameat2:
		by_paths((const void *)a[1], a[0], (const void *)a[3], a[2], hook_sys_exit__renameat2);
		return;
	case NR_link:
		by_paths((const void *)a[0], AT_FDCWD, (const void *)a[1], AT_FDCWD, hook_sys_exit__link);
		return;
	case NR_linkat:
		by_paths((const void *)a[1], a[0], (const void *)a[3], a[2], hook_sys_exit__linkat);
		return;
	case NR_bind:
		judge_bind((const void *)a[1], a[2]);
		return;
	}
}

/* wanted: the calls judge() knows; every other call returns at once. */
static __always_inline bool wanted(long nr)
{
	switch (nr) {
	case NR_write: case NR_pwrite64: case NR_writev: case NR_pwritev: case NR_pwritev2:
	case NR_sendfile: case NR_splice: case NR_copy_file_range: case NR_io_submit:
	case NR_io_getevents: case NR_io_pgetevents: case NR_mmap: case NR_ioctl:
	case NR_ftruncate: case NR_fallocate: case NR_fchmod: case NR_fchown: case NR_fsetxattr:
	case NR_fremovexattr: case NR_open: case NR_openat: case NR_creat: case NR_open_by_handle_at:
	case NR_openat2: case NR_truncate: case NR_chmod: case NR_fchmodat: case NR_fchmodat2:
	case NR_chown: case NR_lchown: case NR_fchownat: case NR_utime: case NR_utimes:
	case NR_futimesat: case NR_utimensat: case NR_setxattr: case NR_lsetxattr:
	case NR_removexattr: case NR_lremovexattr: case NR_setxattrat: case NR_removexattrat:
	case NR_unlink: case NR_unlinkat: case NR_rmdir: case NR_mkdir: case NR_mkdirat:
	case NR_mknod: case NR_mknodat: case NR_symlink: case NR_symlinkat: case NR_rename:
	case NR_renameat: case NR_renameat2: case NR_link: case NR_linkat: case NR_bind:
		return true;
	}
	return false;
}

#ifdef FLK_DIRECT

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	/* The call is done: with no target clean there is nothing to mark. */
	if (ret < 0 || fast_skip() || !state.active || !wanted(nr))
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	if (compat_task(t))
		return 0;
	struct sc c = {
		.nr = nr,
		.ret = ret,
		.a = {regs->di, regs->si, regs->dx, regs->r10, regs->r8, regs->r9},
	};
	judge(&c);
	return 0;
}

SEC("tp_btf/writeback_dirty_folio")
int BPF_PROG(writeback_dirty_folio, struct folio *folio, struct address_space *mapping)
{
	if (fast_skip() || !mapping)
		return 0;
	mark_dev(mapping->host->i_sb->s_dev, hook_writeback_dirty_folio);
	return 0;
}

#else /* classic tracepoints: the fallback */

/* Arguments of the calls judge() knows, from sys_enter to sys_exit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct sc);
} inflight SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	if (!state.active)
		return 0;
	long nr = ctx->id;
	if (!wanted(nr) || compat_task(current_task()))
		return 0;
	/* constant offsets: the verifier refuses a variable one into ctx */
	struct sc c = {
		.nr = nr,
		.a = {ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], ctx->args[4], ctx->args[5]},
	};
	__u64 key = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&inflight, &key, &c, BPF_ANY);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	if (!wanted(ctx->id))
		return 0;
	__u64 key = bpf_get_current_pid_tgid();
	struct sc *p = bpf_map_lookup_elem(&inflight, &key);
	if (!p)
		return 0;
	struct sc c = *p;
	bpf_map_delete_elem(&inflight, &key);
	c.ret = ctx->ret;
	if (c.ret < 0 || c.nr != ctx->id || fast_skip())
		return 0;
	judge(&c);
	return 0;
}

SEC("raw_tracepoint/writeback_dirty_folio")
int writeback_dirty_folio(__u64 *ctx)
{
	struct address_space *mapping = (void *)ctx[1];
	if (fast_skip() || !mapping)
		return 0;
	mark_dev(BPF_CORE_READ(mapping, host, i_sb, s_dev), hook_writeback_dirty_folio);
	return 0;
}

#endif
