/* iouring.h: the io_uring programs, shared by every tier's object (see
 * iouring_submit and iouring_complete below). Typed (tp_btf) with
 * FLK_DIRECT, untyped raw tracepoints otherwise; both read the request
 * through BPF_CORE_READ, since the tracepoints pass it as a void *.
 */
#ifndef FLOCKER_IOURING_H
#define FLOCKER_IOURING_H

#include "paths.h"

/* io_uring requests:
 *
 * Writes and other fd-based requests are judged at completion by the
 * request's file, still held then. Path-based requests consume their
 * struct filename while they run, so their paths are judged at submission
 * (the request is prepared by then) and remembered until completion.
 */
enum {
	IORING_OP_WRITEV = 2,
	IORING_OP_WRITE_FIXED = 5,
	IORING_OP_FALLOCATE = 17,
	IORING_OP_OPENAT = 18,
	IORING_OP_WRITE = 23,
	IORING_OP_OPENAT2 = 28,
	IORING_OP_SPLICE = 30,
	IORING_OP_RENAMEAT = 35,
	IORING_OP_UNLINKAT = 36,
	IORING_OP_MKDIRAT = 37,
	IORING_OP_SYMLINKAT = 38,
	IORING_OP_LINKAT = 39,
	IORING_OP_FSETXATTR = 41,
	IORING_OP_SETXATTR = 42,
	IORING_OP_FTRUNCATE = 55,
	IORING_OP_WRITEV_FIXED = 61,
};

struct pending {
	__u64 mask;
	__u32 hook;
	__u32 pad;
};

/* Requests whose paths hit a target, until they complete. LRU: a request
 * that never completes (ring torn down) ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* struct io_kiocb * */
	__type(value, struct pending);
} iouring_pending SEC(".maps");

static __always_inline void iouring_submit(void *req)
{
	if (!state.active)
		return;
	__u8 op = BPF_CORE_READ((struct io_kiocb *)req, opcode);
	__u64 mask = 0;
	__u32 hook = 0;
	switch (op) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2: {
		struct io_open *o = req;
		if (!(BPF_CORE_READ(o, how.flags) & OPEN_CHANGES))
			return;
		mask = judge_path((__u64)BPF_CORE_READ(o, filename, name), BPF_CORE_READ(o, dfd), false);
		hook = op == IORING_OP_OPENAT ? hook_io_uring_complete__OPENAT : hook_io_uring_complete__OPENAT2;
		break;
	}
	case IORING_OP_RENAMEAT: {
		struct io_rename *r = req;
		mask = judge_path((__u64)BPF_CORE_READ(r, oldpath, name), BPF_CORE_READ(r, old_dfd), false);
		mask |= judge_path((__u64)BPF_CORE_READ(r, newpath, name), BPF_CORE_READ(r, new_dfd), false);
		hook = hook_io_uring_complete__RENAMEAT;
		break;
	}
	case IORING_OP_UNLINKAT: {
		struct io_unlink *u = req;
		mask = judge_path((__u64)BPF_CORE_READ(u, filename, name), BPF_CORE_READ(u, dfd), false);
		hook = hook_io_uring_complete__UNLINKAT;
		break;
	}
	case IORING_OP_MKDIRAT: {
		struct io_mkdir *m = req;
		mask = judge_path((__u64)BPF_CORE_READ(m, filename, name), BPF_CORE_READ(m, dfd), false);
		hook = hook_io_uring_complete__MKDIRAT;
		break;
	}
	case IORING_OP_SYMLINKAT: {
		struct io_link *l = req;
		mask = judge_path((__u64)BPF_CORE_READ(l, newpath, name), BPF_CORE_READ(l, new_dfd), false);
		hook = hook_io_uring_complete__SYMLINKAT;
		break;
	}
	case IORING_OP_LINKAT: {
		struct io_link *l = req;
		mask = judge_path((__u64)BPF_CORE_READ(l, oldpath, name), BPF_CORE_READ(l, old_dfd), false);
		mask |= judge_path((__u64)BPF_CORE_READ(l, newpath, name), BPF_CORE_READ(l, new_dfd), false);
		hook = hook_io_uring_complete__LINKAT;
		break;
	}
	case IORING_OP_SETXATTR: {
		/* io_uring resolves it from the cwd */
		struct io_xattr *x = req;
		mask = judge_path((__u64)BPF_CORE_READ(x, filename, name), AT_FDCWD, false);
		hook = hook_io_uring_complete__SETXATTR;
		break;
	}
	default:
		return;
	}
	if (!mask)
		return;
	__u64 key = (__u64)req;
	struct pending p = {.mask = mask, .hook = hook};
	bpf_map_update_elem(&iouring_pending, &key, &p, BPF_ANY);
}

static __always_inline void iouring_complete(void *req, long res)
{
	__u64 key = (__u64)req;
	struct pending *p = bpf_map_lookup_elem(&iouring_pending, &key);
	if (p) {
		__u64 mask = p->mask;
		__u32 hook = p->hook;
		bpf_map_delete_elem(&iouring_pending, &key);
		if (res >= 0)
			mark_mask(mask, hook);
		return;
	}
	if (res < 0 || fast_skip())
		return;
	__u8 op = BPF_CORE_READ((struct io_kiocb *)req, opcode);
	__u32 hook;
	switch (op) {
	case IORING_OP_WRITEV:
		hook = hook_io_uring_complete__WRITEV;
		break;
	case IORING_OP_WRITE_FIXED:
		hook = hook_io_uring_complete__WRITE_FIXED;
		break;
	case IORING_OP_WRITE:
		hook = hook_io_uring_complete__WRITE;
		break;
	case IORING_OP_WRITEV_FIXED:
		hook = hook_io_uring_complete__WRITEV_FIXED;
		break;
	case IORING_OP_FALLOCATE:
		hook = hook_io_uring_complete__FALLOCATE;
		break;
	case IORING_OP_FTRUNCATE:
		hook = hook_io_uring_complete__FTRUNCATE;
		break;
	case IORING_OP_FSETXATTR:
		hook = hook_io_uring_complete__FSETXATTR;
		break;
	case IORING_OP_SPLICE: /* the request's file is the output */
		hook = hook_io_uring_complete__SPLICE;
		break;
	default:
		return;
	}
	struct file *f = BPF_CORE_READ((struct io_kiocb *)req, file);
	if (f)
		mark_dev(file_dev_core(f), hook);
}

#ifdef FLK_DIRECT
#define IOURING_SEC(name) SEC("tp_btf/" name)
#else
#define IOURING_SEC(name) SEC("raw_tracepoint/" name)
#endif

/* Submission, after the request was prepared: io_uring_submit_req(req)
 * since 6.5, io_uring_submit_sqe(req, ...) before. The loader attaches
 * whichever the kernel has. */
IOURING_SEC("io_uring_submit_req")
int io_uring_submit_req(__u64 *ctx)
{
	iouring_submit((void *)ctx[0]);
	return 0;
}

IOURING_SEC("io_uring_submit_sqe")
int io_uring_submit_sqe(__u64 *ctx)
{
	iouring_submit((void *)ctx[0]);
	return 0;
}

/* Completion: (ctx, req, cqe) since 6.3, (ctx, req, user_data, res, ...)
 * before; the loader sets iouring_res_in_cqe from the kernel's BTF. */
IOURING_SEC("io_uring_complete")
int io_uring_complete(__u64 *ctx)
{
	if (!state.active)
		return 0;
	long res;
	if (iouring_res_in_cqe)
		res = BPF_CORE_READ((struct io_uring_cqe *)ctx[2], res);
	else
		res = (int)ctx[3];
	iouring_complete((void *)ctx[1], res);
	return 0;
}

/* (ctx, user_data, res, cflags, ocqe): a completion that did not fit the
 * ring. The request is not named, so every target is marked. */
IOURING_SEC("io_uring_cqe_overflow")
int io_uring_cqe_overflow(__u64 *ctx)
{
	if ((int)ctx[2] >= 0 && state.active)
		mark_all(hook_io_uring_cqe_overflow);
	return 0;
}

#endif /* FLOCKER_IOURING_H */
